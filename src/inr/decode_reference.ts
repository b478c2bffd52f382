// Float64 CPU references of the GPU decode in src/inr/decode.ts, for tests.

import { augmentationOf } from "./sampling.ts";
import { type SirenArch, sirenForwardReference, sirenParamCount } from "./siren.ts";

/** fp32 weights [N][Q] of an encoded dataset (dequantize packed weights first). */
export interface ReferenceSource {
  arch: SirenArch;
  resolution: number;
  weights: Float32Array;
}

/** Settings of {@linkcode decodeBatchReference}; defaults as in `BatchOptions`. */
export interface ReferenceBatchOptions {
  /** Image of each sample, [B]. */
  images: ArrayLike<number>;
  size?: number;
  pad?: number;
  flip?: boolean;
  mean?: readonly number[];
  std?: readonly number[];
  seed?: number;
  step?: number;
}

/** Returns the normalized NCHW batch [B][3][S][S] that `decodeBatch` should produce. */
export function decodeBatchReference(
  source: ReferenceSource,
  options: ReferenceBatchOptions,
): Float64Array {
  const size = options.size ?? source.resolution;
  const pad = options.pad ?? 0;
  const mean = options.mean ?? [0, 0, 0];
  const std = options.std ?? [1, 1, 1];
  const plane = size * size;
  const out = new Float64Array(options.images.length * 3 * plane);
  for (let j = 0; j < options.images.length; j++) {
    const random = augmentationOf({
      seed: options.seed ?? 0,
      step: options.step ?? 0,
      sample: j,
      pad,
    });
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        let sx = options.flip && random.flip ? size - 1 - x : x;
        let sy = y;
        if (pad > 0 || options.flip) {
          sx += random.dx - pad;
          sy += random.dy - pad;
        }
        const rgb = sx < 0 || sy < 0 || sx >= size || sy >= size
          ? [0, 0, 0]
          : referencePixel(source, { image: options.images[j], x: sx, y: sy, size });
        for (let c = 0; c < 3; c++) {
          out[(j * 3 + c) * plane + y * size + x] = (rgb[c] - mean[c]) / std[c];
        }
      }
    }
  }
  return out;
}

/** Returns RGB bytes [count][S][S][3] of images first .. first + count - 1, as `decodeImages` should. */
export function decodeImagesReference(
  source: ReferenceSource,
  options: { first: number; count: number; size?: number },
): Uint8Array {
  const size = options.size ?? source.resolution;
  const out = new Uint8Array(options.count * size * size * 3);
  for (let n = 0; n < options.count; n++) {
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const rgb = referencePixel(source, { image: options.first + n, x, y, size });
        for (let c = 0; c < 3; c++) {
          out[((n * size + y) * size + x) * 3 + c] = Math.round(rgb[c] * 255);
        }
      }
    }
  }
  return out;
}

/**
 * Evaluates pixel (x, y) of an S x S decode of one image, clamped to [0, 1].
 * Output pixel x samples the source at (x + 0.5) R / S - 0.5 source pixels.
 */
export function referencePixel(
  source: ReferenceSource,
  pixel: { image: number; x: number; y: number; size: number },
): number[] {
  const r = source.resolution;
  const toInput = (i: number) => {
    if (r === 1) return 0;
    const sourcePixel = ((i + 0.5) * r) / pixel.size - 0.5;
    return -1 + (2 * sourcePixel) / (r - 1);
  };
  const rgb = sirenForwardReference(source.arch, {
    params: source.weights,
    offset: pixel.image * sirenParamCount(source.arch),
    x: toInput(pixel.x),
    y: toInput(pixel.y),
  });
  return rgb.map((v) => Math.min(1, Math.max(0, v)));
}
