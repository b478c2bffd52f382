// Fully connected layer (wgsl/linear.wgsl): y = x W^T + b, the ResNet
// classifier head, and its backward.

import type { Gpu } from "../gpu/device.ts";
import { type Binding, compileKernel, type Kernel, type Plan } from "../gpu/kernel.ts";
import {
  type LayerKernelOptions,
  validateBindings,
  validateDims,
  validateElementCount,
  workgroupOverrides,
} from "./layer_bindings.ts";

/** Shape of a fully connected layer. */
export interface LinearShape {
  /** Samples N in the batch. */
  n: number;
  /** Input features C (the channels of the pooled feature map). */
  c: number;
  /** Outputs M (classes, for the classifier head). */
  m: number;
}

/** Buffers of the forward. All f32, row-major. */
export interface LinearForwardIo {
  /** Input [N][C], read. */
  x: Binding;
  /** Weights [M][C], read. */
  weight: Binding;
  /** Biases [M], read. */
  bias: Binding;
  /** Output [N][M], overwritten. */
  y: Binding;
}

/** Buffers of the backward. All f32, row-major. */
export interface LinearBackwardIo {
  /** Forward input [N][C], read. */
  x: Binding;
  /** Weights [M][C], read. */
  weight: Binding;
  /** Gradient with respect to y [N][M], read. */
  dy: Binding;
  /** Gradient with respect to x [N][C], overwritten. Omit it to skip that dispatch. */
  dx?: Binding;
  /** Gradient with respect to the weights [M][C], overwritten. */
  dweight: Binding;
  /** Gradient with respect to the biases [M], overwritten. */
  dbias: Binding;
}

const FILE = "linear.wgsl";

/** Compiled fully connected kernels for one device. */
export class LinearKernels {
  readonly #gpu: Gpu;
  readonly #forward: Kernel;
  readonly #backwardInput: Kernel;
  readonly #backwardParams: Kernel;

  private constructor(gpu: Gpu, kernels: Kernel[]) {
    this.#gpu = gpu;
    [this.#forward, this.#backwardInput, this.#backwardParams] = kernels;
  }

  /** Compiles the kernels. Throws a `GpuError` naming the kernel if one fails. */
  static async create(gpu: Gpu, options: LayerKernelOptions = {}): Promise<LinearKernels> {
    const overrides = workgroupOverrides(options.workgroupSize);
    const compile = (entry: string, bindings: string[]) =>
      compileKernel(gpu, {
        name: `linear.${entry}`,
        file: FILE,
        entry,
        bindings: ["params", ...bindings],
        workgroup: ["WG"],
        overrides,
      });
    const kernels = await Promise.all([
      compile("linear_forward", ["x", "weight", "bias", "y"]),
      compile("linear_backward_input", ["dy", "weight", "dx"]),
      compile("linear_backward_params", ["dy", "x", "dweight", "dbias"]),
    ]);
    return new LinearKernels(gpu, kernels);
  }

  /** Records y = x W^T + b. Overwrites y. One dispatch. */
  forward(plan: Plan, io: LinearForwardIo, shape: LinearShape): void {
    const op = "linear.forward";
    const { n, c, m } = this.#validateShape(op, shape);
    validateBindings(this.#gpu, {
      op,
      bindings: {
        x: { binding: io.x, elements: n * c },
        weight: { binding: io.weight, elements: m * c },
        bias: { binding: io.bias, elements: m },
        y: { binding: io.y, elements: n * m, write: true },
      },
    });
    plan.add(
      this.#forward,
      { x: io.x, weight: io.weight, bias: io.bias, y: io.y },
      { n, c, m },
      n * m,
    );
  }

  /**
   * Records dx = dy W, dW = dy^T x and db = the sum of dy over the batch.
   * Overwrites dx, dweight and dbias. One dispatch for dW and db, one for dx.
   */
  backward(plan: Plan, io: LinearBackwardIo, shape: LinearShape): void {
    const op = "linear.backward";
    const { n, c, m } = this.#validateShape(op, shape);
    validateBindings(this.#gpu, {
      op: `${op} (parameter gradients)`,
      bindings: {
        dy: { binding: io.dy, elements: n * m },
        x: { binding: io.x, elements: n * c },
        dweight: { binding: io.dweight, elements: m * c, write: true },
        dbias: { binding: io.dbias, elements: m, write: true },
      },
    });
    plan.add(this.#backwardParams, { dy: io.dy, x: io.x, dweight: io.dweight, dbias: io.dbias }, {
      n,
      c,
      m,
    }, m * (c + 1));

    if (io.dx === undefined) return;
    validateBindings(this.#gpu, {
      op: `${op} (input gradient)`,
      bindings: {
        dy: { binding: io.dy, elements: n * m },
        weight: { binding: io.weight, elements: m * c },
        dx: { binding: io.dx, elements: n * c, write: true },
      },
    });
    plan.add(this.#backwardInput, { dy: io.dy, weight: io.weight, dx: io.dx }, { n, c, m }, n * c);
  }

  #validateShape(op: string, shape: LinearShape): LinearShape {
    validateDims(op, { n: shape.n, c: shape.c, m: shape.m });
    validateElementCount(op, [shape.n, shape.c]);
    validateElementCount(op, [shape.m, shape.c + 1]);
    validateElementCount(op, [shape.n, shape.m]);
    return shape;
  }
}
