// Float64 CPU references of the layer kernels, written for clarity. The tests
// compare every GPU kernel with these and check the backward functions with
// finite differences of the forward ones. Shapes follow the kernel modules.

import type { BatchNormShape } from "./batchnorm.ts";
import type { CrossEntropyShape } from "./loss.ts";
import type { LinearShape } from "./linear.ts";
import { maxPoolOutputSize, type MaxPoolShape, type PoolShape } from "./pool.ts";

type Values = ArrayLike<number>;

function channelOf(index: number, shape: { c: number; h: number; w: number }): number {
  return Math.floor(index / (shape.h * shape.w)) % shape.c;
}

/** Computes the batch mean, biased variance and unbiased variance of each channel. */
export function batchNormStatsReference(
  x: Values,
  shape: BatchNormShape,
): { mean: Float64Array; biasedVar: Float64Array; unbiasedVar: Float64Array } {
  const count = shape.n * shape.h * shape.w;
  const mean = new Float64Array(shape.c);
  const biasedVar = new Float64Array(shape.c);
  for (let i = 0; i < x.length; i++) mean[channelOf(i, shape)] += x[i] / count;
  for (let i = 0; i < x.length; i++) {
    const c = channelOf(i, shape);
    biasedVar[c] += (x[i] - mean[c]) ** 2 / count;
  }
  const unbiasedVar = biasedVar.map((v) => (v * count) / (count - 1));
  return { mean, biasedVar, unbiasedVar };
}

/**
 * Computes training-mode batch norm y = gamma * (x - mean) / sqrt(var + eps) +
 * beta with batch statistics (then ReLU when `shape.relu`). Also returns the
 * saved mean and inverse standard deviation and the running statistics after
 * one update.
 */
export function batchNormForwardReference(
  input: { x: Values; gamma: Values; beta: Values; runningMean: Values; runningVar: Values },
  shape: BatchNormShape,
): {
  y: Float64Array;
  mean: Float64Array;
  invStd: Float64Array;
  runningMean: Float64Array;
  runningVar: Float64Array;
} {
  const eps = shape.eps ?? 1e-5;
  const momentum = shape.momentum ?? 0.1;
  const { mean, biasedVar, unbiasedVar } = batchNormStatsReference(input.x, shape);
  const invStd = biasedVar.map((v) => 1 / Math.sqrt(v + eps));
  const y = new Float64Array(input.x.length);
  for (let i = 0; i < y.length; i++) {
    const c = channelOf(i, shape);
    const z = input.gamma[c] * (input.x[i] - mean[c]) * invStd[c] + input.beta[c];
    y[i] = shape.relu ? Math.max(z, 0) : z;
  }
  const runningMean = new Float64Array(shape.c);
  const runningVar = new Float64Array(shape.c);
  for (let c = 0; c < shape.c; c++) {
    runningMean[c] = (1 - momentum) * input.runningMean[c] + momentum * mean[c];
    runningVar[c] = (1 - momentum) * input.runningVar[c] + momentum * unbiasedVar[c];
  }
  return { y, mean, invStd, runningMean, runningVar };
}

/** Computes eval-mode batch norm with the running statistics (then ReLU when `shape.relu`). */
export function batchNormEvalReference(
  input: { x: Values; gamma: Values; beta: Values; runningMean: Values; runningVar: Values },
  shape: BatchNormShape,
): Float64Array {
  const eps = shape.eps ?? 1e-5;
  const y = new Float64Array(input.x.length);
  for (let i = 0; i < y.length; i++) {
    const c = channelOf(i, shape);
    const z = (input.gamma[c] * (input.x[i] - input.runningMean[c])) /
        Math.sqrt(input.runningVar[c] + eps) +
      input.beta[c];
    y[i] = shape.relu ? Math.max(z, 0) : z;
  }
  return y;
}

/**
 * Computes the training-mode batch-norm backward with the textbook formula
 * dx = invStd / count * (count * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)),
 * where dxhat = dy * gamma. It recomputes the batch statistics from x.
 */
