// The ResNet layer kernels other than convolution, compiled together.
//
// Every method records dispatches into a `Plan` and never submits. It takes
// `Binding`s and a typed shape and validates both before recording. A
// binding is a buffer or a byte range of one, whose offset must be a
// multiple of the adapter's minStorageBufferOffsetAlignment (256 bytes on
// most adapters). Tensors are f32 NCHW. Backward methods overwrite their
// gradient outputs, and `elementwise.addInto` is the one op that accumulates,
// for the gradient fan-out of residual connections.
//
// Example, one training-mode batch norm with fused ReLU:
//   const layers = await LayerKernels.create(gpu);
//   layers.batchNorm.forward(plan, { x, y, gamma, beta, mean, invStd, runningMean, runningVar },
//     { n: 8, c: 64, h: 32, w: 32, relu: true });

import type { Gpu } from "../gpu/device.ts";
import { BatchNormKernels } from "./batchnorm.ts";
import { ElementwiseKernels } from "./elementwise.ts";
import type { LayerKernelOptions } from "./layer_bindings.ts";
import { LinearKernels } from "./linear.ts";
import { CrossEntropyKernels } from "./loss.ts";
import { PoolKernels } from "./pool.ts";
import { SgdKernels } from "./sgd.ts";

export * from "./batchnorm.ts";
export * from "./elementwise.ts";
export * from "./linear.ts";
export * from "./loss.ts";
export * from "./pool.ts";
export * from "./sgd.ts";
export * from "./layers_reference.ts";
export { type BindingUse, type LayerKernelOptions, validateBindings } from "./layer_bindings.ts";

/** All non-convolution layer kernels of the ResNet for one device. */
export class LayerKernels {
  /** Batch norm 2-D: training forward, eval forward, backward. */
  readonly batchNorm: BatchNormKernels;
  /** ReLU, residual add, gradient fan-out, copy, fill. */
  readonly elementwise: ElementwiseKernels;
  /** Max pooling and global average pooling. */
  readonly pool: PoolKernels;
  /** Fully connected layer. */
  readonly linear: LinearKernels;
  /** Softmax cross-entropy and its statistics. */
  readonly loss: CrossEntropyKernels;
  /** SGD with momentum and masked weight decay. */
  readonly sgd: SgdKernels;

  private constructor(parts: {
    batchNorm: BatchNormKernels;
    elementwise: ElementwiseKernels;
    pool: PoolKernels;
    linear: LinearKernels;
    loss: CrossEntropyKernels;
    sgd: SgdKernels;
  }) {
    this.batchNorm = parts.batchNorm;
    this.elementwise = parts.elementwise;
    this.pool = parts.pool;
    this.linear = parts.linear;
    this.loss = parts.loss;
    this.sgd = parts.sgd;
  }

  /** Compiles every kernel (cached per device). Throws a `GpuError` naming the kernel that fails. */
  static async create(gpu: Gpu, options: LayerKernelOptions = {}): Promise<LayerKernels> {
    const [batchNorm, elementwise, pool, linear, loss, sgd] = await Promise.all([
      BatchNormKernels.create(gpu, options),
      ElementwiseKernels.create(gpu, options),
      PoolKernels.create(gpu, options),
      LinearKernels.create(gpu, options),
      CrossEntropyKernels.create(gpu, options),
      SgdKernels.create(gpu, options),
    ]);
    return new LayerKernels({ batchNorm, elementwise, pool, linear, loss, sgd });
  }
}
