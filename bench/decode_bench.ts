// Training-batch throughput: decoding INRs on the GPU against decoding image
// files on the CPU and uploading the pixels.
//
//   DENO_WEBGPU_BACKEND=vulkan deno bench -A bench/decode_bench.ts
//
// GPU rows: one batch of 128 CIFAR-sized samples (32 px) from 8-bit 5x13
// SIRENs, with random crop (pad 4), flip and normalization, written as NCHW
// f32 with labels. Each iteration submits the recorded plan REPEAT times and
// waits once, so a batch takes the reported time / REPEAT. The weights are
// random SIREN initializations, which cost the same to evaluate as fitted ones.
//
// CPU rows: 128 PNG files (lossless CIFAR-10 sample) or 128 JPEG files
// (CIFAR-10 q75), already read into memory, decoded with `decodeImage`,
// normalized to NCHW f32 on the CPU (no augmentation) and written to a GPU
// buffer, waiting for the upload. They read ../shared/data and are not
// registered when it is absent.

import { join } from "@std/path";
import { decodeImage } from "../src/data/image.ts";
import { Gpu } from "../src/gpu/device.ts";
import { Plan } from "../src/gpu/kernel.ts";
import { InrDecoder } from "../src/inr/decode.ts";
import { quantize } from "../src/inr/quantize.ts";
import { sirenInit, sirenParamCount } from "../src/inr/siren.ts";

const REPEAT = 4;
const BATCH = 128;
const DATASET = 1024;
const ARCH = { sineLayers: 5, width: 13, w0: 30 };
const MEAN = [0.4914, 0.4822, 0.4465] as const;
const STD = [0.247, 0.2435, 0.2616] as const;
const DATA = new URL("../../shared/data/", import.meta.url).pathname;

const gpu = await Gpu.create({ notice: false });

function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const next = random(1);
const weights = new Float32Array(DATASET * sirenParamCount(ARCH));
for (let n = 0; n < DATASET; n++) weights.set(sirenInit(ARCH, next), n * sirenParamCount(ARCH));
const inrs = quantize(ARCH, weights, 8);
const labels = Uint32Array.from({ length: DATASET }, (_, i) => i % 10);
const permutation = Uint32Array.from({ length: DATASET }, (_, i) => i).sort(() => next() - 0.5);
const indices = gpu.buffer(permutation.byteLength, "permutation", permutation);

/** Registers one GPU decode benchmark. With `cacheBytes` 0 every pixel reads the batch's weight buffer. */
async function benchInrDecode(
  options: { name: string; size: number; batch: number; cacheBytes?: number },
) {
  const decoder = await InrDecoder.create(gpu, {
    arch: ARCH,
    resolution: 32,
    weights: inrs,
    labels,
  }, {
    cacheBytes: options.cacheBytes,
  });
  const output = gpu.buffer(options.batch * 3 * options.size * options.size * 4, "batch");
  const labelsOut = gpu.buffer(options.batch * 4, "batch labels");
  const plan = new Plan(gpu, options.name);
  const decode = decoder.decodeBatch(plan, { indices, output, labelsOut }, {
    batch: options.batch,
    size: options.size,
    pad: options.size / 8,
    flip: true,
    mean: MEAN,
    std: STD,
    seed: 3,
  });
  let step = 0;
  Deno.bench({ name: options.name, group: "batch", n: 8, warmup: 1 }, async () => {
    decode.update({ first: (step * options.batch) % (DATASET - options.batch), step });
    step++;
    plan.submit(REPEAT);
    await gpu.finish();
  });
}

await benchInrDecode({
  name: `GPU INR decode x${REPEAT}, 32 px, batch ${BATCH}, cached`,
  size: 32,
  batch: BATCH,
});
await benchInrDecode({
  name: `GPU INR decode x${REPEAT}, 32 px, batch ${BATCH}, uncached`,
  size: 32,
  batch: BATCH,
  cacheBytes: 0,
});
await benchInrDecode({
  name: `GPU INR decode x${REPEAT}, 224 px, batch 8, cached`,
  size: 224,
  batch: 8,
});

async function readFiles(folder: string, extension: string, count: number): Promise<Uint8Array[]> {
  const paths: string[] = [];
  for await (const classFolder of Deno.readDir(folder)) {
    if (!classFolder.isDirectory) continue;
    for await (const entry of Deno.readDir(join(folder, classFolder.name))) {
      if (entry.name.endsWith(extension)) paths.push(join(folder, classFolder.name, entry.name));
    }
  }
  paths.sort();
  return await Promise.all(paths.slice(0, count).map((path) => Deno.readFile(path)));
}

function benchFileDecode(name: string, files: Uint8Array[]) {
  const pixels = 32 * 32;
  const upload = gpu.buffer(BATCH * 3 * pixels * 4, "uploaded batch");
  const batch = new Float32Array(BATCH * 3 * pixels);
  Deno.bench({ name, group: "batch", n: 8, warmup: 1 }, async () => {
    for (let j = 0; j < BATCH; j++) {
      const image = await decodeImage(files[j % files.length], `file ${j}`);
      for (let p = 0; p < pixels; p++) {
        for (let c = 0; c < 3; c++) {
          batch[(j * 3 + c) * pixels + p] = (image.rgb[p * 3 + c] / 255 - MEAN[c]) / STD[c];
        }
      }
    }
    gpu.write(upload, batch);
    await gpu.finish();
  });
}

try {
  const png = await readFiles(join(DATA, "cifar10-png-sample/train"), ".png", BATCH);
  const jpeg = await readFiles(join(DATA, "cifar10/train"), ".jpg", BATCH);
  benchFileDecode(`CPU PNG decode + upload, 32 px, batch ${BATCH}`, png);
  benchFileDecode(`CPU JPEG decode + upload, 32 px, batch ${BATCH}`, jpeg);
} catch (error) {
  if (!(error instanceof Deno.errors.NotFound)) throw error;
  console.error(`decode_bench: ${DATA} is absent, so the CPU file-decode rows are skipped.`);
}
