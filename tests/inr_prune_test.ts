// Pruning masks, step selection, per-layer bit widths and the size estimate
// that the size target relies on.

import { assert, assertEquals } from "@std/assert";
import { codeBitsPerImage, encodeQans } from "../src/format/entropy.ts";
import { chooseLayerBits, chooseLayerBitsLadder } from "../src/inr/layer_bits.ts";
import { keptCounts, type PruneStep, pruneAndTune, pruneByMagnitude, selectSteps } from "../src/inr/prune.ts";
import { dequantize, quantize } from "../src/inr/quantize.ts";
import { type SirenArch, sirenInit, sirenLayers, sirenParamCount } from "../src/inr/siren.ts";
import { Gpu } from "../src/gpu/device.ts";
import { seededRandom, testGpu } from "./_util.ts";

const arch: SirenArch = { sineLayers: 3, width: 8, w0: 30 };
const q = sirenParamCount(arch);

function initWeights(count: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  const weights = new Float32Array(count * q);
  for (let n = 0; n < count; n++) weights.set(sirenInit(arch, random), n * q);
  return weights;
}

/**
 * Returns a fake decoder for two images whose PSNR, from 40 dB, falls with the
 * squared rounding error of each layer times that layer's `sensitivity`.
 */
function fakeDecoder(weights: Float32Array, sensitivity: number[]): (w: Float32Array) => Promise<Float32Array> {
  const layers = sirenLayers(arch);
  return (w) => {
    let loss = 0;
    for (let i = 0; i < w.length; i++) {
      const k = i % q;
      const layer = layers.findIndex((l) => k >= l.weightOffset && k < l.biasOffset + l.outputs);
      loss += sensitivity[layer] * (w[i] - weights[i]) ** 2;
    }
    return Promise.resolve(Float32Array.from([40 - loss, 40 - loss]));
  };
}

Deno.test("magnitude pruning removes the smallest weights of W and never re-grows the mask", () => {
  const weights = initWeights(3, 1);
  let mask: Uint8Array = new Uint8Array(weights.length).fill(1);
  let previous = keptCounts(mask, q);
  for (const sparsity of [0, 0.1, 0.25, 0.25, 0.5, 0.9]) {
    const next = pruneByMagnitude(arch, { weights, mask, sparsity, layers: [1, 3] });
    const counts = keptCounts(next, q);
    counts.forEach((count, n) => assert(count <= previous[n], `image ${n}: ${count} kept after ${previous[n]}`));
    next.forEach((keep, i) => assert(keep <= mask[i], `weight ${i} came back`));
    for (let n = 0; n < 3; n++) {
      for (const layer of sirenLayers(arch)) {
        const start = n * q + layer.weightOffset;
        const size = layer.inputs * layer.outputs;
        const pruned = Array.from(next.subarray(start, start + size)).filter((k) => k === 0).length;
        const bias = next.subarray(n * q + layer.biasOffset, n * q + layer.biasOffset + layer.outputs);
        assert(bias.every((k) => k === 1), `layer ${layer.index} biases are never pruned`);
        if (layer.index === 1 || layer.index === 3) {
          assertEquals(pruned, Math.floor(sparsity * size), `image ${n} layer ${layer.index} at ${sparsity}`);
          // Every kept weight is at least as large as every pruned one.
          let largestPruned = 0;
          let smallestKept = Infinity;
          for (let k = 0; k < size; k++) {
            const magnitude = Math.abs(weights[start + k]);
            if (next[start + k] === 0) largestPruned = Math.max(largestPruned, magnitude);
            else smallestKept = Math.min(smallestKept, magnitude);
          }
          assert(largestPruned <= smallestKept, `layer ${layer.index}: pruned ${largestPruned} > kept ${smallestKept}`);
        } else {
          assertEquals(pruned, 0, `layer ${layer.index} is not prunable here`);
        }
      }
    }
    mask = next;
    previous = counts;
  }
});

function fakeSteps(psnr: number[][], bits: number[][]): { steps: PruneStep[]; stepBits: Float64Array[] } {
  const steps = psnr.map((row, k) => ({
    sparsity: k / 10,
    weights: new Float32Array(row.length * q),
    mask: new Uint8Array(row.length * q),
    psnr: Float32Array.from(row),
  }));
  return { steps, stepBits: bits.map((row) => Float64Array.from(row)) };
}

