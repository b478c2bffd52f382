// Batch normalization 2-D (wgsl/batchnorm.wgsl): training forward with batch
// statistics and running-statistics update, eval forward, and backward, each
// with an optional fused ReLU. Methods record dispatches into a `Plan` and
// never submit.

import type { Gpu } from "../gpu/device.ts";
import { type Binding, compileKernel, type Kernel, type Plan } from "../gpu/kernel.ts";
import {
  type LayerKernelOptions,
  validateBindings,
  validateDims,
  validateElementCount,
  workgroupOverrides,
} from "./layer_bindings.ts";

/** Shape and settings of one batch-norm layer over an NCHW tensor. */
export interface BatchNormShape {
  /** Images N in the batch. */
  n: number;
  /** Channels C. */
  c: number;
  /** Height H of the feature map. */
  h: number;
  /** Width W of the feature map. */
  w: number;
  /** Apply ReLU to the output (and mask the gradient in the backward). Default: false. */
  relu?: boolean;
  /** Added to the variance before the square root. Default: 1e-5. */
  eps?: number;
  /** Weight of the new batch statistic in the running statistics. Default: 0.1. */
  momentum?: number;
}

/** Buffers of the training-mode forward. All are f32, with shapes in NCHW letters. */
export interface BatchNormForwardIo {
  /** Input [N][C][H][W], read. */
  x: Binding;
  /** Output [N][C][H][W], overwritten. Must not share a buffer with any read binding. */
  y: Binding;
  /** Scale [C], read. */
  gamma: Binding;
  /** Shift [C], read. */
  beta: Binding;
  /** Batch mean [C], overwritten, and read by the backward. */
  mean: Binding;
  /** 1 / sqrt(biased batch variance + eps) [C], overwritten, and read by the backward. */
  invStd: Binding;
  /** Running mean [C], updated in place. */
  runningMean: Binding;
  /** Running unbiased variance [C], updated in place. */
  runningVar: Binding;
}

/** Buffers of the eval-mode forward, which normalizes with the running statistics. */
export interface BatchNormEvalIo {
  /** Input [N][C][H][W], read. */
  x: Binding;
  /** Output [N][C][H][W], overwritten. */
  y: Binding;
  /** Scale [C], read. */
  gamma: Binding;
  /** Shift [C], read. */
  beta: Binding;
  /** Running mean [C], read. */
  runningMean: Binding;
  /** Running unbiased variance [C], read. */
  runningVar: Binding;
}

/** Buffers of the training-mode backward. */
export interface BatchNormBackwardIo {
  /** Forward input [N][C][H][W], read. */
  x: Binding;
  /** Gradient of the loss with respect to the forward output [N][C][H][W], read. */
  dy: Binding;
  /** Scale [C], read. */
  gamma: Binding;
  /** Shift [C], read (only used to recompute the fused ReLU mask). */
  beta: Binding;
  /** Batch mean [C] saved by the forward, read. */
  mean: Binding;
  /** Inverse standard deviation [C] saved by the forward, read. */
  invStd: Binding;
  /** Gradient with respect to x [N][C][H][W], overwritten. */
  dx: Binding;
  /** Gradient with respect to gamma [C], overwritten. */
  dgamma: Binding;
  /** Gradient with respect to beta [C], overwritten. */
  dbeta: Binding;
}

const FILE = "batchnorm.wgsl";

/** Compiled batch-norm kernels for one device. */
export class BatchNormKernels {
  readonly #gpu: Gpu;
  readonly #stats: Kernel;
  readonly #apply: Kernel;
  readonly #eval: Kernel;
  readonly #backwardReduce: Kernel;
  readonly #backwardDx: Kernel;

