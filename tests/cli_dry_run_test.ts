// --dry-run: spawns the CLI and checks the printed plan, the exit codes and
// that nothing is written. The last tests compare the plan's GPU memory
// estimates with the buffers that the GPU classes allocate.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { join } from "@std/path";
import { Log } from "../src/cli/log.ts";
import {
  decodeBatchBytes,
  encodeBatchBytes,
  rawImagesBytes,
  residentDatasetBytes,
  resnetMemory,
} from "../src/cli/plan_memory.ts";
import { encodeStage } from "../src/cli/stages.ts";
import { encodeSafetensors } from "../src/format/safetensors.ts";
import type { Gpu } from "../src/gpu/device.ts";
import { Plan } from "../src/gpu/kernel.ts";
import { InrDecoder } from "../src/inr/decode.ts";
import { quantize } from "../src/inr/quantize.ts";
import { sirenParamCount } from "../src/inr/siren.ts";
import { SirenFitBatch } from "../src/inr/siren_batch.ts";
import { RawImages } from "../src/train/raw_batch.ts";
import { ResNet18 } from "../src/train/resnet.ts";
import { spawnCli, writeStripes } from "./_cli.ts";
import { randomArray, seededRandom, testGpu } from "./_util.ts";

const dir = await Deno.makeTempDir({ prefix: "rapid-inr-dry-run-" });
const data = join(dir, "stripes");
// 3 classes: 4 training and 2 test images each, 8x8 px.
await writeStripes(data, { train: 4, test: 2, classes: ["a", "b", "c"] });

/** Lists every file below `folder`, so a test can check that nothing was written. */
function listTree(folder: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(folder)) {
    const path = join(folder, entry.name);
    found.push(path);
    if (entry.isDirectory) found.push(...listTree(path));
  }
  return found.sort();
}

Deno.test("dry run encode prints the plan", async () => {
  const before = listTree(dir);
  const output = join(dir, "never.rinr");
  const text = await spawnCli([
    "encode",
    data,
    "-o",
    output,
    "--per-class",
    "3",
    "--limit",
    "7",
    "--dry-run",
  ]);
  assertEquals(text.code, 0, text.stderr);
  assertStringIncludes(text.stdout, "Dry run of encode");
  assertStringIncludes(text.stdout, "7 images in 3 classes");
  assertStringIncludes(text.stdout, "Q = 809 parameters per image");
  assertStringIncludes(text.stdout, "5000 iterations");
  assertStringIncludes(text.stdout, "GPU memory (estimates)");
  assertEquals(listTree(dir), before, "a dry run writes nothing");

  const json = await spawnCli([
    "encode",
    data,
    "-o",
    output,
    "--size",
    "16",
    "--iterations",
    "30",
    "--dry-run",
    "--json",
  ]);
  assertEquals(json.code, 0, json.stderr);
  const plan = JSON.parse(json.stdout);
  assertEquals(plan.dryRun, true);
  assertEquals(plan.dataset.images, 12);
  assertEquals(plan.dataset.classNames, ["a", "b", "c"]);
  assertEquals(plan.dataset.side, 16);
  assertEquals(plan.dataset.firstImage.width, 8);
  assertEquals(plan.siren.paramsPerImage, 809);
  assertEquals(plan.encode.iterations, 30);
  assertEquals(plan.encode.seed, 0);
  assertEquals(plan.adapter.available, true);
  assertEquals(plan.encode.batchSize, 12, "12 small images fit one batch");
  assertEquals(plan.encode.batches, 1);
  const expectedBytes = encodeBatchBytes({
    arch: { sineLayers: 5, width: 13, w0: 30 },
    side: 16,
    batch: 12,
    iterations: 30,
  });
  assertEquals(plan.gpuMemory[0], {
    stage: "encode",
    item: "fitting buffers",
    bytes: expectedBytes,
  });
  assertEquals(plan.outputs, [{ path: output, exists: false }]);
  assertEquals(listTree(dir), before, "a dry run writes nothing");
});

