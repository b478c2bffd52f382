import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { encodeRinr, parseRinr } from "../src/format/mod.ts";
import type { Gpu } from "../src/gpu/device.ts";
import { Plan } from "../src/gpu/kernel.ts";
import { augmentationOf, coordinateMapping, InrDecoder } from "../src/inr/decode.ts";
import {
  decodeBatchReference,
  decodeImagesReference,
  type ReferenceSource,
} from "../src/inr/decode_reference.ts";
import { dequantize, quantize } from "../src/inr/quantize.ts";
import { type SirenArch, sirenInit, sirenLayers, sirenParamCount } from "../src/inr/siren.ts";
import { assertClose, seededRandom, testGpu } from "./_util.ts";

// The GPU evaluates in f32 with range-reduced sines. On llvmpipe the 5x13 outputs stay within
// 4e-6 of the float64 reference after normalization by std 0.25; the margin covers GPUs whose
// sin is less exact.
const TOLERANCE = { atol: 2e-4, rtol: 0 };
const MEAN = [0.49, 0.48, 0.45] as const;
const STD = [0.25, 0.24, 0.26] as const;

/** SIREN weights whose outputs spread over [0, 1]: SIREN init, then a wider output layer around 0.5. */
function makeWeights(arch: SirenArch, count: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  const q = sirenParamCount(arch);
  const output = sirenLayers(arch).at(-1)!;
  const weights = new Float32Array(count * q);
  for (let n = 0; n < count; n++) {
    const params = sirenInit(arch, random);
    for (let k = output.weightOffset; k < output.biasOffset; k++) {
      params[k] = (random() - 0.5) * 0.6;
    }
    for (let c = 0; c < 3; c++) params[output.biasOffset + c] = 0.3 + 0.4 * random();
    weights.set(params, n * q);
  }
  return weights;
}

async function submitChecked(gpu: Gpu, plan: Plan): Promise<void> {
  gpu.device.pushErrorScope("validation");
  plan.submit();
  const error = await gpu.device.popErrorScope();
  if (error) throw new Error(`validation error: ${error.message}`);
}

interface Case {
  arch: SirenArch;
  resolution: number;
  count: number;
  bits: number | number[] | "f32";
}

async function setup(gpu: Gpu, c: Case, cacheBytes?: number) {
  const fp32 = makeWeights(c.arch, c.count, c.count + c.resolution);
  const weights = c.bits === "f32" ? fp32 : quantize(c.arch, fp32, c.bits);
  const labels = Uint32Array.from({ length: c.count }, (_, i) => (i * 7 + 3) % 10);
  const decoder = await InrDecoder.create(gpu, {
    arch: c.arch,
    resolution: c.resolution,
    weights,
    labels,
  }, { cacheBytes });
  const reference: ReferenceSource = {
    arch: c.arch,
    resolution: c.resolution,
    weights: weights instanceof Float32Array ? weights : dequantize(weights),
  };
  return { decoder, reference, labels };
}

const small: Case = {
  arch: { sineLayers: 5, width: 13, w0: 30 },
  resolution: 8,
  count: 6,
  bits: 8,
};