  private constructor(gpu: Gpu, kernels: Kernel[]) {
    this.#gpu = gpu;
    [this.#stats, this.#apply, this.#eval, this.#backwardReduce, this.#backwardDx] = kernels;
  }

  /** Compiles the kernels. Throws a `GpuError` naming the kernel if one fails. */
  static async create(gpu: Gpu, options: LayerKernelOptions = {}): Promise<BatchNormKernels> {
    const elementwise = { workgroup: "WG", overrides: workgroupOverrides(options.workgroupSize) };
    const reduction = {
      workgroup: "REDUCE_WG",
      overrides: workgroupOverrides(options.reductionWorkgroupSize, "REDUCE_WG"),
    };
    const compile = (entry: string, size: typeof elementwise, bindings: string[]) =>
      compileKernel(gpu, {
        name: `batchnorm.${entry}`,
        file: FILE,
        entry,
        bindings: ["params", ...bindings],
        workgroup: [size.workgroup],
        overrides: size.overrides,
      });
    const kernels = await Promise.all([
      compile("bn_stats", reduction, [
        "x",
        "mean_out",
        "invstd_out",
        "running_mean",
        "running_var",
      ]),
      compile("bn_apply", elementwise, ["x", "y", "gamma", "beta", "mean", "invstd"]),
      compile("bn_eval", elementwise, [
        "x",
        "y",
        "gamma",
        "beta",
        "running_mean_in",
        "running_var_in",
      ]),
      compile("bn_backward_reduce", reduction, [
        "x",
        "dy",
        "gamma",
        "beta",
        "mean",
        "invstd",
        "dgamma_out",
        "dbeta_out",
      ]),
      compile("bn_backward_dx", elementwise, [
        "x",
        "dy",
        "gamma",
        "beta",
        "mean",
        "invstd",
        "dgamma",
        "dbeta",
        "dx",
      ]),
    ]);
    return new BatchNormKernels(gpu, kernels);
  }

  /**
   * Records the training-mode forward: per-channel batch mean and biased
   * variance over N * H * W, y = gamma * (x - mean) * invStd + beta (then
   * ReLU when `shape.relu`), and the running-statistics update
   * running = (1 - momentum) * running + momentum * batch, where the running
   * variance takes the unbiased batch variance. Two dispatches.
   */
  forward(plan: Plan, io: BatchNormForwardIo, shape: BatchNormShape): void {
    const op = "batchNorm.forward";
    const { params, elements, c, hw } = this.#params(op, shape);
    if (params.n * hw < 2) {
      throw new RangeError(
        `${op}: training mode needs more than one value per channel (N * H * W = ${
          params.n * hw
        }), ` +
          "because the unbiased variance is undefined otherwise. Use a larger batch or eval mode.",
      );
    }
    const channel = { elements: c };
    validateBindings(this.#gpu, {
      op: `${op} (statistics)`,
      bindings: {
        x: { binding: io.x, elements },
        mean: { binding: io.mean, ...channel, write: true },
        invStd: { binding: io.invStd, ...channel, write: true },
        runningMean: { binding: io.runningMean, ...channel, write: true },
        runningVar: { binding: io.runningVar, ...channel, write: true },
      },
    });
    validateBindings(this.#gpu, {
      op: `${op} (normalize)`,
      bindings: {
        x: { binding: io.x, elements },
        y: { binding: io.y, elements, write: true },
        gamma: { binding: io.gamma, ...channel },
        beta: { binding: io.beta, ...channel },
        mean: { binding: io.mean, ...channel },
        invStd: { binding: io.invStd, ...channel },
      },
    });

