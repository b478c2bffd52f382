// Compression by pruning and quantization-aware fine-tuning, on the GPU.
//
// Starting from the fp32 fit of every image, `pruneAndTune` walks a schedule
// of sparsities. Each step prunes the smallest-magnitude weights of each
// prunable layer of each image, then fine-tunes the kept weights for a few
// iterations with the forward pass on the quantized, pruned network (see
// SirenFitBatch's `quantization`). Step 0 has sparsity 0: it only recovers
// what rounding lost. Every step starts from the previous step's result, so
// the masks are nested, and every step's weights are kept. `selectSteps` then
// picks one step per image: the sparsest within a PSNR budget, or the mix
// that meets a size target at the least loss of PSNR.

import type { Gpu } from "../gpu/device.ts";
import { resolveLayerBits } from "./quantize.ts";
import { allocateFitBatch } from "./encode.ts";
import { maxBatchImages } from "./siren_batch.ts";
import { type SirenArch, sirenLayers, sirenParamCount } from "./siren.ts";

/** Default sparsity schedule: the fraction of each prunable layer's weights removed after each step. */
export const DEFAULT_SPARSITIES: readonly number[] = [0, 0.05, 0.1, 0.2, 0.3, 0.5];

/** Settings of {@linkcode pruneAndTune}. */
export interface PruneOptions {
  arch: SirenArch;
  /** Image side R. */
  side: number;
  /** Images, u8 RGB [N][R][R][3]: the fine-tuning targets. */
  images: Uint8Array;
  /** fp32 fit of every image, [N][Q]. */
  weights: Float32Array;
  /** Bit width per layer (1..16, or 32 for f32). */
  bits: readonly number[];
  /**
   * Sparsity per step, non-decreasing, each in [0, 1). Default
   * {@linkcode DEFAULT_SPARSITIES}. A sparsity s removes floor(s * count)
   * weights of each prunable layer (W only; biases are never pruned).
   */
  sparsities?: readonly number[];
  /** Fine-tuning iterations per step. Default 100. */
  iterations?: number;
  /** Initial learning rate of each step's cosine schedule. Default 1e-4. */
  learningRate?: number;
  /** Layers that may be pruned. Default: every layer but the first, whose few weights are the most sensitive. */
  prunableLayers?: readonly number[];
  /** GPU memory budget of one batch, in bytes. Default 2 GiB. */
  memoryBytes?: number;
  /**
   * Images fine-tuned together. Default: the fewest batches of equal size that
   * fit `memoryBytes` and the adapter's binding limit. Ignored with `resume`,
   * which carries the batch size of the interrupted run.
   */
  batchSize?: number;
  /**
   * Results of the first images from an earlier, interrupted run with the same
   * settings. Fine-tuning starts at the next image, in batches of the size
   * recorded there. Default: none.
   */
  resume?: PruneResume;
  /**
   * Called after each finished batch, before the next starts; fine-tuning
   * waits for the returned promise, so a checkpoint written here is complete.
   */
  onBatch?: (batch: PruneBatchDone) => void | Promise<void>;
  /** Iterations per submit between progress reports. Default 50. */
  progressEvery?: number;
  /** Receives one line when the batch was halved to fit GPU memory. Default: none. */
  onWarning?: (message: string) => void;
  /** Called after each submit. */
  onProgress?: (progress: PruneProgress) => void;
}

/** Progress of {@linkcode pruneAndTune}. */
export interface PruneProgress {
  /** Image-iterations done and in all. */
  done: number;
  total: number;
  /** Step index into the sparsities. */
  step: number;
  /** Mean best PSNR of the batch in this step, dB. */
  meanPsnr: number;
}

/** One step's result for every image. */
export interface PruneStep {
  sparsity: number;
  /** Latent weights with the best PSNR of the step, [N][Q]; quantize them with `mask` to store. */
  weights: Float32Array;
  /** Pruning mask [N][Q]: 0 for a pruned weight. */
  mask: Uint8Array;
  /** PSNR of the quantized, pruned weights in dB as the fine-tuning measured it, [N]. */
  psnr: Float32Array;
}

