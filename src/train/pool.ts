// Pooling (wgsl/pool.wgsl): max pooling with saved argmax indices, as in the
// ResNet stem, and global average pooling before the classifier head.

import type { Gpu } from "../gpu/device.ts";
import { type Binding, compileKernel, type Kernel, type Plan } from "../gpu/kernel.ts";
import {
  type LayerKernelOptions,
  validateBindings,
  validateDims,
  validateElementCount,
  workgroupOverrides,
} from "./layer_bindings.ts";

/** Input shape of a pooling layer over an NCHW tensor. */
export interface PoolShape {
  /** Images N in the batch. */
  n: number;
  /** Channels C. */
  c: number;
  /** Input height H. */
  h: number;
  /** Input width W. */
  w: number;
}

/** Input shape and window of a max-pooling layer. */
export interface MaxPoolShape extends PoolShape {
  /** Window side in pixels. Default: 3. */
  kernel?: number;
  /** Step between windows in pixels. Default: 2. */
  stride?: number;
  /** Implicit padding on each border in pixels, never selected as a maximum. Default: 1. */
  pad?: number;
}

/** Output height and width of max pooling: floor((H + 2 pad - kernel) / stride) + 1. */
export function maxPoolOutputSize(shape: MaxPoolShape): { ho: number; wo: number } {
  const { kernel, stride, pad } = maxPoolWindow(shape);
  return {
    ho: Math.floor((shape.h + 2 * pad - kernel) / stride) + 1,
    wo: Math.floor((shape.w + 2 * pad - kernel) / stride) + 1,
  };
}

function maxPoolWindow(shape: MaxPoolShape): { kernel: number; stride: number; pad: number } {
  return { kernel: shape.kernel ?? 3, stride: shape.stride ?? 2, pad: shape.pad ?? 1 };
}

const FILE = "pool.wgsl";

/** Compiled pooling kernels for one device. */
export class PoolKernels {
  readonly #gpu: Gpu;
  readonly #maxForward: Kernel;
  readonly #maxBackward: Kernel;
  readonly #avgForward: Kernel;
  readonly #avgBackward: Kernel;