Deno.test("step selection keeps each image's sparsest step within its PSNR budget", () => {
  // Three images, four steps. Image 2 recovers at step 3 after failing step 2.
  const { steps } = fakeSteps(
    [[30, 20, 25], [29.5, 19.2, 24], [28, 18, 23.5], [27, 17, 24.2]],
    [[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]],
  );
  const chosen = selectSteps(steps, { kind: "psnr-drop", maxDrop: 1, reference: [30, 19, 25] });
  assertEquals([...chosen], [1, 2, 3]);
  // Nothing within budget: step 0.
  assertEquals([...selectSteps(steps, { kind: "psnr-drop", maxDrop: 0, reference: [40, 40, 40] })], [0, 0, 0]);
});

Deno.test("size selection meets the budget at the least PSNR loss", () => {
  // Image 0 loses little by shrinking, image 1 a lot: the budget goes to image 1.
  const { steps, stepBits } = fakeSteps(
    [[30, 20], [29.9, 15], [29.8, 10]],
    [[100, 100], [80, 80], [60, 60]],
  );
  assertEquals([...selectSteps(steps, { kind: "size", maxBits: 200, stepBits })], [0, 0]);
  assertEquals([...selectSteps(steps, { kind: "size", maxBits: 160, stepBits })], [2, 0]);
  assertEquals([...selectSteps(steps, { kind: "size", maxBits: 140, stepBits })], [2, 1]);
  // Unreachable: the smallest step everywhere.
  assertEquals([...selectSteps(steps, { kind: "size", maxBits: 10, stepBits })], [2, 2]);
});

Deno.test("layer bits: the smallest candidate within the tolerance, else the fallback", async () => {
  const weights = initWeights(2, 3);
  const measure = fakeDecoder(weights, [100, 1000, 1, 1e12]);
  const choice = await chooseLayerBits({ arch, weights, measure, toleranceDb: 0.01 });
  choice.lossDb.forEach((loss, l) => assert(loss <= 0.01 || choice.bits[l] === 16, `layer ${l}: ${loss} dB`));
  assert(choice.bits[1] > choice.bits[2], `bits ${choice.bits}`);
  assertEquals(choice.bits[3], 16, "a layer that no candidate keeps falls back to 16 bits");
  // Each chosen width is the smallest: one bit fewer exceeds the tolerance.
  for (let l = 0; l < 3; l++) {
    if (choice.bits[l] === 2) continue;
    const perLayer = [32, 32, 32, 32];
    perLayer[l] = choice.bits[l] - 1;
    const loss = 40 - (await measure(dequantize(quantize(arch, weights, perLayer))))[0];
    assert(loss > 0.01, `layer ${l}: ${choice.bits[l] - 1} bits would do (${loss} dB)`);
  }
  await chooseLayerBits({ arch, weights, measure, toleranceDb: -1 }).then(
    () => Promise.reject(new Error("accepted a negative tolerance")),
    (error) => assert(error instanceof RangeError),
  );
});

Deno.test("layer bits ladder reuses measurements", async () => {
  const weights = initWeights(2, 4);
  const layers = sirenLayers(arch);
  const decode = fakeDecoder(weights, [100, 1000, 1, 10]);
  let calls = 0;
  const measure = (w: Float32Array) => {
    calls++;
    return decode(w);
  };
  const tolerances = [0.5, 0.05, 0.005];
  const ladder = await chooseLayerBitsLadder({ arch, weights, measure }, tolerances);
  const ladderCalls = calls;
  let separateCalls = 0;
  for (let i = 0; i < tolerances.length; i++) {
    calls = 0;
    const single = await chooseLayerBits({ arch, weights, measure, toleranceDb: tolerances[i] });
    separateCalls += calls;
    assertEquals(ladder[i], single);
  }
  // A tighter tolerance never narrows a layer.
  for (let l = 0; l < layers.length; l++) {
    assert(ladder[1].bits[l] >= ladder[0].bits[l], `layer ${l}: ${ladder[0].bits} then ${ladder[1].bits}`);
    assert(ladder[2].bits[l] >= ladder[1].bits[l], `layer ${l}: ${ladder[1].bits} then ${ladder[2].bits}`);
  }
  assert(ladderCalls < separateCalls, `ladder measured ${ladderCalls} times, separate runs ${separateCalls}`);
});

