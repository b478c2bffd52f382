// SGD with momentum and weight decay (wgsl/sgd.wgsl) over one flat parameter
// buffer, in the PyTorch convention g = grad + wd * w, v = momentum * v + g,
// w -= lr * v. A bit mask selects the parameters that get weight decay, so
// batch-norm scales and shifts and biases can share the dispatch undecayed.

import type { Gpu } from "../gpu/device.ts";
import {
  type Binding,
  compileKernel,
  type DispatchHandle,
  type Kernel,
  type Plan,
} from "../gpu/kernel.ts";
import {
  type LayerKernelOptions,
  validateBindings,
  validateDims,
  workgroupOverrides,
} from "./layer_bindings.ts";

/** A range of parameters in a flat buffer, in elements. */
export interface ParamRange {
  /** First element. */
  offset: number;
  /** Number of elements. */
  length: number;
}

/**
 * Builds the weight-decay bit mask for `count` parameters: bit i % 32 of
 * word i / 32 is set for every parameter outside the `noDecay` ranges.
 * Upload it as a u32 buffer of `Math.ceil(count / 32)` words.
 */
export function buildDecayMask(options: { count: number; noDecay: ParamRange[] }): Uint32Array {
  const { count } = options;
  validateDims("buildDecayMask", { count });
  const mask = new Uint32Array(Math.ceil(count / 32)).fill(0xffffffff);
  if (count % 32 !== 0) mask[mask.length - 1] = 0xffffffff >>> (32 - (count % 32));
  for (const range of options.noDecay) {
    const { offset, length } = range;
    if (
      !Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 ||
      offset + length > count
    ) {
      throw new RangeError(
        `buildDecayMask: range {offset: ${offset}, length: ${length}} is not inside the ${count} parameters.`,
      );
    }
    for (let i = offset; i < offset + length; i++) mask[i >>> 5] &= ~(1 << (i & 31));
  }
  return mask;
}

/** Buffers of one SGD step. All bindings cover the same E parameters. */
export interface SgdIo {
  /** Parameters [E] f32, updated in place. */
  weights: Binding;
  /** Gradients [E] f32, read. Must be a different buffer from weights and velocity. */
  grads: Binding;
  /** Momentum buffers [E] f32, zero before the first step, updated in place. */
  velocity: Binding;
  /** Weight-decay bit mask [ceil(E / 32)] u32 from `buildDecayMask`, read. */
  decayMask: Binding;
}

/** Settings of one SGD step. */
export interface SgdOptions {
  /** Parameters E to update. */
  count: number;
  /** Learning rate of the first submit. Change it with `SgdDispatch.setLearningRate`. */
  learningRate: number;
  /** Momentum factor, e.g. 0.9. */
  momentum: number;
  /** L2 weight decay, applied where the mask bit is set, e.g. 5e-4. */
  weightDecay: number;
}

/** A recorded SGD dispatch whose learning rate can change between submits. */
export class SgdDispatch {
  readonly plan: Plan;
  readonly handle: DispatchHandle;
  #params: { n: number; lr: number; momentum: number; weight_decay: number };

  constructor(
    plan: Plan,
    handle: DispatchHandle,
    params: { n: number; lr: number; momentum: number; weight_decay: number },
  ) {
    this.plan = plan;
    this.handle = handle;
    this.#params = params;
  }

  /** Sets the learning rate for the next submit of the plan (rewrites 16 uniform bytes). */
  setLearningRate(learningRate: number): void {
    validateLearningRate(learningRate);
    this.#params = { ...this.#params, lr: learningRate };
    this.plan.update(this.handle, this.#params);
  }
}

function validateLearningRate(learningRate: number): void {
  if (!Number.isFinite(learningRate) || learningRate < 0) {
    throw new RangeError(`sgd: learningRate must be a finite number >= 0, got ${learningRate}.`);
  }
}

/** Compiled SGD kernel for one device. */
export class SgdKernels {
  readonly #gpu: Gpu;
  readonly #step: Kernel;

  private constructor(gpu: Gpu, step: Kernel) {
    this.#gpu = gpu;
    this.#step = step;
  }

  /** Compiles the kernel. Throws a `GpuError` if it fails. */
  static async create(gpu: Gpu, options: LayerKernelOptions = {}): Promise<SgdKernels> {
    const step = await compileKernel(gpu, {
      name: "sgd.sgd_step",
      file: "sgd.wgsl",
      entry: "sgd_step",
      bindings: ["params", "weights", "grads", "velocity", "decay_mask"],
      workgroup: ["WG"],
      overrides: workgroupOverrides(options.workgroupSize),
    });
    return new SgdKernels(gpu, step);
  }

  /** Records one SGD step over `options.count` parameters. One dispatch. */
  step(plan: Plan, io: SgdIo, options: SgdOptions): SgdDispatch {
    const op = "sgd.step";
    const { count, learningRate, momentum, weightDecay } = options;
    validateDims(op, { count });
    validateLearningRate(learningRate);
    if (!Number.isFinite(momentum) || momentum < 0) {
      throw new RangeError(`${op}: momentum must be a finite number >= 0, got ${momentum}.`);
    }
    if (!Number.isFinite(weightDecay) || weightDecay < 0) {
      throw new RangeError(`${op}: weightDecay must be a finite number >= 0, got ${weightDecay}.`);
    }
    validateBindings(this.#gpu, {
      op,
      bindings: {
        weights: { binding: io.weights, elements: count, write: true },
        grads: { binding: io.grads, elements: count },
        velocity: { binding: io.velocity, elements: count, write: true },
        decayMask: { binding: io.decayMask, elements: Math.ceil(count / 32) },
      },
    });

    const params = { n: count, lr: learningRate, momentum, weight_decay: weightDecay };
    const handle = plan.add(
      this.#step,
      { weights: io.weights, grads: io.grads, velocity: io.velocity, decay_mask: io.decayMask },
      params,
      count,
    );
    return new SgdDispatch(plan, handle, params);
  }
}