  private constructor(gpu: Gpu, kernels: Kernel[]) {
    this.#gpu = gpu;
    [this.#maxForward, this.#maxBackward, this.#avgForward, this.#avgBackward] = kernels;
  }

  /** Compiles the kernels. Throws a `GpuError` naming the kernel if one fails. */
  static async create(gpu: Gpu, options: LayerKernelOptions = {}): Promise<PoolKernels> {
    const overrides = workgroupOverrides(options.workgroupSize);
    const compile = (entry: string, bindings: string[]) =>
      compileKernel(gpu, {
        name: `pool.${entry}`,
        file: FILE,
        entry,
        bindings: ["params", ...bindings],
        workgroup: ["WG"],
        overrides,
      });
    const kernels = await Promise.all([
      compile("maxpool_forward", ["x", "y", "argmax"]),
      compile("maxpool_backward", ["argmax_in", "dy", "dx"]),
      compile("avgpool_forward", ["x", "pooled"]),
      compile("avgpool_backward", ["dpooled", "dx"]),
    ]);
    return new PoolKernels(gpu, kernels);
  }

  /**
   * Records max pooling. x is [N][C][H][W], and y and argmax are [N][C][Ho][Wo]
   * (see `maxPoolOutputSize`), both overwritten. argmax (u32) stores the
   * index h * W + w of each maximum inside its input plane for the backward.
   * Ties keep the first pixel in row-major order.
   */
  maxPoolForward(
    plan: Plan,
    io: { x: Binding; y: Binding; argmax: Binding },
    shape: MaxPoolShape,
  ): void {
    const op = "pool.maxPoolForward";
    const { params, inputs, outputs } = this.#maxParams(op, shape);
    validateBindings(this.#gpu, {
      op,
      bindings: {
        x: { binding: io.x, elements: inputs },
        y: { binding: io.y, elements: outputs, write: true },
        argmax: { binding: io.argmax, elements: outputs, write: true },
      },
    });
    plan.add(this.#maxForward, { x: io.x, y: io.y, argmax: io.argmax }, params, [
      params.ho * params.wo,
      params.c,
      params.n,
    ]);
  }

  /**
   * Records the max-pooling backward: dx[n][c][p] is the sum of dy over the
   * windows whose argmax is p. dy and argmax are [N][C][Ho][Wo], and dx is
   * [N][C][H][W], overwritten, and zero where no window selected the pixel.
   */
  maxPoolBackward(
    plan: Plan,
    io: { argmax: Binding; dy: Binding; dx: Binding },
    shape: MaxPoolShape,
  ): void {
    const op = "pool.maxPoolBackward";
    const { params, inputs, outputs } = this.#maxParams(op, shape);
    validateBindings(this.#gpu, {
      op,
      bindings: {
        argmax: { binding: io.argmax, elements: outputs },
        dy: { binding: io.dy, elements: outputs },
        dx: { binding: io.dx, elements: inputs, write: true },
      },
    });
    plan.add(this.#maxBackward, { argmax_in: io.argmax, dy: io.dy, dx: io.dx }, params, [
      params.h * params.w,
      params.c,
      params.n,
    ]);
  }

  /** Records global average pooling: y[n][c] = mean of x[n][c][.][.]. x is [N][C][H][W], and y is [N][C], overwritten. */
  avgPoolForward(plan: Plan, io: { x: Binding; y: Binding }, shape: PoolShape): void {
    const op = "pool.avgPoolForward";
    const { params, inputs } = this.#avgParams(op, shape);
    validateBindings(this.#gpu, {
      op,
      bindings: {
        x: { binding: io.x, elements: inputs },
        y: { binding: io.y, elements: shape.n * shape.c, write: true },
      },
    });
    plan.add(this.#avgForward, { x: io.x, pooled: io.y }, params, shape.n * shape.c);
  }

  /** Records the global-average-pooling backward: dx[n][c][h][w] = dy[n][c] / (H * W). Overwrites dx. */
  avgPoolBackward(plan: Plan, io: { dy: Binding; dx: Binding }, shape: PoolShape): void {
    const op = "pool.avgPoolBackward";
    const { params, inputs } = this.#avgParams(op, shape);
    validateBindings(this.#gpu, {
      op,
      bindings: {
        dy: { binding: io.dy, elements: shape.n * shape.c },
        dx: { binding: io.dx, elements: inputs, write: true },
      },
    });
    plan.add(this.#avgBackward, { dpooled: io.dy, dx: io.dx }, params, inputs);
  }

  #avgParams(op: string, shape: PoolShape) {
    validateDims(op, { n: shape.n, c: shape.c, h: shape.h, w: shape.w });
    const inputs = validateElementCount(op, [shape.n, shape.c, shape.h, shape.w]);
    const params = {
      n: shape.n,
      c: shape.c,
      h: shape.h,
      w: shape.w,
      ho: 1,
      wo: 1,
      kernel: 1,
      stride: 1,
      pad: 0,
    };
    return { params, inputs };
  }

  #maxParams(op: string, shape: MaxPoolShape) {
    const { kernel, stride, pad } = maxPoolWindow(shape);
    validateDims(op, { n: shape.n, c: shape.c, h: shape.h, w: shape.w, kernel, stride });
    if (!Number.isInteger(pad) || pad < 0 || pad >= kernel) {
      throw new RangeError(
        `${op}: pad must be an integer in 0..kernel-1 (${kernel - 1}), got ${pad}, so that every ` +
          "window covers at least one real pixel.",
      );
    }
    if (shape.c > 65535 || shape.n > 65535) {
      throw new RangeError(`${op}: N and C must be at most 65535, got ${shape.n} and ${shape.c}.`);
    }
    const { ho, wo } = maxPoolOutputSize(shape);
    if (ho < 1 || wo < 1) {
      throw new RangeError(
        `${op}: a ${shape.h}x${shape.w} input is smaller than the ${kernel}x${kernel} window.`,
      );
    }
    const inputs = validateElementCount(op, [shape.n, shape.c, shape.h, shape.w]);
    const outputs = shape.n * shape.c * ho * wo;
    const params = { n: shape.n, c: shape.c, h: shape.h, w: shape.w, ho, wo, kernel, stride, pad };
    return { params, inputs, outputs };
  }
}
