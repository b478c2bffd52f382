// Image resizing for 8-bit HWC RGB images.
//
// Filter: separable convolution with a reconstruction kernel, one pass per
// axis. Output pixel o of an axis scaled from `inSize` to `outSize` is centered
// at input coordinate (o + 0.5) * scale, with scale = inSize / outSize. When
// downscaling, the kernel is stretched by the scale factor, so each output
// pixel averages every input pixel it covers (antialiasing). When upscaling,
// the kernel keeps its width and interpolates. Taps past the image border are
// dropped and the remaining weights renormalized. Pillow resamples the same
// way, so `triangle` is Pillow's BILINEAR and `lanczos3` its LANCZOS, up to
// rounding: Pillow rounds to 8 bits between the two passes, but this code keeps
// float32 there (clamped to 0..255 like Pillow). tests/data_resize_test.ts
// checks the result against Pillow 9.4 output to within 1 level.
//
// Non-square policy of `resizeToSquare`: scale the shorter side to the target
// and the longer side by the same factor, then crop the center square. This is
// torchvision's `Resize(size)` followed by `CenterCrop(size)`, including its
// rounding (longer side floor(size * long / short), crop offset rounded half
// to even), so a 224-pixel tier matches the usual ImageNet preprocessing.

import type { RgbImage } from "./image.ts";

/**
 * Reconstruction kernels. `box`: a 1-pixel box, so an integer downscale
 * averages blocks. `triangle`: linear interpolation, the default, as
 * torchvision resizes PIL images bilinearly by default. `lanczos3`: sharper,
 * with slight overshoot near edges (clamped to 0..255).
 */
export type ResizeFilter = "box" | "triangle" | "lanczos3";

/** Options for {@linkcode resizeImage}. */
export interface ResizeOptions {
  /** Output width in pixels. */
  width: number;
  /** Output height in pixels. */
  height: number;
  /** Reconstruction kernel. Default: "triangle". */
  filter?: ResizeFilter;
}

/** Options for {@linkcode resizeToSquare}. */
export interface SquareResizeOptions {
  /** Output side in pixels. */
  size: number;
  /** Reconstruction kernel. Default: "triangle". */
  filter?: ResizeFilter;
}

interface Kernel {
  support: number;
  weight: (x: number) => number;
}

const KERNELS: Record<ResizeFilter, Kernel> = {
  // Half-open so that a sample exactly between two output pixels counts once.
  box: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  triangle: { support: 1, weight: (x) => Math.max(0, 1 - Math.abs(x)) },
  lanczos3: { support: 3, weight: (x) => (Math.abs(x) < 3 ? sinc(x) * sinc(x / 3) : 0) },
};

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

/** Resizes `image` to exactly `width` x `height`, ignoring the aspect ratio. */
export function resizeImage(image: RgbImage, options: ResizeOptions): RgbImage {
  const { width, height } = options;
  checkSize("width", width);
  checkSize("height", height);
  return resampleWindow(image, {
    fullWidth: width,
    fullHeight: height,
    left: 0,
    top: 0,
    width,
    height,
    filter: options.filter ?? "triangle",
  });
}

/**
 * Resizes `image` so that its shorter side is `size`, then crops the centered
 * `size` x `size` square (torchvision's Resize then CenterCrop). Only the
 * cropped pixels are computed.
 */
export function resizeToSquare(image: RgbImage, options: SquareResizeOptions): RgbImage {
  const { size } = options;
  checkSize("size", size);
  const window = squareCropWindow(image.width, image.height, size);
  return resampleWindow(image, {
    ...window,
    width: size,
    height: size,
    filter: options.filter ?? "triangle",
  });
}

/**
 * Returns the size of the resized image before the crop and the crop's
 * top-left corner, following torchvision's Resize(size) + CenterCrop(size).
 */
export function squareCropWindow(
  width: number,
  height: number,
  size: number,
): { fullWidth: number; fullHeight: number; left: number; top: number } {
  const fullWidth = width <= height ? size : Math.floor((size * width) / height);
  const fullHeight = width <= height ? Math.floor((size * height) / width) : size;
  return {
    fullWidth,
    fullHeight,
    left: roundHalfToEven((fullWidth - size) / 2),
    top: roundHalfToEven((fullHeight - size) / 2),
  };
}

function roundHalfToEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction !== 0.5) return Math.round(value);
  return floor % 2 === 0 ? floor : floor + 1;
}

function checkSize(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`resize: ${name} must be a positive integer, got ${value}.`);
  }
}