Deno.test("dry run rejects what the run would reject", async () => {
  const existing = join(dir, "existing.rinr");
  await Deno.writeTextFile(existing, "old");
  const refused = await spawnCli(["encode", data, "-o", existing, "--dry-run"]);
  assertEquals(refused.code, 2, refused.stderr);
  assertStringIncludes(refused.stderr, `Output ${existing} already exists`);
  const forced = await spawnCli(["encode", data, "-o", existing, "--dry-run", "--force"]);
  assertEquals(forced.code, 0, forced.stderr);
  assertStringIncludes(forced.stdout, "(exists; --force replaces it)");
  assertEquals(await Deno.readTextFile(existing), "old");

  // A leftover checkpoint fails the dry run as it fails the run, unless --resume continues it.
  const interrupted = join(dir, "interrupted.rinr");
  await Deno.writeTextFile(`${interrupted}.partial`, "");
  const leftover = await spawnCli(["encode", data, "-o", interrupted, "--dry-run"]);
  assertEquals(leftover.code, 2, leftover.stderr);
  assertStringIncludes(
    leftover.stderr,
    `Checkpoint ${interrupted}.partial exists from an interrupted encode`,
  );
  const resumed = await spawnCli(["encode", data, "-o", interrupted, "--dry-run", "--resume"]);
  assertEquals(resumed.code, 0, resumed.stderr);
  await Deno.remove(`${interrupted}.partial`);

  const model = join(dir, "model.safetensors");
  const trainCheckpoint = join(dir, "model.ckpt.safetensors");
  await Deno.writeTextFile(trainCheckpoint, "");
  const trainArgs = [
    "train",
    "--input",
    "raw",
    "--data",
    data,
    "--batch",
    "5",
    "-o",
    model,
    "--dry-run",
  ];
  const trainLeftover = await spawnCli(trainArgs);
  assertEquals(trainLeftover.code, 2, trainLeftover.stderr);
  assertStringIncludes(trainLeftover.stderr, `Checkpoint ${trainCheckpoint} already exists`);
  // With --resume the dry run reads the checkpoint: an empty file is rejected, as the run rejects it.
  const junkResumed = await spawnCli([...trainArgs, "--resume"]);
  assertEquals(junkResumed.code, 2, junkResumed.stderr);
  assertStringIncludes(junkResumed.stderr, trainCheckpoint);
  // A checkpoint of another job is named with the setting that differs.
  const otherJob = encodeSafetensors([{
    name: "optimizer.velocity",
    shape: [1],
    data: new Float32Array(1),
  }], {
    format: "rapid-inr train checkpoint 1",
    fingerprint: JSON.stringify({ "--resnet-width": 16 }),
    epochs: JSON.stringify([{ epoch: 1 }]),
  });
  await Deno.writeFile(trainCheckpoint, otherJob);
  const otherResumed = await spawnCli([...trainArgs, "--resnet-width", "8", "--resume"]);
  assertEquals(otherResumed.code, 2, otherResumed.stderr);
  assertStringIncludes(otherResumed.stderr, "--resnet-width is 8, the checkpoint has 16");
  await Deno.remove(trainCheckpoint);
  const freshResumed = await spawnCli([...trainArgs, "--resume"]);
  assertEquals(freshResumed.code, 0, freshResumed.stderr);
  assertStringIncludes(freshResumed.stdout, `No checkpoint at ${trainCheckpoint}`);

  const missing = await spawnCli([
    "encode",
    join(dir, "no-such-dataset"),
    "-o",
    join(dir, "x.rinr"),
    "--dry-run",
  ]);
  assertEquals(missing.code, 3, missing.stderr);
  assertStringIncludes(missing.stderr, "no-such-dataset");
  assert(!missing.stderr.includes("    at "), missing.stderr);

  const split = await spawnCli([
    "encode",
    data,
    "-o",
    join(dir, "x.rinr"),
    "--split",
    "validation",
    "--dry-run",
  ]);
  assertEquals(split.code, 3, split.stderr);
  assertStringIncludes(split.stderr, 'no split folder "validation"');

  const batch = await spawnCli([
    "train",
    "--input",
    "raw",
    "--data",
    data,
    "--batch",
    "13",
    "--dry-run",
  ]);
  assertEquals(batch.code, 2, batch.stderr);
  assertStringIncludes(batch.stderr, "fewer than one batch of 13");

  // At 4096 px the first convolution's output of 12 images exceeds any adapter's storage binding.
  const huge = await spawnCli([
    "train",
    "--input",
    "raw",
    "--data",
    data,
    "--batch",
    "12",
    "--input-size",
    "4096",
    "--test-limit",
    "2",
    "--dry-run",
  ]);
  assertEquals(huge.code, 4, huge.stderr);
  assertStringIncludes(huge.stderr, "The largest classifier buffer needs");
  assertStringIncludes(huge.stderr, "Use a smaller --batch.");

  const info = await spawnCli(["info", existing, "--dry-run"]);
  assertEquals(info.code, 2, "info has no --dry-run");
});

