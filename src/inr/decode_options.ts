// Option and buffer types of the GPU decoder in src/inr/decode.ts.

import type { QuantizedInrs } from "./quantize.ts";
import type { SirenArch } from "./siren.ts";

/** Encoded dataset as the decoder reads it. A parsed .rinr file (`RinrFile`) fits. */
export interface DecoderSource {
  arch: SirenArch;
  /** Side R in pixels of the encoded images. */
  resolution: number;
  /** fp32 weights [N][Q] or packed quantized weights. */
  weights: Float32Array | QuantizedInrs;
  /** Class index per image [N]. Default: all 0. */
  labels?: Uint32Array;
}

/** Options for {@linkcode InrDecoder.create}. */
export interface DecoderOptions {
  /** Pixels per workgroup. Default: 64. */
  workgroupSize?: number;
  /**
   * Maximum bytes of workgroup memory for a copy of one image's dequantized
   * weights (in the padded vec4 layout of wgsl/inr_decode.wgsl). When they do
   * not fit, or with 0, every pixel reads them from the batch's weight buffer.
   * Default: the device's maxComputeWorkgroupStorageSize.
   */
  cacheBytes?: number;
}

/** Buffers bound by {@linkcode InrDecoder.decodeBatch}. */
export interface BatchBuffers {
  /** Image order, u32 [*], e.g. one epoch's permutation. Omit to decode images first .. first + batch - 1. */
  indices?: GPUBuffer;
  /** Classifier input, f32 [B][3][S][S]. */
  output: GPUBuffer;
  /** Labels of the batch, u32 [B]. Default: not written. */
  labelsOut?: GPUBuffer;
}

/** Settings of {@linkcode InrDecoder.decodeBatch}. */
export interface BatchOptions {
  /** B, samples per batch. */
  batch: number;
  /** Position in `indices` (or first image) of sample 0. Default: 0. Change per step with `update`. */
  first?: number;
  /** Output side S in pixels. Default: the encoded resolution R. */
  size?: number;
  /** Zero padding of the random crop in output pixels, 0 for no crop. Default: 0. */
  pad?: number;
  /** Flip each sample horizontally with probability 1/2. Default: false. */
  flip?: boolean;
  /** Per-channel mean subtracted from RGB in [0, 1]. Default: [0, 0, 0]. */
  mean?: readonly [number, number, number];
  /** Per-channel standard deviation that divides RGB after the mean. Default: [1, 1, 1]. */
  std?: readonly [number, number, number];
  /** Seed of the augmentation hash. Default: 0. */
  seed?: number;
  /** Training step, the second input of the augmentation hash. Default: 0. */
  step?: number;
}

/** Per-step values of a recorded batch decode. */
export interface BatchUpdate {
  first?: number;
  step?: number;
  seed?: number;
}

/** A batch decode recorded in a plan. `update` changes it before the next submit. */
export interface RecordedDecode {
  readonly batch: number;
  readonly size: number;
  update(values: BatchUpdate): void;
}

/** Options for {@linkcode InrDecoder.decodeImages}. */
export interface DecodeImagesOptions {
  /** First image to decode. Default: 0. */
  first?: number;
  /** Number of images. Default: all from `first` on. */
  count?: number;
  /** Output side S in pixels. Default: the encoded resolution R. */
  size?: number;
}