interface Window {
  /** Size of the whole resized image that the window is cut from. */
  fullWidth: number;
  fullHeight: number;
  /** Window position and size inside the resized image. */
  left: number;
  top: number;
  width: number;
  height: number;
  filter: ResizeFilter;
}

/** Per-output-pixel taps of one axis: `count[o]` weights starting at input `start[o]`. */
interface AxisWeights {
  start: Int32Array;
  count: Int32Array;
  /** `taps` slots per output pixel, normalized to sum 1. */
  weights: Float32Array;
  taps: number;
}

function axisWeights(
  inSize: number,
  outSize: number,
  first: number,
  count: number,
  kernel: Kernel,
): AxisWeights {
  const scale = inSize / outSize;
  const stretch = Math.max(scale, 1);
  const support = kernel.support * stretch;
  const taps = Math.ceil(2 * support) + 2;
  const result: AxisWeights = {
    start: new Int32Array(count),
    count: new Int32Array(count),
    weights: new Float32Array(count * taps),
    taps,
  };
  for (let o = 0; o < count; o++) {
    const center = (first + o + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support + 0.5));
    const hi = Math.min(inSize, Math.floor(center + support + 0.5));
    let sum = 0;
    for (let i = lo; i < hi; i++) {
      const w = kernel.weight((i + 0.5 - center) / stretch);
      result.weights[o * taps + (i - lo)] = w;
      sum += w;
    }
    result.start[o] = lo;
    result.count[o] = hi - lo;
    if (sum !== 0) {
      for (let k = 0; k < hi - lo; k++) result.weights[o * taps + k] /= sum;
    }
  }
  return result;
}

/** Computes the pixels of `window` of `image` resized to fullWidth x fullHeight. */
function resampleWindow(image: RgbImage, window: Window): RgbImage {
  const { width: inWidth, height: inHeight, rgb } = image;
  if (rgb.length !== inWidth * inHeight * 3) {
    throw new RangeError(
      `resize: rgb has ${rgb.length} bytes, expected ${
        inWidth * inHeight * 3
      } for ${inWidth}x${inHeight} RGB.`,
    );
  }
  const { width, height } = window;
  if (window.fullWidth === inWidth && window.fullHeight === inHeight) {
    return cropImage(image, window.left, window.top, width, height);
  }

  const kernel = KERNELS[window.filter];
  const columns = axisWeights(inWidth, window.fullWidth, window.left, width, kernel);
  const rows = axisWeights(inHeight, window.fullHeight, window.top, height, kernel);

  // The vertical pass reads only these input rows, so the horizontal pass skips the others.
  const firstRow = rows.start[0];
  const lastRow = rows.start[height - 1] + rows.count[height - 1];

  const horizontal = new Float32Array((lastRow - firstRow) * width * 3);
  for (let y = firstRow; y < lastRow; y++) {
    const inRow = y * inWidth * 3;
    const outRow = (y - firstRow) * width * 3;
    for (let x = 0; x < width; x++) {
      let r = 0, g = 0, b = 0;
      const start = columns.start[x];
      const base = x * columns.taps;
      for (let k = 0; k < columns.count[x]; k++) {
        const w = columns.weights[base + k];
        const p = inRow + (start + k) * 3;
        r += w * rgb[p];
        g += w * rgb[p + 1];
        b += w * rgb[p + 2];
      }
      // Clamping here as Pillow does keeps Lanczos overshoot from compounding across passes.
      horizontal[outRow + x * 3] = Math.min(255, Math.max(0, r));
      horizontal[outRow + x * 3 + 1] = Math.min(255, Math.max(0, g));
      horizontal[outRow + x * 3 + 2] = Math.min(255, Math.max(0, b));
    }
  }

  const out = new Uint8Array(width * height * 3);
  const stride = width * 3;
  const sums = new Float32Array(stride);
  for (let y = 0; y < height; y++) {
    sums.fill(0);
    const start = rows.start[y] - firstRow;
    const base = y * rows.taps;
    for (let k = 0; k < rows.count[y]; k++) {
      const w = rows.weights[base + k];
      const inRow = (start + k) * stride;
      for (let i = 0; i < stride; i++) sums[i] += w * horizontal[inRow + i];
    }
    // Uint8Array stores truncate and wrap, so round and clamp first.
    for (let i = 0; i < stride; i++) {
      out[y * stride + i] = Math.min(255, Math.max(0, Math.round(sums[i])));
    }
  }
  return { width, height, rgb: out };
}

function cropImage(
  image: RgbImage,
  left: number,
  top: number,
  width: number,
  height: number,
): RgbImage {
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * image.width + left) * 3;
    out.set(image.rgb.subarray(from, from + width * 3), y * width * 3);
  }
  return { width, height, rgb: out };
}
