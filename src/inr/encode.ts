// Encoding: fits one SIREN per image on the GPU, many images at a time.
//
// Conventions of COIN and Rapid-INR: w0 = 30 in every sine layer, a linear
// output layer, MSE over all pixels and the 3 channels with the full image in
// every iteration, Adam (0.9, 0.999, 1e-8), cosine learning-rate decay from
// the initial rate to 0, and the weights of the best PSNR kept per image.
// Every iteration scores the weights its forward pass used, before the Adam
// step changes them, so the weights after the last step are never scored.
// Initial weights come from a generator seeded by (seed, image index), so the
// result does not depend on the batch size. That is why a batch that does not
// fit GPU memory can be halved without changing the result.

import { mix32 } from "./sampling.ts";
import { type Gpu, GpuDeviceLostError, GpuOutOfMemoryError } from "../gpu/device.ts";
import {
  type AdamSettings,
  maxBatchImages,
  SirenFitBatch,
  type SirenFitSettings,
  sirenImageBytes,
  type SirenTuning,
} from "./siren_batch.ts";
import { type SirenArch, sirenInit, sirenParamCount } from "./siren.ts";
import { encodePreset } from "./presets.ts";

/** Images to encode: u8 RGB, row-major [count][side][side][3]. */
export interface EncodeInput {
  images: Uint8Array;
  count: number;
  /** Image side R in pixels. */
  side: number;
}

/** Progress report, sent every `progressEvery` iterations and at the end of each batch. */
export interface EncodeProgress {
  /** Images whose fitting has finished, over all batches. */
  imagesDone: number;
  imageCount: number;
  /** Index of the first image of the current batch. */
  batchStart: number;
  batchImages: number;
  /** Iterations done in the current batch. */
  iteration: number;
  iterations: number;
  /** Mean best PSNR of the current batch, in dB. */
  meanPsnr: number;
  /** Seconds since `encodeImages` started. */
  seconds: number;
}

/** Options of {@linkcode encodeImages}; explicit fields override the preset's. */
export interface EncodeOptions {
  /** Preset that supplies arch, iterations and learning rate. Default "cifar". */
  preset?: string;
  arch?: SirenArch;
  /** Adam iterations per image. Default: the preset's (5000). */
  iterations?: number;
  /** Initial learning rate. Default: the preset's (5e-4). */
  learningRate?: number;
  /**
   * Images fitted together. Default: the fewest batches that fit the
   * adapter's storage binding limit and `memoryBytes`, with equal sizes.
   * When the device runs out of memory allocating the batch, it is halved
   * until it fits; `onWarning` reports that once.
   */
  batchSize?: number;
  /**
   * GPU memory budget in bytes for one batch's buffers, used to size the
   * default batch. WebGPU does not report free memory. Default 2 GiB.
   */
  memoryBytes?: number;
  /** Seed of the weight initialization, an integer. Default 0. */
  seed?: number;
  /** Iterations between progress readbacks (each waits for the GPU). Default 100. */
  progressEvery?: number;
  onProgress?: (progress: EncodeProgress) => void;
  adam?: Partial<AdamSettings>;
  tuning?: Partial<SirenTuning>;
  /**
   * Results of the first images from an earlier, interrupted run with the same
   * settings and batch size; fitting starts after them. Default: none.
   */
  resume?: EncodeResume;
  /**
   * Called after each finished batch, before the next starts; fitting waits
   * for the returned promise, so a checkpoint written here is complete.
   */
  onBatch?: (batch: EncodeBatchDone) => void | Promise<void>;
  /** Receives one line when the batch was halved to fit GPU memory. Default: none. */
  onWarning?: (message: string) => void;
}

/** Finished images that {@linkcode encodeImages} continues from. */
export interface EncodeResume {
  /** Images finished, from 0 to the image count. */
  imagesDone: number;
  /** Best weights of those images, [imagesDone][Q]. */
  weights: Float32Array;
  /** PSNR of those weights, [imagesDone], in dB. */
  psnr: Float32Array;
}

/** State after one finished batch, passed to `onBatch`. */
export interface EncodeBatchDone {
  /** Images finished so far; the first `imagesDone` entries below are final. */
  imagesDone: number;
  imageCount: number;
  batchSize: number;
  /** Weights of all images, [count][Q]; entries past `imagesDone` are zero. */
  weights: Float32Array;
  /** PSNR of all images in dB; entries past `imagesDone` are zero. */
  psnr: Float32Array;
}

