// Quantization-aware fitting: the projection kernel against the CPU
// quantizer, the straight-through gradient, and fine-tuning that recovers
// PSNR lost to rounding.

import { assert, assertEquals, assertThrows } from "@std/assert";
import { dequantize, quantize } from "../src/inr/quantize.ts";
import { SirenFitBatch } from "../src/inr/siren_batch.ts";
import { pixelCoordinate, type SirenArch, sirenForwardReference, sirenInit, sirenLayers, sirenParamCount } from "../src/inr/siren.ts";
import { assertClose, seededRandom, testGpu } from "./_util.ts";

const arch: SirenArch = { sineLayers: 3, width: 8, w0: 30 };
const side = 8;

function initWeights(count: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  const q = sirenParamCount(arch);
  const weights = new Float32Array(count * q);
  for (let n = 0; n < count; n++) weights.set(sirenInit(arch, random), n * q);
  return weights;
}

function smoothImages(count: number): Uint8Array {
  const images = new Uint8Array(count * side * side * 3);
  for (let n = 0; n < count; n++) {
    for (let p = 0; p < side * side; p++) {
      const x = (p % side) / (side - 1);
      const y = Math.floor(p / side) / (side - 1);
      const i = 3 * (n * side * side + p);
      images[i] = Math.round(255 * (0.2 + 0.6 * x));
      images[i + 1] = Math.round(255 * (0.5 + 0.3 * Math.sin(3 * y + n)));
      images[i + 2] = Math.round(255 * (0.3 + 0.4 * x * y));
    }
  }
  return images;
}

// Float64 PSNR of image n's weights against its pixels, outputs clamped to [0, 1] as the decoder does.
function psnrReference(weights: Float32Array, images: Uint8Array, n: number, clamp = false): number {
  const q = sirenParamCount(arch);
  let sum = 0;
  for (let p = 0; p < side * side; p++) {
    const out = sirenForwardReference(arch, {
      params: weights,
      offset: n * q,
      x: pixelCoordinate(p % side, side),
      y: pixelCoordinate(Math.floor(p / side), side),
    });
    for (let c = 0; c < 3; c++) {
      const value = clamp ? Math.min(1, Math.max(0, out[c])) : out[c];
      sum += (value - images[3 * (n * side * side + p) + c] / 255) ** 2;
    }
  }
  return -10 * Math.log10(sum / (3 * side * side));
}

Deno.test("projection matches the CPU quantizer with a pruning mask", async () => {
  const gpu = await testGpu();
  const count = 3;
  const bits = [3, 8, 32, 5];
  const weights = initWeights(count, 4);
  const random = seededRandom(8);
  const mask = Uint8Array.from(weights, () => random() < 0.3 ? 0 : 1);
  const batch = await SirenFitBatch.create(gpu, {
    arch,
    side,
    capacity: count,
    iterations: 1,
    learningRate: 1e-3,
    quantization: { bits },
  });
  try {
    batch.load({ images: smoothImages(count), weights, mask });
    await batch.render();
    const projected = await batch.readProjectedWeights();
    const expected = dequantize(quantize(arch, weights, { bits, mask }));
    // Equal except where WGSL's inexact division puts a value on the other side of a rounding boundary.
    assertClose("projected weights", projected, expected, { atol: 1e-6, rtol: 0 });
    // Layer 2 is kept in f32, where the mask does not apply.
    const f32Layer = sirenLayers(arch)[2];
    projected.forEach((value, i) => {
      const k = i % sirenParamCount(arch);
      const inF32Layer = k >= f32Layer.weightOffset && k < f32Layer.biasOffset + f32Layer.outputs;
      if (mask[i] === 0 && !inF32Layer) assertEquals(value, 0, `pruned weight ${i}`);
    });
    assertEquals(await batch.readWeights(), weights, "latent weights are unchanged by the projection");
  } finally {
    batch.destroy();
  }
});