/** Finished images that {@linkcode pruneAndTune} continues from. */
export interface PruneResume {
  /** Images finished, from 0 to the image count. */
  imagesDone: number;
  /** Images per batch of the interrupted run. */
  batchSize: number;
  /** One entry per sparsity of the schedule, holding the first `imagesDone` images: weights and mask [imagesDone][Q], PSNR [imagesDone]. */
  steps: readonly PruneStep[];
}

/** State after one finished batch, passed to `onBatch`. */
export interface PruneBatchDone {
  /** Images finished so far; the first `imagesDone` images of every step are final. */
  imagesDone: number;
  imageCount: number;
  batchSize: number;
  /** Every step's arrays for all images; entries past `imagesDone` are zero. */
  steps: readonly PruneStep[];
}

/** Result of {@linkcode pruneAndTune}. */
export interface PruneResult {
  steps: PruneStep[];
  /** Images per batch. */
  batchSize: number;
  seconds: number;
}

/** Prunes and fine-tunes every image through the sparsity schedule; see the file comment. */
export async function pruneAndTune(gpu: Gpu, options: PruneOptions): Promise<PruneResult> {
  const started = performance.now();
  const { arch, side, images } = options;
  const q = sirenParamCount(arch);
  const pixels = side * side;
  const count = options.weights.length / q;
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`Weights have ${options.weights.length} values, not a positive multiple of Q = ${q}.`);
  }
  if (images.length !== count * pixels * 3) {
    throw new RangeError(`Images have ${images.length} bytes; expected ${count} x ${side} x ${side} x 3.`);
  }
  const bits = resolveLayerBits(arch, options.bits);
  const sparsities = options.sparsities ?? DEFAULT_SPARSITIES;
  validateSparsities(sparsities);
  const iterations = options.iterations ?? 100;
  if (!Number.isInteger(iterations) || iterations < 1) {
    throw new RangeError(`Fine-tuning iterations must be a positive integer, got ${iterations}.`);
  }
  const learningRate = options.learningRate ?? 1e-4;
  const layerCount = sirenLayers(arch).length;
  const prunable = options.prunableLayers ?? Array.from({ length: layerCount - 1 }, (_, l) => l + 1);
  for (const l of prunable) {
    if (!Number.isInteger(l) || l < 0 || l >= layerCount) {
      throw new RangeError(`Prunable layer ${l} does not exist: the SIREN has layers 0..${layerCount - 1}.`);
    }
  }
  const progressEvery = options.progressEvery ?? 50;

  const quantization = { bits };
  const memoryBytes = options.memoryBytes ?? 2 * 1024 ** 3;
  const maxImages = maxBatchImages(gpu, { arch, side, memoryBytes, quantization });
  const requestedBatch = chooseBatchSize({ count, maxImages, requested: options.resume?.batchSize ?? options.batchSize });
  const steps: PruneStep[] = sparsities.map((sparsity) => ({
    sparsity,
    weights: new Float32Array(count * q),
    mask: new Uint8Array(count * q),
    psnr: new Float32Array(count),
  }));
  const firstImage = applyResume(options.resume, { count, q, steps });
  const total = (count - firstImage) * iterations * sparsities.length;
  let done = 0;

  // Each image is fine-tuned on its own, so a batch halved to fit memory gives the same weights.
  const batch = await allocateFitBatch(gpu, {
    settings: { arch, side, capacity: requestedBatch, iterations, learningRate, quantization },
    stage: "fine-tuning",
    onWarning: options.onWarning,
  });
  const batchSize = batch.capacity;
  try {
    for (let first = firstImage; first < count; first += batchSize) {
      const n = Math.min(batchSize, count - first);
      const batchImages = images.subarray(first * pixels * 3, (first + n) * pixels * 3);
      let weights: Float32Array = options.weights.slice(first * q, (first + n) * q);
      let mask: Uint8Array = new Uint8Array(n * q).fill(1);
      for (let k = 0; k < sparsities.length; k++) {
        mask = pruneByMagnitude(arch, { weights, mask, sparsity: sparsities[k], layers: prunable });
        batch.load({ images: batchImages, weights, mask });
        while (batch.stepsDone < iterations) {
          const run = Math.min(progressEvery, iterations - batch.stepsDone);
          batch.run(run);
          done += run * n;
          if (options.onProgress) {
            const best = (await batch.readScores()).best;
            options.onProgress({ done, total, step: k, meanPsnr: best.reduce((a, b) => a + b, 0) / n });
          }
        }
        const scores = await batch.readScores();
        weights = await batch.readBestWeights();
        steps[k].weights.set(weights, first * q);
        steps[k].mask.set(mask, first * q);
        steps[k].psnr.set(scores.best, first);
      }
      await options.onBatch?.({ imagesDone: first + n, imageCount: count, batchSize, steps });
    }
  } finally {
    batch.destroy();
  }
  return { steps, batchSize, seconds: (performance.now() - started) / 1000 };
}

