// Shared test helpers: a GPU per test file, tolerance comparison with a
// useful failure message, seeded random numbers and finite differences.

import { Gpu } from "../src/gpu/device.ts";

let shared: Promise<Gpu> | undefined;

/** Returns one GPU device shared by all tests of a process. */
export function testGpu(): Promise<Gpu> {
  shared ??= Gpu.create({ notice: false });
  return shared;
}

/**
 * Asserts |actual - expected| <= atol + rtol * |expected| elementwise. The
 * message names the tensor, the first bad index, both values and the maximum
 * absolute error.
 */
export function assertClose(
  name: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tolerance: { atol: number; rtol: number },
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${name}: length ${actual.length}, expected ${expected.length}`);
  }
  let firstBad = -1;
  let maxError = 0;
  for (let i = 0; i < actual.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    if (!(error <= maxError)) maxError = Number.isNaN(error) ? Infinity : Math.max(maxError, error);
    if (firstBad < 0 && !(error <= tolerance.atol + tolerance.rtol * Math.abs(expected[i]))) firstBad = i;
  }
  if (firstBad >= 0) {
    throw new Error(
      `${name}: element ${firstBad} is ${actual[firstBad]}, expected ${expected[firstBad]} ` +
        `(atol ${tolerance.atol}, rtol ${tolerance.rtol}); max abs error ${maxError}`,
    );
  }
}

/** Deterministic uniform random numbers in [0, 1), the generator training uses. */
export { mulberry32 as seededRandom } from "../src/train/trainer.ts";

/** Returns `count` values uniform in [lo, hi) from `random`. */
export function randomArray(random: () => number, count: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = lo + (hi - lo) * random();
  return out;
}

/**
 * Central finite-difference gradient of a scalar `loss` with respect to the
 * entries `indices` of `x`, computed in float64. `x` is restored afterwards.
 */
export function finiteDifference(
  loss: (x: Float64Array) => number,
  x: Float64Array,
  indices: number[],
  step = 1e-3,
): Float64Array {
  const grad = new Float64Array(indices.length);
  indices.forEach((index, k) => {
    const saved = x[index];
    x[index] = saved + step;
    const plus = loss(x);
    x[index] = saved - step;
    const minus = loss(x);
    x[index] = saved;
    grad[k] = (plus - minus) / (2 * step);
  });
  return grad;
}