export function batchNormBackwardReference(
  input: { x: Values; gamma: Values; beta: Values; dy: Values },
  shape: BatchNormShape,
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const eps = shape.eps ?? 1e-5;
  const count = shape.n * shape.h * shape.w;
  const { mean, biasedVar } = batchNormStatsReference(input.x, shape);
  const invStd = biasedVar.map((v) => 1 / Math.sqrt(v + eps));
  const xhat = new Float64Array(input.x.length);
  const dy = new Float64Array(input.x.length);
  const dgamma = new Float64Array(shape.c);
  const dbeta = new Float64Array(shape.c);
  const sumDxhat = new Float64Array(shape.c);
  const sumDxhatXhat = new Float64Array(shape.c);
  for (let i = 0; i < xhat.length; i++) {
    const c = channelOf(i, shape);
    xhat[i] = (input.x[i] - mean[c]) * invStd[c];
    const z = input.gamma[c] * xhat[i] + input.beta[c];
    dy[i] = shape.relu && !(z > 0) ? 0 : input.dy[i];
    dgamma[c] += dy[i] * xhat[i];
    dbeta[c] += dy[i];
    sumDxhat[c] += dy[i] * input.gamma[c];
    sumDxhatXhat[c] += dy[i] * input.gamma[c] * xhat[i];
  }
  const dx = new Float64Array(input.x.length);
  for (let i = 0; i < dx.length; i++) {
    const c = channelOf(i, shape);
    const dxhat = dy[i] * input.gamma[c];
    dx[i] = (invStd[c] / count) * (count * dxhat - sumDxhat[c] - xhat[i] * sumDxhatXhat[c]);
  }
  return { dx, dgamma, dbeta };
}

/** Returns max(x, 0) for every element. */
export function reluReference(x: Values): Float64Array {
  return Float64Array.from(x, (v) => Math.max(v, 0));
}

/** Returns the ReLU gradient from the forward output: dy where activation > 0, else 0. */
export function reluBackwardReference(input: { activation: Values; dy: Values }): Float64Array {
  return Float64Array.from(input.dy, (g, i) => (input.activation[i] > 0 ? g : 0));
}

/** Computes max pooling and the argmax index h * W + w inside each input plane. The first maximum wins ties. */
export function maxPoolReference(
  x: Values,
  shape: MaxPoolShape,
): { y: Float64Array; argmax: Uint32Array } {
  const kernel = shape.kernel ?? 3;
  const stride = shape.stride ?? 2;
  const pad = shape.pad ?? 1;
  const { ho, wo } = maxPoolOutputSize(shape);
  const planes = shape.n * shape.c;
  const y = new Float64Array(planes * ho * wo);
  const argmax = new Uint32Array(planes * ho * wo);
  for (let p = 0; p < planes; p++) {
    for (let oh = 0; oh < ho; oh++) {
      for (let ow = 0; ow < wo; ow++) {
        let best = -Infinity;
        let bestIndex = -1;
        for (let ih = oh * stride - pad; ih < oh * stride - pad + kernel; ih++) {
          for (let iw = ow * stride - pad; iw < ow * stride - pad + kernel; iw++) {
            if (ih < 0 || ih >= shape.h || iw < 0 || iw >= shape.w) continue;
            const v = x[p * shape.h * shape.w + ih * shape.w + iw];
            if (bestIndex < 0 || v > best) {
              best = v;
              bestIndex = ih * shape.w + iw;
            }
          }
        }
        const o = (p * ho + oh) * wo + ow;
        y[o] = best;
        argmax[o] = bestIndex;
      }
    }
  }
  return { y, argmax };
}

/** Computes the max-pooling backward by scattering each dy to the input pixel its argmax names. */
export function maxPoolBackwardReference(
  input: { argmax: ArrayLike<number>; dy: Values },
  shape: MaxPoolShape,
): Float64Array {
  const { ho, wo } = maxPoolOutputSize(shape);
  const plane = shape.h * shape.w;
  const dx = new Float64Array(shape.n * shape.c * plane);
  for (let o = 0; o < input.dy.length; o++) {
    const p = Math.floor(o / (ho * wo));
    dx[p * plane + input.argmax[o]] += input.dy[o];
  }
  return dx;
}

/** Computes global average pooling [N][C][H][W] -> [N][C]. */
export function avgPoolReference(x: Values, shape: PoolShape): Float64Array {
  const plane = shape.h * shape.w;
  const y = new Float64Array(shape.n * shape.c);
  for (let i = 0; i < x.length; i++) y[Math.floor(i / plane)] += x[i] / plane;
  return y;
}