// Equal batches by default, as in encode; a requested size must fit the GPU.
function chooseBatchSize(input: { count: number; maxImages: number; requested?: number }): number {
  const { count, maxImages, requested } = input;
  if (requested === undefined) return Math.ceil(count / Math.ceil(count / maxImages));
  if (!Number.isInteger(requested) || requested < 1) {
    throw new RangeError(`Batch size must be a positive integer, got ${requested}.`);
  }
  if (requested > maxImages) {
    throw new RangeError(
      `Batch size ${requested} does not fit: at most ${maxImages} images of this shape fit ` +
        "the adapter's binding limit and the memory budget.",
    );
  }
  return Math.min(count, requested);
}

// Copies the finished images of an earlier run into `steps` and returns the first image to fine-tune.
function applyResume(
  resume: PruneResume | undefined,
  target: { count: number; q: number; steps: PruneStep[] },
): number {
  if (!resume) return 0;
  const { count, q, steps } = target;
  const done = resume.imagesDone;
  if (!Number.isInteger(done) || done < 0 || done > count) {
    throw new RangeError(`resume.imagesDone must be an integer between 0 and ${count}, got ${done}.`);
  }
  if (resume.steps.length !== steps.length) {
    throw new RangeError(`resume has ${resume.steps.length} steps, but the schedule has ${steps.length}.`);
  }
  resume.steps.forEach((step, k) => {
    if (step.sparsity !== steps[k].sparsity) {
      throw new RangeError(`resume step ${k} has sparsity ${step.sparsity}, but the schedule has ${steps[k].sparsity}.`);
    }
    if (step.weights.length !== done * q || step.mask.length !== done * q || step.psnr.length !== done) {
      throw new RangeError(
        `resume step ${k} must hold ${done * q} weights, ${done * q} mask entries and ${done} PSNR values ` +
          `for ${done} images, got ${step.weights.length}, ${step.mask.length} and ${step.psnr.length}.`,
      );
    }
    steps[k].weights.set(step.weights);
    steps[k].mask.set(step.mask);
    steps[k].psnr.set(step.psnr);
  });
  return done;
}

/** Throws a RangeError naming the entry unless `sparsities` is a non-empty, non-decreasing list in [0, 1). */
export function validateSparsities(sparsities: readonly number[]): void {
  if (sparsities.length === 0) throw new RangeError("The sparsity schedule is empty; give at least one sparsity, such as 0.");
  sparsities.forEach((s, k) => {
    if (!(s >= 0 && s < 1)) throw new RangeError(`Sparsity ${s} (step ${k}) must be in [0, 1).`);
    if (k > 0 && s < sparsities[k - 1]) {
      throw new RangeError(`Sparsities must not decrease, but step ${k} has ${s} after ${sparsities[k - 1]}.`);
    }
  });
}