Deno.test("estimated code bits track the coded QANS size", () => {
  const weights = initWeights(200, 5);
  const random = seededRandom(6);
  const mask = Uint8Array.from(weights, (_, i) => (i % q) >= 24 && random() < 0.4 ? 0 : 1);
  for (const bits of [[16, 6, 5, 4], [8, 8, 8, 8]]) {
    const quantized = quantize(arch, weights, { bits, mask });
    const estimate = codeBitsPerImage(quantized).reduce((a, b) => a + b, 0) / 8;
    const actual = encodeQans(quantized).byteLength;
    // The payload adds per-layer frequency tables and coder state to the entropy.
    assert(Math.abs(actual - estimate) / actual < 0.1, `bits ${bits}: estimate ${estimate} B, coded ${actual} B`);
  }
});

Deno.test("pruneAndTune keeps every step and nests the masks", async () => {
  const gpu = await testGpu();
  const side = 8;
  const count = 3;
  const random = seededRandom(2);
  const images = Uint8Array.from({ length: count * side * side * 3 }, () => Math.floor(random() * 256));
  const result = await pruneAndTune(gpu, {
    arch,
    side,
    images,
    weights: initWeights(count, 9),
    bits: [12, 6, 6, 8],
    sparsities: [0, 0.3, 0.6],
    iterations: 5,
    memoryBytes: 2 * 1024 * 1024,
  });
  assertEquals(result.steps.length, 3);
  for (let k = 1; k < 3; k++) {
    result.steps[k].mask.forEach((keep, i) => assert(keep <= result.steps[k - 1].mask[i], `step ${k} weight ${i}`));
    const kept = keptCounts(result.steps[k].mask, q);
    const before = keptCounts(result.steps[k - 1].mask, q);
    kept.forEach((c, n) => assert(c < before[n], `step ${k} image ${n} pruned nothing`));
  }
  result.steps.forEach((step) => step.psnr.forEach((p) => assert(Number.isFinite(p))));
  await pruneAndTune(gpu, { arch, side, images, weights: initWeights(count, 9), bits: [8, 8, 8, 8], sparsities: [0.5, 0.2] }).then(
    () => Promise.reject(new Error("accepted a decreasing schedule")),
    (error) => assert(error instanceof RangeError && error.message.includes("must not decrease"), String(error)),
  );
});

Deno.test("pruneAndTune halves a batch that runs out of memory", async () => {
  const gpu = await Gpu.create({ notice: false });
  try {
    const side = 8;
    const count = 4;
    const random = seededRandom(3);
    const images = Uint8Array.from({ length: count * side * side * 3 }, () => Math.floor(random() * 256));
    const options = { arch, side, images, weights: initWeights(count, 4), bits: [10, 6, 6, 8], sparsities: [0, 0.3], iterations: 4 };
    const measure = async (batchSize: number) => {
      let held = 0;
      const result = await pruneAndTune(gpu, { ...options, batchSize, onBatch: () => void (held = Math.max(held, gpu.allocatedBytes)) });
      return { held, result };
    };
    const whole = await measure(4);
    const pair = await measure(2);
    // Room for 3 images: the batch of 4 fails and the halved batch of 2 fits.
    const perImage = (whole.held - pair.held) / 2;
    gpu.memoryLimit = pair.held + perImage;
    const warnings: string[] = [];
    const split = await pruneAndTune(gpu, { ...options, batchSize: 4, onWarning: (message) => warnings.push(message) });
    assertEquals(split.batchSize, 2);
    assertEquals(warnings, ["GPU out of memory for a batch of 4 images; fine-tuning in batches of 2 instead."]);
    // Each image is fine-tuned on its own, so halving changes no bit of the result.
    split.steps.forEach((step, k) => {
      assertEquals(step.weights, whole.result.steps[k].weights);
      assertEquals(step.psnr, whole.result.steps[k].psnr);
    });
  } finally {
    gpu.destroy();
  }
});
