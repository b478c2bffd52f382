// Elementwise ops (wgsl/elementwise.wgsl): ReLU forward and backward, the
// residual add and gradient fan-out, copy and fill. Each method records one
// dispatch over `count` f32 elements of a tensor of any shape.
//
// WebGPU rejects a buffer bound both read-only and read_write in one
// dispatch, so in-place forms have their own methods (`reluInPlace`,
// `reluBackwardInPlace`, `addInto`) instead of accepting aliased bindings.

import type { Gpu } from "../gpu/device.ts";
import { type Binding, compileKernel, type Kernel, type Plan } from "../gpu/kernel.ts";
import {
  type LayerKernelOptions,
  validateBindings,
  validateDims,
  workgroupOverrides,
} from "./layer_bindings.ts";

/** Size of an elementwise op. */
export interface ElementwiseShape {
  /** Number of f32 elements, e.g. N * C * H * W. */
  count: number;
}

/** Size and settings of `add` and `addInto`. */
export interface AddShape extends ElementwiseShape {
  /** Apply ReLU to the sum, as after a residual block. Default: false. */
  relu?: boolean;
}

/** Size and value of `fill`. */
export interface FillShape extends ElementwiseShape {
  /** Value written to every element. */
  value: number;
}

const FILE = "elementwise.wgsl";

/** Compiled elementwise kernels for one device. */
export class ElementwiseKernels {
  readonly #gpu: Gpu;
  readonly #kernels: Map<string, Kernel>;

  private constructor(gpu: Gpu, kernels: Map<string, Kernel>) {
    this.#gpu = gpu;
    this.#kernels = kernels;
  }

  /** Compiles the kernels. Throws a `GpuError` naming the kernel if one fails. */
  static async create(gpu: Gpu, options: LayerKernelOptions = {}): Promise<ElementwiseKernels> {
    const overrides = workgroupOverrides(options.workgroupSize);
    const entries: [string, string[]][] = [
      ["relu_forward", ["x", "y"]],
      ["relu_inplace", ["y"]],
      ["relu_backward", ["activation", "dy", "dx"]],
      ["relu_backward_inplace", ["activation", "dx"]],
      ["add", ["x", "b", "y"]],
      ["add_into", ["x", "y"]],
      ["copy", ["x", "y"]],
      ["fill", ["y"]],
    ];
    const compiled = await Promise.all(entries.map(([entry, bindings]) =>
      compileKernel(gpu, {
        name: `elementwise.${entry}`,
        file: FILE,
        entry,
        bindings: ["params", ...bindings],
        workgroup: ["WG"],
        overrides,
      })
    ));
    return new ElementwiseKernels(gpu, new Map(entries.map(([entry], i) => [entry, compiled[i]])));
  }

  /** Records y = max(x, 0). Overwrites y. */
  relu(plan: Plan, io: { x: Binding; y: Binding }, shape: ElementwiseShape): void {
    this.#record(plan, { op: "relu", entry: "relu_forward", shape }, {
      x: { wgsl: "x", binding: io.x },
      y: { wgsl: "y", binding: io.y, write: true },
    });
  }

  /** Records y = max(y, 0) in place. */
  reluInPlace(plan: Plan, io: { y: Binding }, shape: ElementwiseShape): void {
    this.#record(plan, { op: "reluInPlace", entry: "relu_inplace", shape }, {
      y: { wgsl: "y", binding: io.y, write: true },
    });
  }

  /**
   * Records dx = dy where activation > 0, else 0. `activation` is the ReLU's
   * output (also valid after `reluInPlace`, a fused batch-norm ReLU or
   * `add` with `relu`). Overwrites dx.
   */
  reluBackward(
    plan: Plan,
    io: { activation: Binding; dy: Binding; dx: Binding },
    shape: ElementwiseShape,
  ): void {
    this.#record(plan, { op: "reluBackward", entry: "relu_backward", shape }, {
      activation: { wgsl: "activation", binding: io.activation },
      dy: { wgsl: "dy", binding: io.dy },
      dx: { wgsl: "dx", binding: io.dx, write: true },
    });
  }

  /** Records dx = 0 where activation <= 0, in place. On entry dx contains dy. */
  reluBackwardInPlace(
    plan: Plan,
    io: { activation: Binding; dx: Binding },
    shape: ElementwiseShape,
  ): void {
    this.#record(plan, { op: "reluBackwardInPlace", entry: "relu_backward_inplace", shape }, {
      activation: { wgsl: "activation", binding: io.activation },
      dx: { wgsl: "dx", binding: io.dx, write: true },
    });
  }

  /**
   * Records y = a + b (then ReLU when `shape.relu`), the residual join.
   * Overwrites y. Its backward passes dy unchanged to both inputs, so it needs
   * no kernel of its own. When `relu` was set, apply `reluBackward` to dy first.
   */
  add(plan: Plan, io: { a: Binding; b: Binding; y: Binding }, shape: AddShape): void {
    this.#record(plan, { op: "add", entry: "add", shape, relu: shape.relu }, {
      a: { wgsl: "x", binding: io.a },
      b: { wgsl: "b", binding: io.b },
      y: { wgsl: "y", binding: io.y, write: true },
    });
  }

  /**
   * Records dst += src (then ReLU when `shape.relu`). It accumulates into dst,
   * for the gradient fan-out where a tensor feeds two consumers or for an
   * in-place residual join.
   */
  addInto(plan: Plan, io: { src: Binding; dst: Binding }, shape: AddShape): void {
    this.#record(plan, { op: "addInto", entry: "add_into", shape, relu: shape.relu }, {
      src: { wgsl: "x", binding: io.src },
      dst: { wgsl: "y", binding: io.dst, write: true },
    });
  }

  /** Records dst = src. Overwrites dst. */
  copy(plan: Plan, io: { src: Binding; dst: Binding }, shape: ElementwiseShape): void {
    this.#record(plan, { op: "copy", entry: "copy", shape }, {
      src: { wgsl: "x", binding: io.src },
      dst: { wgsl: "y", binding: io.dst, write: true },
    });
  }

  /** Records dst = shape.value for every element. Overwrites dst. */
  fill(plan: Plan, io: { dst: Binding }, shape: FillShape): void {
    if (!Number.isFinite(shape.value)) {
      throw new RangeError(`fill: value must be finite, got ${shape.value}.`);
    }
    this.#record(plan, { op: "fill", entry: "fill", shape, value: shape.value }, {
      dst: { wgsl: "y", binding: io.dst, write: true },
    });
  }

  #record(
    plan: Plan,
    call: { op: string; entry: string; shape: ElementwiseShape; relu?: boolean; value?: number },
    bindings: Record<string, { wgsl: string; binding: Binding; write?: boolean }>,
  ): void {
    const count = call.shape.count;
    validateDims(call.op, { count });
    const uses = Object.fromEntries(
      Object.entries(bindings).map((
        [name, use],
      ) => [name, { binding: use.binding, write: use.write, elements: count }]),
    );
    validateBindings(this.#gpu, { op: call.op, bindings: uses });

    const kernel = this.#kernels.get(call.entry)!;
    const bind = Object.fromEntries(Object.values(bindings).map((use) => [use.wgsl, use.binding]));
    plan.add(kernel, bind, { n: count, value: call.value ?? 0, relu: call.relu ? 1 : 0 }, count);
  }
}