/** Result of {@linkcode encodeImages}. */
export interface EncodeResult {
  /** Best weights per image, [count][Q] in the layout of src/inr/siren.ts. */
  weights: Float32Array;
  /** PSNR of those weights per image, in dB, computed on the GPU in float32. */
  psnr: Float32Array;
  arch: SirenArch;
  iterations: number;
  batchSize: number;
  /** Wall-clock seconds, uploads and readbacks included. */
  seconds: number;
  /** Images fitted in this call per second; images taken from `resume` are not counted. */
  imagesPerSecond: number;
}

/** Default GPU memory budget of one batch, in bytes. */
export const DEFAULT_MEMORY_BYTES = 2 * 1024 ** 3;

/** Returns a generator of uniform numbers in [0, 1) (mulberry32) for one image. */
export function imageRandom(options: { seed: number; index: number }): () => number {
  let state = mix32(mix32(options.seed) + options.index);
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Returns the initial weights of image `index`, the same for any batch size. */
export function initialWeights(
  arch: SirenArch,
  options: { seed: number; index: number },
): Float32Array {
  return sirenInit(arch, imageRandom(options));
}

function requirePositiveInteger(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}.`);
  }
}

// Copies the finished images of an earlier run and returns the first image to fit.
function applyResume(
  resume: EncodeResume | undefined,
  target: { count: number; q: number; weights: Float32Array; psnr: Float32Array },
): number {
  if (!resume) return 0;
  const { count, q } = target;
  const done = resume.imagesDone;
  // Any count of finished images will do: each image is fitted on its own, so
  // where the batches start does not change the result. A run whose batch was
  // halved to fit memory saves checkpoints that need not be multiples of the
  // new size.
  if (!Number.isInteger(done) || done < 0 || done > count) {
    throw new RangeError(`resume.imagesDone must be an integer between 0 and ${count}, got ${done}.`);
  }
  if (resume.weights.length !== done * q || resume.psnr.length !== done) {
    throw new RangeError(
      `resume must hold ${done * q} weights and ${done} PSNR values for ${done} images, ` +
        `got ${resume.weights.length} and ${resume.psnr.length}.`,
    );
  }
  target.weights.set(resume.weights);
  target.psnr.set(resume.psnr);
  return done;
}

/**
 * Fits one SIREN per image and returns the best weights and PSNR of each.
 * Same seed, inputs and adapter give identical weights.
 */
export async function encodeImages(
  gpu: Gpu,
  input: EncodeInput,
  options: EncodeOptions = {},
): Promise<EncodeResult> {
  const started = performance.now();
  const { count, side, images } = input;
  requirePositiveInteger("Image count", count);
  requirePositiveInteger("Image side", side);
  const pixels = side * side;
  if (!(images instanceof Uint8Array) || images.length !== count * pixels * 3) {
    throw new RangeError(
      `Images must be a Uint8Array of ${count} x ${side} x ${side} x 3 = ${
        count * pixels * 3
      } bytes, ` +
        `got ${images?.length} bytes.`,
    );
  }

  const preset = encodePreset(options.preset ?? "cifar");
  const arch = options.arch ?? preset.arch;
  const iterations = options.iterations ?? preset.iterations;
  const learningRate = options.learningRate ?? preset.learningRate;
  const seed = options.seed ?? 0;
  const progressEvery = options.progressEvery ?? 100;
  const memoryBytes = options.memoryBytes ?? DEFAULT_MEMORY_BYTES;
  requirePositiveInteger("Iterations", iterations);
  requirePositiveInteger("progressEvery", progressEvery);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`Seed must be an integer, got ${seed}.`);
  if (!(memoryBytes > 0)) throw new RangeError(`memoryBytes must be positive, got ${memoryBytes}.`);

  const fitting = { arch, side, memoryBytes, tuning: options.tuning };
  const maxImages = maxBatchImages(gpu, fitting);
  // Equal batches instead of full ones and a small remainder: the same number
  // of submits, and no batch too small to fill a GPU.
  let batchSize = Math.ceil(count / Math.ceil(count / maxImages));
  if (options.batchSize !== undefined) {
    requirePositiveInteger("Batch size", options.batchSize);
    if (options.batchSize > maxImages) {
      throw new RangeError(
        `Batch size ${options.batchSize} does not fit: at most ${maxImages} image${maxImages === 1 ? "" : "s"} of this shape fit ` +
          `the adapter's binding limit and the memory budget of ${memoryBytes} bytes.`,
      );
    }
    batchSize = Math.min(count, options.batchSize);
  }

  const q = sirenParamCount(arch);
  const weights = new Float32Array(count * q);
  const psnr = new Float32Array(count);
  const firstImage = applyResume(options.resume, { count, q, weights, psnr });
  const batch = await allocateFitBatch(gpu, {
    settings: {
      arch,
      side,
      capacity: batchSize,
      iterations,
      learningRate,
      adam: options.adam,
      tuning: options.tuning,
    },
    onWarning: options.onWarning,
  });
  batchSize = batch.capacity;
  let running = "";
  try {
    for (let batchStart = firstImage; batchStart < count; batchStart += batchSize) {
      const batchImages = Math.min(batchSize, count - batchStart);
      running = `while fitting images ${batchStart + 1}-${batchStart + batchImages} of ${count}`;
      const initial = new Float32Array(batchImages * q);
      for (let i = 0; i < batchImages; i++) {
        initial.set(initialWeights(arch, { seed, index: batchStart + i }), i * q);
      }
      batch.load({
        images: images.subarray(batchStart * pixels * 3, (batchStart + batchImages) * pixels * 3),
        weights: initial,
      });

      const report = (best: Float32Array, imagesDone: number) => {
        options.onProgress?.({
          imagesDone,
          imageCount: count,
          batchStart,
          batchImages,
          iteration: batch.stepsDone,
          iterations,
          meanPsnr: best.reduce((sum, value) => sum + value, 0) / best.length,
          seconds: (performance.now() - started) / 1000,
        });
      };
      while (batch.stepsDone < iterations) {
        batch.run(Math.min(progressEvery, iterations - batch.stepsDone));
        if (options.onProgress && batch.stepsDone < iterations) {
          report((await batch.readScores()).best, batchStart);
        }
      }

      const scores = await batch.readScores();
      weights.set(await batch.readBestWeights(), batchStart * q);
      psnr.set(scores.best, batchStart);
      report(scores.best, batchStart + batchImages);
      await options.onBatch?.({
        imagesDone: batchStart + batchImages,
        imageCount: count,
        batchSize,
        weights,
        psnr,
      });
    }
  } catch (error) {
    throw error instanceof GpuDeviceLostError ? error.during(running) : error;
  } finally {
    batch.destroy();
  }

  const seconds = (performance.now() - started) / 1000;
  const imagesPerSecond = (count - firstImage) / seconds;
  return { weights, psnr, arch, iterations, batchSize, seconds, imagesPerSecond };
}