    const workgroup = this.#stats.workgroupSize[0];
    plan.add(
      this.#stats,
      {
        x: io.x,
        mean_out: io.mean,
        invstd_out: io.invStd,
        running_mean: io.runningMean,
        running_var: io.runningVar,
      },
      params,
      c * workgroup,
    );
    plan.add(
      this.#apply,
      { x: io.x, y: io.y, gamma: io.gamma, beta: io.beta, mean: io.mean, invstd: io.invStd },
      params,
      [hw, c, params.n],
    );
  }

  /** Records the eval-mode forward with the running statistics (then ReLU when `shape.relu`). One dispatch. */
  evalForward(plan: Plan, io: BatchNormEvalIo, shape: BatchNormShape): void {
    const op = "batchNorm.evalForward";
    const { params, elements, c, hw } = this.#params(op, shape);
    validateBindings(this.#gpu, {
      op,
      bindings: {
        x: { binding: io.x, elements },
        y: { binding: io.y, elements, write: true },
        gamma: { binding: io.gamma, elements: c },
        beta: { binding: io.beta, elements: c },
        runningMean: { binding: io.runningMean, elements: c },
        runningVar: { binding: io.runningVar, elements: c },
      },
    });
    plan.add(
      this.#eval,
      {
        x: io.x,
        y: io.y,
        gamma: io.gamma,
        beta: io.beta,
        running_mean_in: io.runningMean,
        running_var_in: io.runningVar,
      },
      params,
      [hw, c, params.n],
    );
  }

  /**
   * Records the training-mode backward. With xhat = (x - mean) * invStd and
   * dy masked by the fused ReLU when `shape.relu`: dbeta = sum(dy),
   * dgamma = sum(dy * xhat) over N * H * W, and
   * dx = gamma * invStd * (dy - dbeta / count - xhat * dgamma / count).
   * Overwrites dx, dgamma and dbeta. `shape` must equal the forward's. Two dispatches.
   */
  backward(plan: Plan, io: BatchNormBackwardIo, shape: BatchNormShape): void {
    const op = "batchNorm.backward";
    const { params, elements, c, hw } = this.#params(op, shape);
    const reads = {
      x: { binding: io.x, elements },
      dy: { binding: io.dy, elements },
      gamma: { binding: io.gamma, elements: c },
      beta: { binding: io.beta, elements: c },
      mean: { binding: io.mean, elements: c },
      invStd: { binding: io.invStd, elements: c },
    };
    validateBindings(this.#gpu, {
      op: `${op} (parameter gradients)`,
      bindings: {
        ...reads,
        dgamma: { binding: io.dgamma, elements: c, write: true },
        dbeta: { binding: io.dbeta, elements: c, write: true },
      },
    });
    validateBindings(this.#gpu, {
      op: `${op} (input gradient)`,
      bindings: {
        ...reads,
        dgamma: { binding: io.dgamma, elements: c },
        dbeta: { binding: io.dbeta, elements: c },
        dx: { binding: io.dx, elements, write: true },
      },
    });

    const common = {
      x: io.x,
      dy: io.dy,
      gamma: io.gamma,
      beta: io.beta,
      mean: io.mean,
      invstd: io.invStd,
    };
    const workgroup = this.#backwardReduce.workgroupSize[0];
    plan.add(
      this.#backwardReduce,
      { ...common, dgamma_out: io.dgamma, dbeta_out: io.dbeta },
      params,
      c * workgroup,
    );
    plan.add(
      this.#backwardDx,
      { ...common, dgamma: io.dgamma, dbeta: io.dbeta, dx: io.dx },
      params,
      [hw, c, params.n],
    );
  }

  #params(op: string, shape: BatchNormShape) {
    validateDims(op, { n: shape.n, c: shape.c, h: shape.h, w: shape.w });
    const eps = shape.eps ?? 1e-5;
    const momentum = shape.momentum ?? 0.1;
    if (!(eps > 0) || !Number.isFinite(eps)) {
      throw new RangeError(`${op}: eps must be positive, got ${eps}.`);
    }
    if (!(momentum >= 0 && momentum <= 1)) {
      throw new RangeError(`${op}: momentum must be in [0, 1], got ${momentum}.`);
    }
    if (shape.c > 65535 || shape.n > 65535) {
      throw new RangeError(
        `${op}: N and C must be at most 65535 (one workgroup row each), got ${shape.n} and ${shape.c}.`,
      );
    }
    const hw = shape.h * shape.w;
    const elements = validateElementCount(op, [shape.n, shape.c, hw]);
    const params = { n: shape.n, c: shape.c, hw, eps, momentum, relu: shape.relu ? 1 : 0 };
    return { params, elements, c: shape.c, hw };
  }
}
