// Shape of a 2-D convolution: validation and tensor sizes, shared by the GPU
// kernels and the CPU references.

/** Shape of one convolution. All values are counts of elements or pixels. */
export interface ConvShape {
  /** Batch size N. */
  n: number;
  /** Input channels C. */
  c: number;
  /** Input height H. */
  h: number;
  /** Input width W. */
  w: number;
  /** Output channels K. */
  k: number;
  /** Side of the square filter (1, 3 and 7 in ResNet-18). */
  kernel: number;
  /** Step between filter positions, in input pixels. */
  stride: number;
  /** Zero padding on each side, in input pixels. */
  pad: number;
}

/** Returns the output height and width of `shape`, after validating it. */
export function convOutputSize(shape: ConvShape): { h: number; w: number } {
  for (const key of ["n", "c", "h", "w", "k", "kernel", "stride"] as const) {
    const value = shape[key];
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`Convolution ${key} must be a positive integer, got ${value}.`);
    }
  }
  if (!Number.isInteger(shape.pad) || shape.pad < 0) {
    throw new RangeError(`Convolution pad must be an integer >= 0, got ${shape.pad}.`);
  }
  const h = Math.floor((shape.h + 2 * shape.pad - shape.kernel) / shape.stride) + 1;
  const w = Math.floor((shape.w + 2 * shape.pad - shape.kernel) / shape.stride) + 1;
  if (h < 1 || w < 1) {
    throw new RangeError(
      `Convolution output would be ${h} x ${w} for a ${shape.h} x ${shape.w} input with ` +
        `kernel ${shape.kernel}, stride ${shape.stride} and pad ${shape.pad}; ` +
        "use a larger input or more padding.",
    );
  }
  return { h, w };
}

/** Element counts of the tensors of one convolution. */
export function tensorSizes(shape: ConvShape) {
  const out = convOutputSize(shape);
  return {
    out,
    x: shape.n * shape.c * shape.h * shape.w,
    w: shape.k * shape.c * shape.kernel * shape.kernel,
    y: shape.n * shape.k * out.h * out.w,
  };
}