/**
 * Allocates the buffers of a fitting batch, halving the batch while the
 * device runs out of memory. When the batch was halved, `onWarning` gets one
 * line naming `stage`. Throws a `GpuOutOfMemoryError` when one image does not fit.
 */
export async function allocateFitBatch(
  gpu: Gpu,
  request: { settings: SirenFitSettings; stage?: string; onWarning?: (message: string) => void },
): Promise<SirenFitBatch> {
  const { settings } = request;
  let capacity = settings.capacity;
  for (;;) {
    try {
      const batch = await gpu.allocate(
        `a batch of ${capacity} image${capacity === 1 ? "" : "s"}`,
        () => SirenFitBatch.create(gpu, { ...settings, capacity }),
      );
      if (capacity < settings.capacity) {
        request.onWarning?.(
          `GPU out of memory for a batch of ${settings.capacity} images; ${request.stage ?? "encoding"} in batches of ${capacity} instead.`,
        );
      }
      return batch;
    } catch (error) {
      if (!(error instanceof GpuOutOfMemoryError)) throw error;
      if (capacity === 1) throw oneImageDoesNotFit(settings, error);
      capacity = Math.ceil(capacity / 2);
    }
  }
}

function oneImageDoesNotFit(settings: SirenFitSettings, error: GpuOutOfMemoryError): GpuOutOfMemoryError {
  const { side, arch } = settings;
  // The step schedule (8 bytes per iteration) is shared by the batch but still needed for one image.
  const bytes = sirenImageBytes(settings).total + settings.iterations * 8;
  return new GpuOutOfMemoryError(`one image, the smallest batch`, {
    detail: `${error.detail}. One ${side}x${side} image with ${arch.sineLayers} sine layers of width ` +
      `${arch.width} needs about ${bytes} bytes (${formatBytes(bytes)}) of GPU memory. ` +
      "Free GPU memory that other programs hold, or use a smaller image side or fewer or narrower layers",
    bytes,
  });
}

function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024).toFixed(1)} KiB`;
}