Deno.test("dry run applies the bad image rule", async () => {
  // The first image of the first class is corrupt, and the other 11 are readable.
  const damaged = join(dir, "damaged");
  await writeStripes(damaged, { train: 4, test: 0, classes: ["a", "b", "c"] });
  const broken = join(damaged, "train", "a", "0.png");
  await Deno.writeTextFile(broken, "not a PNG");
  const output = join(dir, "damaged.rinr");

  // 1 bad image is more than the default 1% of 12, so the run would fail, and so must the dry run.
  const refused = await spawnCli(["encode", damaged, "-o", output, "--dry-run"]);
  assertEquals(refused.code, 3, refused.stderr);
  assertStringIncludes(refused.stderr, "at least 1 of the 12 requested images");
  assertStringIncludes(refused.stderr, "--max-bad-fraction");
  assert(!refused.stderr.includes("would skip"), refused.stderr);

  const strict = await spawnCli([
    "encode",
    damaged,
    "-o",
    output,
    "--dry-run",
    "--strict",
    "--max-bad-fraction",
    "1",
  ]);
  assertEquals(strict.code, 3, strict.stderr);
  assertStringIncludes(strict.stderr, `rapid-inr encode: ${broken}: `);

  // With 10%, one bad image is allowed, and the warning names what the dry run checked.
  const allowed = await spawnCli([
    "encode",
    damaged,
    "-o",
    output,
    "--dry-run",
    "--json",
    "--max-bad-fraction",
    "0.1",
  ]);
  assertEquals(allowed.code, 0, allowed.stderr);
  const warning = allowed.stderr.split("\n").find((line) => line.startsWith("warning: "));
  assertStringIncludes(warning ?? "", `warning: ${broken}: `);
  assertStringIncludes(
    warning ?? "",
    "The run skips this image, and fails if more than 1 of the 12 requested images are unreadable or corrupt " +
      "(--max-bad-fraction 0.1); the dry run decodes only the images up to the first readable one.",
  );
  const plan = JSON.parse(allowed.stdout);
  assertEquals(plan.dataset.images, 12);
  assertEquals(plan.dataset.skipped.length, 1);
  assertEquals(plan.dataset.skipped[0].path, broken);
  assertStringIncludes(
    plan.notes.join(" "),
    "the real run may find more unreadable or corrupt images",
  );
});

Deno.test("dry run without adapter still plans", async () => {
  // A backend this platform lacks: requestAdapter returns null.
  const backend = Deno.build.os === "darwin" ? "dx12" : "metal";
  const result = await spawnCli(
    ["encode", data, "-o", join(dir, "x.rinr"), "--dry-run", "--json"],
    {
      DENO_WEBGPU_BACKEND: backend,
    },
  );
  assertEquals(result.code, 0, result.stderr);
  const plan = JSON.parse(result.stdout);
  assertEquals(plan.adapter.available, false);
  assertStringIncludes(plan.adapter.problem, "no GPU adapter found");
  assertEquals(plan.encode.batchSize, null);
  assertEquals(plan.dataset.images, 12);

  const text = await spawnCli(["encode", data, "-o", join(dir, "x.rinr"), "--dry-run"], {
    DENO_WEBGPU_BACKEND: backend,
  });
  assertEquals(text.code, 0, text.stderr);
  assertStringIncludes(text.stdout, "adapter:         none: no GPU adapter found");
});

Deno.test("dry run train reports steps per epoch", async () => {
  const result = await spawnCli([
    "train",
    "--input",
    "raw",
    "--data",
    data,
    "--batch",
    "5",
    "--epochs",
    "3",
    "--resnet-width",
    "4",
    "--dry-run",
    "--json",
  ]);
  assertEquals(result.code, 0, result.stderr);
  const plan = JSON.parse(result.stdout);
  assertEquals(plan.train.images, 12);
  assertEquals(plan.train.stepsPerEpoch, 2);
  assertEquals(plan.train.droppedPerEpoch, 2);
  assertEquals(plan.train.inputSize, 8);
  assertEquals(plan.train.testImages, 6);
  assertEquals(plan.dataset.sideFrom, "first image");
  const expected = resnetMemory({ classes: 3, inputSize: 8, width: 4, batch: 5 });
  assertEquals(plan.train.parameters, expected.parameters);
  const items = Object.fromEntries(
    plan.gpuMemory.map((m: { item: string; bytes: number }) => [m.item, m.bytes]),
  );
  assertEquals(items["classifier activations"], expected.activationBytes);
  assertEquals(items["resident 8-bit pixels"], rawImagesBytes({ count: 12, side: 8 }));

  const text = await spawnCli([
    "train",
    "--input",
    "raw",
    "--data",
    data,
    "--batch",
    "5",
    "--dry-run",
  ]);
  assertEquals(text.code, 0, text.stderr);
  assertStringIncludes(
    text.stdout,
    "30 epochs of 2 steps of batch 5 (2 images of the last partial batch are left out)",
  );
  assertStringIncludes(text.stdout, "Image sizes are from the first image");
});