Deno.test("quantization-aware gradient is the f32 gradient at the projected weights", async () => {
  const gpu = await testGpu();
  const count = 2;
  const bits = [6, 4, 4, 6];
  const weights = initWeights(count, 12);
  const images = smoothImages(count);
  const settings = { arch, side, capacity: count, iterations: 1, learningRate: 1e-3 };
  const quantized = await SirenFitBatch.create(gpu, { ...settings, quantization: { bits } });
  const plain = await SirenFitBatch.create(gpu, settings);
  try {
    quantized.load({ images, weights });
    const gradient = await quantized.computeGradient();
    plain.load({ images, weights: await quantized.readProjectedWeights() });
    const expected = await plain.computeGradient();
    assertClose("straight-through gradient", gradient, expected, { atol: 1e-7, rtol: 1e-6 });
  } finally {
    quantized.destroy();
    plain.destroy();
  }
});

Deno.test("quantization-aware fine-tuning recovers PSNR lost to rounding", async () => {
  const gpu = await testGpu();
  const count = 2;
  const images = smoothImages(count);
  const fit = await SirenFitBatch.create(gpu, { arch, side, capacity: count, iterations: 300, learningRate: 1e-3 });
  let fitted: Float32Array;
  try {
    fit.load({ images, weights: initWeights(count, 3) });
    fit.run(300);
    fitted = await fit.readBestWeights();
  } finally {
    fit.destroy();
  }

  const bits = [8, 4, 4, 4];
  const random = seededRandom(5);
  const mask = Uint8Array.from(fitted, (_, i) => i % sirenParamCount(arch) >= 24 && random() < 0.2 ? 0 : 1);
  const rounded = dequantize(quantize(arch, fitted, { bits, mask }));
  const tune = await SirenFitBatch.create(gpu, {
    arch,
    side,
    capacity: count,
    iterations: 200,
    learningRate: 2e-4,
    quantization: { bits },
  });
  try {
    tune.load({ images, weights: fitted, mask });
    tune.run(200);
    const scores = await tune.readScores();
    const tuned = dequantize(quantize(arch, await tune.readBestWeights(), { bits, mask }));
    for (let n = 0; n < count; n++) {
      const before = psnrReference(rounded, images, n);
      const after = psnrReference(tuned, images, n);
      assert(after > before + 1, `image ${n}: ${before.toFixed(2)} dB after rounding, ${after.toFixed(2)} dB after fine-tuning`);
      // The GPU scored the projection of the same latent weights that the CPU quantized.
      assertClose(`image ${n} best PSNR`, [scores.best[n]], [after], { atol: 0.05, rtol: 0 });
    }
    const projected = await tune.readProjectedWeights();
    mask.forEach((keep, i) => keep === 0 && assertEquals(projected[i], 0, `pruned weight ${i}`));
  } finally {
    tune.destroy();
  }
});

Deno.test("pruning mask needs quantization settings and one entry per weight", async () => {
  const gpu = await testGpu();
  const weights = initWeights(1, 1);
  const plain = await SirenFitBatch.create(gpu, { arch, side, capacity: 1, iterations: 1, learningRate: 1e-3 });
  const quantized = await SirenFitBatch.create(gpu, {
    arch,
    side,
    capacity: 1,
    iterations: 1,
    learningRate: 1e-3,
    quantization: { bits: [8, 8, 8, 8] },
  });
  try {
    const images = smoothImages(1);
    assertThrows(() => plain.load({ images, weights, mask: new Uint8Array(weights.length) }), RangeError, "quantization settings");
    assertThrows(() => quantized.load({ images, weights, mask: new Uint8Array(3) }), RangeError, "pruning mask has 3 entries");
  } finally {
    plain.destroy();
    quantized.destroy();
  }
  await assertRejectsBits(gpu);
});

async function assertRejectsBits(gpu: Awaited<ReturnType<typeof testGpu>>): Promise<void> {
  let message = "";
  try {
    await SirenFitBatch.create(gpu, { arch, side, capacity: 1, iterations: 1, learningRate: 1e-3, quantization: { bits: [8, 8] } });
  } catch (error) {
    message = (error as Error).message;
  }
  assert(message.includes("Expected 4 bit widths"), message);
}
