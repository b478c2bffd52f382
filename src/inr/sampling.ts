// Sampling positions of the GPU decoder: the coordinate mapping for any output
// size and the per-sample crop and flip of training batches. The WGSL in
// wgsl/inr_decode.wgsl computes the same, and tests build references with these.

import type { SirenArch } from "./siren.ts";

/**
 * Returns the random crop offsets (dx, dy in [0, 2 pad]) and flip of one
 * sample, computed exactly as the `augmentation` function of
 * wgsl/inr_decode.wgsl does.
 */
export function augmentationOf(
  input: { seed: number; step: number; sample: number; pad: number },
): { dx: number; dy: number; flip: boolean } {
  const key = mix32(mix32(mix32((input.seed + 0x9e3779b9) >>> 0) ^ input.step) ^ input.sample);
  const span = 2 * input.pad + 1;
  return { dx: mix32(key ^ 1) % span, dy: mix32(key ^ 2) % span, flip: (mix32(key ^ 3) & 1) === 1 };
}

/** MurmurHash3's 32-bit finalizer, as `mix32` in wgsl/inr_decode.wgsl. */
export function mix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Returns (scale, bias) such that output pixel x of an S-pixel side maps to
 * the INR input x * scale + bias. As in image resizing, pixel centres of the
 * S grid are spread over the R grid. Pixel x lands on source pixel
 * (x + 0.5) R / S - 0.5, whose input is -1 + 2 * source / (R - 1).
 */
export function coordinateMapping(
  resolution: number,
  size: number,
): { scale: number; bias: number } {
  if (resolution === 1) return { scale: 0, bias: 0 };
  const ratio = resolution / size;
  return { scale: (2 * ratio) / (resolution - 1), bias: (ratio - 1) / (resolution - 1) - 1 };
}

/** Returns the number of vec4 slots of one image's weights in the padded layout of wgsl/inr_decode.wgsl. */
export function paddedSlots(arch: SirenArch): number {
  const v = Math.ceil(arch.width / 4);
  return 3 * v + (arch.sineLayers - 1) * (4 * v * v + v) + 3 * v + 1;
}