for (const cacheBytes of [undefined, 0]) {
  const path = cacheBytes === 0 ? "global weights" : "cached weights";

  Deno.test(`decode batch at encoded size, ${path}`, async () => {
    const gpu = await testGpu();
    const { decoder, reference, labels } = await setup(gpu, small, cacheBytes);
    assertEquals(decoder.cached, cacheBytes !== 0);
    const permutation = Uint32Array.from([4, 1, 5, 0, 2, 3]);
    const indices = gpu.buffer(permutation.byteLength, "indices", permutation);
    const batch = 3;
    const output = gpu.buffer(batch * 3 * 64 * 4, "output");
    const labelsOut = gpu.buffer(batch * 4, "labels out");
    const plan = new Plan(gpu, "decode");
    const decode = decoder.decodeBatch(plan, { indices, output, labelsOut }, {
      batch,
      first: 2,
      mean: MEAN,
      std: STD,
    });
    await submitChecked(gpu, plan);
    const images = [5, 0, 2];
    const expected = decodeBatchReference(reference, { images, mean: MEAN, std: STD });
    assertClose("batch", await gpu.readF32(output), expected, TOLERANCE);
    assertEquals([...await gpu.readU32(labelsOut)], images.map((i) => labels[i]));

    decode.update({ first: 0 });
    await submitChecked(gpu, plan);
    const next = decodeBatchReference(reference, { images: [4, 1, 5], mean: MEAN, std: STD });
    assertClose("batch after update", await gpu.readF32(output), next, TOLERANCE);
    assertEquals([...await gpu.readU32(labelsOut)], [4, 1, 5].map((i) => labels[i]));
    plan.destroy();
    decoder.destroy();
    gpu.release(indices);
    gpu.release(output);
    gpu.release(labelsOut);
  });

  Deno.test(`decode batch resized, ${path}`, async () => {
    const gpu = await testGpu();
    const { decoder, reference } = await setup(gpu, small, cacheBytes);
    for (const size of [13, 5]) {
      const output = gpu.buffer(2 * 3 * size * size * 4, "output");
      const plan = new Plan(gpu, "decode resized");
      decoder.decodeBatch(plan, { output }, { batch: 2, first: 3, size });
      await submitChecked(gpu, plan);
      const expected = decodeBatchReference(reference, { images: [3, 4], size });
      assertClose(`batch at ${size} px`, await gpu.readF32(output), expected, TOLERANCE);
      plan.destroy();
      gpu.release(output);
    }
    decoder.destroy();
  });

  Deno.test(`decode batch augmented, ${path}`, async () => {
    const gpu = await testGpu();
    const { decoder, reference } = await setup(gpu, small, cacheBytes);
    const batch = 6;
    const options = { pad: 2, flip: true, mean: MEAN, std: STD, seed: 1234, step: 0 };
    const images = [0, 1, 2, 3, 4, 5];
    const output = gpu.buffer(batch * 3 * 64 * 4, "output");
    const plan = new Plan(gpu, "decode augmented");
    const decode = decoder.decodeBatch(plan, { output }, { batch, ...options });
    const flips = new Set<boolean>();
    for (const step of [0, 7]) {
      decode.update({ step });
      await submitChecked(gpu, plan);
      const expected = decodeBatchReference(reference, { images, ...options, step });
      assertClose(`augmented step ${step}`, await gpu.readF32(output), expected, TOLERANCE);
      for (let j = 0; j < batch; j++) {
        flips.add(augmentationOf({ seed: 1234, step, sample: j, pad: 2 }).flip);
      }
    }
    assertEquals(flips.size, 2, "the checked samples include flipped and unflipped ones");
    plan.destroy();
    decoder.destroy();
    gpu.release(output);
  });
}

Deno.test("decode batch from fp32 and mixed bits", async () => {
  const gpu = await testGpu();
  const arch = { sineLayers: 3, width: 6, w0: 30 };
  for (const bits of ["f32", [32, 5, 12, 3]] as const) {
    const { decoder, reference } = await setup(gpu, {
      arch,
      resolution: 6,
      count: 4,
      bits: bits as Case["bits"],
    });
    const output = gpu.buffer(4 * 3 * 36 * 4, "output");
    const plan = new Plan(gpu, "decode fp32");
    decoder.decodeBatch(plan, { output }, { batch: 4 });
    await submitChecked(gpu, plan);
    const expected = decodeBatchReference(reference, { images: [0, 1, 2, 3] });
    assertClose(`bits ${bits}`, await gpu.readF32(output), expected, TOLERANCE);
    plan.destroy();
    decoder.destroy();
    gpu.release(output);
  }
});

Deno.test("decodeImages matches reference bytes", async () => {
  const gpu = await testGpu();
  // 300 images take two chunks of 256.
  const c: Case = { arch: { sineLayers: 2, width: 5, w0: 30 }, resolution: 4, count: 300, bits: 6 };
  for (const cacheBytes of [undefined, 0]) {
    const { decoder, reference } = await setup(gpu, c, cacheBytes);
    for (const [first, count, size] of [[0, 300, 4], [290, 10, 7]]) {
      const actual = await decoder.decodeImages({ first, count, size });
      const expected = decodeImagesReference(reference, { first, count, size });
      assertClose(`rgb ${first}+${count} at ${size} px`, actual, expected, { atol: 1, rtol: 0 });
    }
    decoder.destroy();
  }
});

Deno.test("coordinate mapping aligns pixel centres", () => {
  const same = coordinateMapping(32, 32);
  assertClose("R = S", [same.scale, same.bias], [2 / 31, -1], { atol: 1e-15, rtol: 0 });
  const up = coordinateMapping(4, 8);
  // Output pixel 0 of 8 samples source pixel -0.25, pixel 7 samples 3.25.
  assertClose("R = 4, S = 8", [up.bias, 7 * up.scale + up.bias], [-1 - 0.5 / 3, 1 + 0.5 / 3], {
    atol: 1e-12,
    rtol: 0,
  });
  assertEquals(coordinateMapping(1, 5), { scale: 0, bias: 0 });
});

