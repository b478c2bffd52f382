// Raw 8-bit images resident on the GPU, turned into augmented classifier
// batches by wgsl/raw_batch.wgsl, and the same transform on the CPU. The CPU
// version is the test reference and the `files` input pipeline, which decodes
// image files per batch the way a PyTorch DataLoader does.

import type { Gpu } from "../gpu/device.ts";
import { compileKernel, type DispatchHandle, type Kernel, type Plan } from "../gpu/kernel.ts";
import { augmentationOf } from "../inr/decode.ts";

/** Normalization and augmentation of a batch. */
export interface BatchTransform {
  /** Output side S in pixels. */
  size: number;
  /** Zero padding of the random crop in pixels; 0 disables cropping. */
  pad: number;
  /** Random horizontal flip with probability 1/2. */
  flip: boolean;
  /** Per-channel mean of RGB in [0, 1]. */
  mean: readonly [number, number, number];
  /** Per-channel standard deviation of RGB in [0, 1]. */
  std: readonly [number, number, number];
  /** Augmentation seed. */
  seed: number;
}

/** ImageNet channel statistics, used for every dataset so that results compare. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** A recorded raw-batch dispatch whose position and step change per submit. */
export interface RecordedRawBatch {
  update(values: { first: number; step: number }): void;
}

/** Raw uint8 RGB images [N][R][R][3] and labels resident on the GPU. */
export class RawImages {
  readonly gpu: Gpu;
  readonly count: number;
  readonly resolution: number;
  /** Bytes of pixels and labels held on the GPU. */
  readonly residentBytes: number;
  #pixels: GPUBuffer;
  #labels: GPUBuffer;
  #noIndices: GPUBuffer;
  #kernel: Kernel;

  private constructor(gpu: Gpu, data: { pixels: GPUBuffer; labels: GPUBuffer; count: number; resolution: number }, kernel: Kernel) {
    this.gpu = gpu;
    this.count = data.count;
    this.resolution = data.resolution;
    this.#pixels = data.pixels;
    this.#labels = data.labels;
    this.#noIndices = gpu.buffer(4, "no indices");
    this.#kernel = kernel;
    this.residentBytes = data.pixels.size + data.labels.size;
  }

  /** Uploads `images` ([N][R][R][3] bytes) and `labels` ([N]) once. */
  static async create(gpu: Gpu, data: { images: Uint8Array; labels: ArrayLike<number>; resolution: number }): Promise<RawImages> {
    const count = data.labels.length;
    const r = data.resolution;
    if (data.images.length !== count * r * r * 3) {
      throw new RangeError(`Raw images hold ${data.images.length} bytes, expected ${count} x ${r} x ${r} x 3.`);
    }
    const kernel = await compileKernel(gpu, {
      name: "raw_batch",
      file: "raw_batch.wgsl",
      entry: "raw_batch",
      bindings: ["params", "pixels", "labels", "indices", "output", "labels_out"],
      workgroup: ["WG"],
    });
    const pixels = gpu.buffer(data.images.length, "raw pixels", data.images);
    const labels = gpu.buffer(count * 4, "raw labels", Uint32Array.from(data.labels));
    return new RawImages(gpu, { pixels, labels, count, resolution: r }, kernel);
  }

  /**
   * Records a batch of `batch` samples into `output` ([B][3][S][S] f32) and
   * `labelsOut` ([B] u32). Sample j is image indices[first + j], or image
   * first + j without `indices`.
   */
  recordBatch(
    plan: Plan,
    buffers: { output: GPUBuffer; labelsOut: GPUBuffer; indices?: GPUBuffer },
    options: BatchTransform & { batch: number },
  ): RecordedRawBatch {
    const params = {
      batch: options.batch,
      first: 0,
      use_indices: buffers.indices ? 1 : 0,
      resolution: this.resolution,
      size: options.size,
      pad: options.pad,
      flip: options.flip ? 1 : 0,
      seed: options.seed >>> 0,
      step: 0,
      mean_r: options.mean[0],
      mean_g: options.mean[1],
      mean_b: options.mean[2],
      inv_std_r: 1 / options.std[0],
      inv_std_g: 1 / options.std[1],
      inv_std_b: 1 / options.std[2],
    };
    const handle: DispatchHandle = plan.add(this.#kernel, {
      pixels: this.#pixels,
      labels: this.#labels,
      indices: buffers.indices ?? this.#noIndices,
      output: buffers.output,
      labels_out: buffers.labelsOut,
    }, params, [options.size * options.size, options.batch]);
    return {
      update: ({ first, step }) => plan.update(handle, { ...params, first, step: step >>> 0 }),
    };
  }

  /** Releases the resident buffers. */
  destroy(): void {
    this.gpu.release(this.#pixels);
    this.gpu.release(this.#labels);
    this.gpu.release(this.#noIndices);
  }
}

/**
 * Writes sample `sample` of a batch into `output` ([B][3][S][S] f32) on the
 * CPU, with the same crop, flip, resampling and normalization as the GPU
 * kernel. `image` is one [R][R][3] byte image.
 */
export function transformSample(
  image: Uint8Array,
  target: { output: Float32Array; sample: number; resolution: number; step: number },
  transform: BatchTransform,
): void {
  const { output, sample, resolution: r, step } = target;
  const s = transform.size;
  const plane = s * s;
  const augment = transform.pad > 0 || transform.flip;
  const random = augment ? augmentationOf({ seed: transform.seed >>> 0, step, sample, pad: transform.pad }) : undefined;
  const base = sample * 3 * plane;
  const rgb = [0, 0, 0];
  for (let p = 0; p < plane; p++) {
    let x = p % s;
    let y = Math.floor(p / s);
    if (random) {
      if (transform.flip && random.flip) x = s - 1 - x;
      x += random.dx - transform.pad;
      y += random.dy - transform.pad;
    }
    if (x >= 0 && y >= 0 && x < s && y < s) sampleRgb(image, r, s, x, y, rgb);
    else rgb.fill(0);
    for (let c = 0; c < 3; c++) output[base + c * plane + p] = (rgb[c] - transform.mean[c]) / transform.std[c];
  }
}

function sampleRgb(image: Uint8Array, r: number, s: number, x: number, y: number, out: number[]): void {
  if (s === r) {
    const k = (y * r + x) * 3;
    for (let c = 0; c < 3; c++) out[c] = image[k + c] / 255;
    return;
  }
  const ratio = r / s;
  const sx = Math.min(Math.max((x + 0.5) * ratio - 0.5, 0), r - 1);
  const sy = Math.min(Math.max((y + 0.5) * ratio - 0.5, 0), r - 1);
  const x0 = Math.floor(sx), y0 = Math.floor(sy);
  const x1 = Math.min(x0 + 1, r - 1), y1 = Math.min(y0 + 1, r - 1);
  const fx = sx - x0, fy = sy - y0;
  for (let c = 0; c < 3; c++) {
    const at = (xx: number, yy: number) => image[(yy * r + xx) * 3 + c] / 255;
    const top = at(x0, y0) + (at(x1, y0) - at(x0, y0)) * fx;
    const bottom = at(x0, y1) + (at(x1, y1) - at(x0, y1)) * fx;
    out[c] = top + (bottom - top) * fy;
  }
}