Deno.test("dry run run lists three outputs", async () => {
  const out = join(dir, "run-out");
  const result = await spawnCli([
    "run",
    data,
    "--out-dir",
    out,
    "--iterations",
    "20",
    "--layers",
    "2",
    "--width",
    "8",
    "--bits",
    "6",
    "--epochs",
    "2",
    "--batch",
    "4",
    "--resnet-width",
    "2",
    "--dry-run",
    "--json",
  ]);
  assertEquals(result.code, 0, result.stderr);
  const plan = JSON.parse(result.stdout);
  assertEquals(plan.outputs.map((o: { path: string }) => o.path), [
    join(out, "encoded.rinr"),
    join(out, "compressed.rinr"),
    join(out, "classifier.safetensors"),
  ]);
  assertEquals(plan.compress.bitsPerLayer, [6, 6, 6]);
  assertEquals(plan.train.stepsPerEpoch, 3);
  assertEquals(plan.train.inputSize, 32, "run trains at the preset's side");
  assertEquals(
    new Set(plan.gpuMemory.map((m: { stage: string }) => m.stage)),
    new Set(["encode", "compress", "train"]),
  );
  const exists = await Deno.stat(out).then(() => true, () => false);
  assertEquals(exists, false, "a dry run creates no output folder");
});

Deno.test("dry run of commands that read a .rinr file", async () => {
  const rinr = join(dir, "tiny.rinr");
  await encodeStage({
    dataset: { path: data, size: 8 },
    output: rinr,
    preset: "cifar",
    arch: { sineLayers: 2, width: 8, w0: 30 },
    iterations: 10,
    seed: 1,
    overwrite: false,
  }, new Log("quiet", { json: true }));
  const before = listTree(dir);

  const compress = await spawnCli([
    "compress",
    rinr,
    "-o",
    join(dir, "q.rinr"),
    "--bits",
    "4,6,8",
    "--dry-run",
    "--json",
  ]);
  assertEquals(compress.code, 0, compress.stderr);
  const compressPlan = JSON.parse(compress.stdout);
  assertEquals(compressPlan.compress.bitsPerLayer, [4, 6, 8]);
  assertEquals(compressPlan.dataset.images, 12, "the source images are checked");
  const badBits = await spawnCli([
    "compress",
    rinr,
    "-o",
    join(dir, "q.rinr"),
    "--bits",
    "4,6",
    "--dry-run",
  ]);
  assertEquals(badBits.code, 2, badBits.stderr);
  assertStringIncludes(badBits.stderr, "Expected 3 bit widths");

  const decode = await spawnCli([
    "decode",
    rinr,
    "-o",
    join(dir, "png"),
    "--size",
    "12",
    "--dry-run",
    "--json",
  ]);
  assertEquals(decode.code, 0, decode.stderr);
  assertEquals(JSON.parse(decode.stdout).decode, { images: 12, size: 12, psnr: false });
  const decodePsnr = await spawnCli([
    "decode",
    rinr,
    "-o",
    join(dir, "png"),
    "--size",
    "12",
    "--psnr",
    "--dry-run",
  ]);
  assertEquals(decodePsnr.code, 2, "PSNR needs the encoded size");

  const train = await spawnCli(["train", "--data", rinr, "--batch", "4", "--dry-run", "--json"]);
  assertEquals(train.code, 0, train.stderr);
  const trainPlan = JSON.parse(train.stdout);
  assertEquals(trainPlan.train.input, "inr");
  assertEquals(trainPlan.train.stepsPerEpoch, 3);
  assertEquals(trainPlan.testDataset.split, "test");

  const exported = await spawnCli([
    "export",
    rinr,
    "-o",
    join(dir, "inrs.safetensors"),
    "--dry-run",
    "--json",
  ]);
  assertEquals(exported.code, 0, exported.stderr);
  const exportPlan = JSON.parse(exported.stdout);
  assertEquals(exportPlan.export.tensors[0], { name: "layers.0.weight", shape: [12, 8, 2] });
  assertEquals(exportPlan.export.tensors.at(-1), { name: "labels", shape: [12] });
  assertEquals(listTree(dir), before, "dry runs write nothing");
});