Deno.test("augmentation offsets cover the crop range", () => {
  const seen = new Set<string>();
  for (let sample = 0; sample < 2000; sample++) {
    const { dx, dy, flip } = augmentationOf({ seed: 5, step: 11, sample, pad: 4 });
    assert(dx >= 0 && dx <= 8, `dx ${dx} outside 0..8`);
    assert(dy >= 0 && dy <= 8, `dy ${dy} outside 0..8`);
    seen.add(`${dx},${dy},${flip}`);
  }
  assertEquals(seen.size, 9 * 9 * 2);
  assertEquals(augmentationOf({ seed: 5, step: 11, sample: 3, pad: 0 }).dx, 0);
});

Deno.test("decode batch rejects invalid settings", async () => {
  const gpu = await testGpu();
  const { decoder } = await setup(gpu, small);
  const indices = gpu.buffer(4 * 4, "indices");
  const output = gpu.buffer(2 * 3 * 64 * 4, "output");
  const plan = new Plan(gpu, "invalid");
  assertThrows(
    () => decoder.decodeBatch(plan, { indices, output }, { batch: 2, first: 3 }),
    RangeError,
    "runs past the 4 entries",
  );
  assertThrows(
    () => decoder.decodeBatch(plan, { output }, { batch: 3 }),
    RangeError,
    "Buffer output has 1536 bytes",
  );
  assertThrows(
    () => decoder.decodeBatch(plan, { output }, { batch: 2, pad: 8 }),
    RangeError,
    "padding",
  );
  assertThrows(
    () => decoder.decodeBatch(plan, { output }, { batch: 2, std: [1, 0, 1] }),
    RangeError,
    "positive standard deviations",
  );
  const decode = decoder.decodeBatch(plan, { output }, { batch: 2 });
  assertThrows(() => decode.update({ first: 5 }), RangeError, "the 6 images");
  plan.destroy();
  decoder.destroy();
  gpu.release(indices);
  gpu.release(output);
});

Deno.test("decode batch at extreme shapes", async () => {
  const gpu = await testGpu();
  const cases: Case[] = [
    { arch: { sineLayers: 1, width: 4, w0: 30 }, resolution: 3, count: 2, bits: 16 },
    { arch: { sineLayers: 2, width: 256, w0: 30 }, resolution: 2, count: 2, bits: 9 },
    { arch: { sineLayers: 3, width: 8, w0: 10 }, resolution: 1, count: 2, bits: 1 },
  ];
  for (const c of cases) {
    const { decoder, reference } = await setup(gpu, c);
    const size = c.resolution + 1;
    const output = gpu.buffer(2 * 3 * size * size * 4, "output");
    const plan = new Plan(gpu, "decode extreme");
    decoder.decodeBatch(plan, { output }, { batch: 2, size });
    await submitChecked(gpu, plan);
    const expected = decodeBatchReference(reference, { images: [0, 1], size });
    assertClose(
      `${c.arch.sineLayers}x${c.arch.width} at ${size} px`,
      await gpu.readF32(output),
      expected,
      TOLERANCE,
    );
    plan.destroy();
    decoder.destroy();
    gpu.release(output);
  }
});

Deno.test("decoder reads a parsed rinr file", async () => {
  const gpu = await testGpu();
  const arch = { sineLayers: 2, width: 7, w0: 30 };
  const fp32 = makeWeights(arch, 3, 9);
  const labels = Uint32Array.from([2, 0, 1]);
  for (const weights of [fp32, quantize(arch, fp32, 7)]) {
    const bytes = encodeRinr({
      arch,
      resolution: 5,
      classNames: ["a", "b", "c"],
      labels,
      psnr: [30, 31, 32],
      weights,
    });
    const file = parseRinr(bytes, "set.rinr");
    const decoder = await InrDecoder.create(gpu, file);
    const reference = {
      arch,
      resolution: 5,
      weights: weights instanceof Float32Array ? weights : dequantize(weights),
    };
    const rgb = await decoder.decodeImages();
    assertClose("rgb", rgb, decodeImagesReference(reference, { first: 0, count: 3 }), {
      atol: 1,
      rtol: 0,
    });
    await assertRejects(
      () => decoder.decodeImages({ first: 2, count: 2 }),
      RangeError,
      "outside the dataset of 3 images",
    );

    const output = gpu.buffer(3 * 3 * 25 * 4, "output");
    const labelsOut = gpu.buffer(3 * 4, "labels out");
    const plan = new Plan(gpu, "decode from file");
    decoder.decodeBatch(plan, { output, labelsOut }, { batch: 3 });
    await submitChecked(gpu, plan);
    assertEquals([...await gpu.readU32(labelsOut)], [2, 0, 1]);
    plan.destroy();
    decoder.destroy();
    gpu.release(output);
    gpu.release(labelsOut);
  }
});
