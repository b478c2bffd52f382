// Float64 CPU references of the 2-D convolution and its two gradients, by
// direct summation: the ground truth for the GPU kernels in tests and benches.

import { type ConvShape, tensorSizes } from "./conv_shape.ts";

type Tensor = ArrayLike<number>;

function checkLength(name: string, array: Tensor, expected: number): void {
  if (array.length !== expected) {
    throw new RangeError(`${name} has ${array.length} values, but the shape needs ${expected}.`);
  }
}

/** Computes y = conv(x, w) in float64 by direct summation. */
export function conv2dReference(x: Tensor, w: Tensor, shape: ConvShape): Float64Array {
  const { out, ...sizes } = tensorSizes(shape);
  checkLength("x", x, sizes.x);
  checkLength("w", w, sizes.w);
  const y = new Float64Array(sizes.y);
  forEachTap(shape, out, (xi, wi, yi) => {
    y[yi] += x[xi] * w[wi];
  });
  return y;
}

/** Computes dx, the gradient of sum(y * dy) w.r.t. x, in float64. */
export function conv2dBackwardDataReference(dy: Tensor, w: Tensor, shape: ConvShape): Float64Array {
  const { out, ...sizes } = tensorSizes(shape);
  checkLength("dy", dy, sizes.y);
  checkLength("w", w, sizes.w);
  const dx = new Float64Array(sizes.x);
  forEachTap(shape, out, (xi, wi, yi) => {
    dx[xi] += dy[yi] * w[wi];
  });
  return dx;
}

/** Computes dw, the gradient of sum(y * dy) w.r.t. w summed over the batch, in float64. */
export function conv2dBackwardWeightReference(
  x: Tensor,
  dy: Tensor,
  shape: ConvShape,
): Float64Array {
  const { out, ...sizes } = tensorSizes(shape);
  checkLength("x", x, sizes.x);
  checkLength("dy", dy, sizes.y);
  const dw = new Float64Array(sizes.w);
  forEachTap(shape, out, (xi, wi, yi) => {
    dw[wi] += x[xi] * dy[yi];
  });
  return dw;
}

/** Calls `visit` with the x, w and y indices of every product that lands inside the input. */
function forEachTap(
  shape: ConvShape,
  out: { h: number; w: number },
  visit: (xi: number, wi: number, yi: number) => void,
): void {
  const { n: batch, c: channels, h, w, k: filters, kernel, stride, pad } = shape;
  for (let n = 0; n < batch; n++) {
    for (let k = 0; k < filters; k++) {
      for (let oy = 0; oy < out.h; oy++) {
        for (let ox = 0; ox < out.w; ox++) {
          const yi = ((n * filters + k) * out.h + oy) * out.w + ox;
          for (let c = 0; c < channels; c++) {
            for (let ky = 0; ky < kernel; ky++) {
              const iy = oy * stride - pad + ky;
              if (iy < 0 || iy >= h) continue;
              for (let kx = 0; kx < kernel; kx++) {
                const ix = ox * stride - pad + kx;
                if (ix < 0 || ix >= w) continue;
                const xi = ((n * channels + c) * h + iy) * w + ix;
                const wi = ((k * channels + c) * kernel + ky) * kernel + kx;
                visit(xi, wi, yi);
              }
            }
          }
        }
      }
    }
  }
}