// ---------------------------------------------------------------- estimates against real buffers

/** Records the size of every buffer `gpu.buffer` creates while `fn` runs. */
async function recordBuffers<T>(
  gpu: Gpu,
  fn: () => Promise<T>,
): Promise<{ result: T; buffers: { label: string; bytes: number }[] }> {
  const buffers: { label: string; bytes: number }[] = [];
  const original = gpu.buffer;
  gpu.buffer = (bytes: number, label: string, data?: ArrayBufferView) => {
    const buffer = original.call(gpu, bytes, label, data);
    buffers.push({ label, bytes: buffer.size });
    return buffer;
  };
  try {
    return { result: await fn(), buffers };
  } finally {
    gpu.buffer = original;
  }
}

function sum(buffers: { bytes: number }[]): number {
  return buffers.reduce((total, b) => total + b.bytes, 0);
}

Deno.test("memory estimate of ResNet-18 matches", async () => {
  const gpu = await testGpu();
  // 8 px uses the small stem; 72 px the stem with max pooling.
  for (const inputSize of [8, 72]) {
    const options = { classes: 3, inputSize, width: 2, batch: 2 };
    const { result: net, buffers } = await recordBuffers(gpu, () => ResNet18.create(gpu, options));
    try {
      const estimate = resnetMemory(options);
      assertEquals(estimate.parameters, net.parameterCount, `parameters at ${inputSize} px`);
      const counted = buffers.filter((b) => b.label !== "conv scratch");
      assertEquals(
        estimate.totalBytes,
        sum(counted),
        `bytes without the scratch buffer at ${inputSize} px`,
      );
      const largest = Math.max(...counted.map((b) => b.bytes));
      assertEquals(estimate.largestBufferBytes, largest, `largest buffer at ${inputSize} px`);
    } finally {
      net.destroy();
    }
  }
});

Deno.test("memory estimates of INR buffers match", async () => {
  const gpu = await testGpu();
  const arch = { sineLayers: 2, width: 8, w0: 30 };
  const fit = { arch, side: 6, capacity: 3, iterations: 7, learningRate: 1e-3 };
  const { result: batch, buffers } = await recordBuffers(gpu, () => SirenFitBatch.create(gpu, fit));
  batch.destroy();
  const shared = new Set(["siren gradient tiles", "siren step counter"]);
  assertEquals(
    encodeBatchBytes({ arch, side: 6, batch: 3, iterations: 7 }),
    sum(buffers.filter((b) => !shared.has(b.label))),
    "encode batch bytes",
  );

  const count = 5;
  const weights = randomArray(seededRandom(4), count * sirenParamCount(arch), -0.5, 0.5);
  const labels = new Uint32Array(count);
  for (
    const [bits, packed] of [["f32", weights], [
      [4, 6, 8],
      quantize(arch, weights, [4, 6, 8]),
    ]] as const
  ) {
    const decoder = await InrDecoder.create(gpu, { arch, resolution: 6, labels, weights: packed });
    try {
      assertEquals(
        residentDatasetBytes({ arch, count, bits: bits === "f32" ? "f32" : [...bits] }),
        decoder.residentBytes,
        `resident bytes, ${bits}`,
      );
      const plan = new Plan(gpu, "batch decode estimate");
      const output = gpu.buffer(2 * 3 * 6 * 6 * 4, "batch output");
      const { buffers: batchBuffers } = await recordBuffers(
        gpu,
        () => Promise.resolve(decoder.decodeBatch(plan, { output }, { batch: 2 })),
      );
      assertEquals(
        decodeBatchBytes({ arch, batch: 2 }),
        sum(batchBuffers.filter((b) => b.label === "decode batch weights")),
      );
      plan.destroy();
      gpu.release(output);
    } finally {
      decoder.destroy();
    }
  }

  const raw = await RawImages.create(gpu, {
    images: new Uint8Array(count * 6 * 6 * 3),
    labels,
    resolution: 6,
  });
  assertEquals(rawImagesBytes({ count, side: 6 }), raw.residentBytes);
  raw.destroy();
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