/** Computes the global-average-pooling backward [N][C] -> [N][C][H][W]. */
export function avgPoolBackwardReference(dy: Values, shape: PoolShape): Float64Array {
  const plane = shape.h * shape.w;
  return Float64Array.from(
    { length: shape.n * shape.c * plane },
    (_, i) => dy[Math.floor(i / plane)] / plane,
  );
}

/** Computes the fully connected forward y = x W^T + b. */
export function linearReference(
  input: { x: Values; weight: Values; bias: Values },
  shape: LinearShape,
): Float64Array {
  const y = new Float64Array(shape.n * shape.m);
  for (let n = 0; n < shape.n; n++) {
    for (let m = 0; m < shape.m; m++) {
      let sum = input.bias[m];
      for (let c = 0; c < shape.c; c++) {
        sum += input.x[n * shape.c + c] * input.weight[m * shape.c + c];
      }
      y[n * shape.m + m] = sum;
    }
  }
  return y;
}

/** Computes the fully connected backward dx = dy W, dW = dy^T x, db = column sums of dy. */
export function linearBackwardReference(
  input: { x: Values; weight: Values; dy: Values },
  shape: LinearShape,
): { dx: Float64Array; dweight: Float64Array; dbias: Float64Array } {
  const dx = new Float64Array(shape.n * shape.c);
  const dweight = new Float64Array(shape.m * shape.c);
  const dbias = new Float64Array(shape.m);
  for (let n = 0; n < shape.n; n++) {
    for (let m = 0; m < shape.m; m++) {
      const g = input.dy[n * shape.m + m];
      dbias[m] += g;
      for (let c = 0; c < shape.c; c++) {
        dx[n * shape.c + c] += g * input.weight[m * shape.c + c];
        dweight[m * shape.c + c] += g * input.x[n * shape.c + c];
      }
    }
  }
  return { dx, dweight, dbias };
}

/**
 * Computes the softmax cross-entropy of each sample, the batch mean, the
 * gradient of the mean with respect to the logits, and the top-1 correct
 * count, where the first maximal logit is the prediction. Out-of-range labels
 * count as invalid, with loss 0.
 */
export function crossEntropyReference(
  input: { logits: Values; labels: ArrayLike<number> },
  shape: CrossEntropyShape,
): {
  sampleLoss: Float64Array;
  meanLoss: number;
  dlogits: Float64Array;
  correct: number;
  invalidLabels: number;
} {
  const { n: count, m: classes } = shape;
  const sampleLoss = new Float64Array(count);
  const dlogits = new Float64Array(count * classes);
  let correct = 0;
  let invalidLabels = 0;
  for (let n = 0; n < count; n++) {
    const row = Array.from({ length: classes }, (_, m) => input.logits[n * classes + m]);
    const max = Math.max(...row);
    const sum = row.reduce((s, v) => s + Math.exp(v - max), 0);
    const label = input.labels[n];
    if (row.indexOf(max) === label) correct++;
    if (label < classes) {
      sampleLoss[n] = Math.log(sum) + max - row[label];
    } else {
      invalidLabels++;
    }
    for (let m = 0; m < classes; m++) {
      dlogits[n * classes + m] = (Math.exp(row[m] - max) / sum - (m === label ? 1 : 0)) / count;
    }
  }
  const meanLoss = sampleLoss.reduce((s, v) => s + v, 0) / count;
  return { sampleLoss, meanLoss, dlogits, correct, invalidLabels };
}

/**
 * Returns the weights and velocity after one SGD step (PyTorch convention),
 * with weight decay where the mask bit is set.
 */
export function sgdReference(
  input: { weights: Values; grads: Values; velocity: Values; decayMask: ArrayLike<number> },
  options: { learningRate: number; momentum: number; weightDecay: number },
): { weights: Float64Array; velocity: Float64Array } {
  const weights = Float64Array.from(input.weights);
  const velocity = Float64Array.from(input.velocity);
  for (let i = 0; i < weights.length; i++) {
    const decays = (input.decayMask[i >>> 5] >>> (i & 31)) & 1;
    const g = input.grads[i] + (decays ? options.weightDecay * weights[i] : 0);
    velocity[i] = options.momentum * velocity[i] + g;
    weights[i] -= options.learningRate * velocity[i];
  }
  return { weights, velocity };
}