/**
 * Returns a mask [N][Q] that keeps what `mask` kept, except that in each
 * prunable layer of each image the floor(sparsity * count) weights of W with
 * the smallest magnitude are pruned. Weights already pruned count as the
 * smallest, so masks only shrink. Ties break by position, so the result is
 * deterministic.
 */
export function pruneByMagnitude(
  arch: SirenArch,
  input: { weights: Float32Array; mask: Uint8Array; sparsity: number; layers: readonly number[] },
): Uint8Array {
  const q = sirenParamCount(arch);
  const layers = sirenLayers(arch);
  const count = input.weights.length / q;
  const mask = input.mask.slice();
  for (let image = 0; image < count; image++) {
    for (const l of input.layers) {
      const layer = layers[l];
      const start = image * q + layer.weightOffset;
      const size = layer.outputs * layer.inputs;
      const prune = Math.floor(input.sparsity * size);
      const order = Array.from({ length: size }, (_, k) => k);
      const magnitude = (k: number) => mask[start + k] === 0 ? -1 : Math.abs(input.weights[start + k]);
      order.sort((a, b) => magnitude(a) - magnitude(b) || a - b);
      for (let k = 0; k < prune; k++) mask[start + order[k]] = 0;
    }
  }
  return mask;
}

/** Non-zero weights per image in a mask [N][Q]. */
export function keptCounts(mask: Uint8Array, paramCount: number): Uint32Array {
  const counts = new Uint32Array(mask.length / paramCount);
  for (let i = 0; i < mask.length; i++) if (mask[i] !== 0) counts[Math.floor(i / paramCount)]++;
  return counts;
}

/** Rule by which {@linkcode selectSteps} picks a step per image. */
export type StepSelection =
  | { kind: "psnr-drop"; /** Largest allowed PSNR loss against the fp32 fit, dB. */ maxDrop: number; /** fp32 PSNR per image, dB. */ reference: ArrayLike<number> }
  | { kind: "size"; /** Largest total estimated size, bits. */ maxBits: number; /** Estimated bits per image per step, [steps][N]. */ stepBits: Float64Array[] };

/**
 * Picks one step per image. "psnr-drop" takes the sparsest step whose PSNR is
 * at most `maxDrop` below the reference, or step 0 when none is. "size" picks
 * the steps that minimize the summed PSNR loss with the summed estimated
 * size within `maxBits` (a Lagrangian search over the size-quality trade-off);
 * when no mix fits, it takes the sparsest step of every image.
 */
export function selectSteps(steps: readonly PruneStep[], selection: StepSelection): Uint32Array {
  const count = steps[0].psnr.length;
  const chosen = new Uint32Array(count);
  if (selection.kind === "psnr-drop") {
    for (let n = 0; n < count; n++) {
      const floor = selection.reference[n] - selection.maxDrop;
      for (let k = steps.length - 1; k >= 0; k--) {
        if (steps[k].psnr[n] >= floor) {
          chosen[n] = k;
          break;
        }
      }
    }
    return chosen;
  }

  // For a price lambda (dB per bit), each image takes the step maximizing
  // psnr - lambda * bits; a higher price picks smaller steps. Bisect the price.
  const pick = (lambda: number) => {
    let total = 0;
    for (let n = 0; n < count; n++) {
      let best = 0;
      let bestValue = -Infinity;
      for (let k = 0; k < steps.length; k++) {
        const value = steps[k].psnr[n] - lambda * selection.stepBits[k][n];
        if (value > bestValue) {
          bestValue = value;
          best = k;
        }
      }
      chosen[n] = best;
      total += selection.stepBits[best][n];
    }
    return total;
  };
  if (pick(0) <= selection.maxBits) return chosen;
  let low = 0;
  let high = 1e-6;
  while (pick(high) > selection.maxBits && high < 1e6) high *= 2;
  if (pick(high) > selection.maxBits) {
    chosen.fill(steps.length - 1);
    return chosen;
  }
  for (let i = 0; i < 60; i++) {
    const middle = (low + high) / 2;
    if (pick(middle) > selection.maxBits) low = middle;
    else high = middle;
  }
  pick(high);
  return chosen;
}
