// Softmax cross-entropy (wgsl/loss.wgsl) and the loss statistics buffer.
//
// Training adds to a 20-byte statistics buffer on the GPU every step, so the
// host reads loss and accuracy only every K steps (each read waits for the
// GPU). Layout, little-endian 4-byte fields:
//   0 loss_sum f32  sum over training steps of the batch mean loss
//   1 correct  u32  samples whose first maximal logit is the label
//   2 samples  u32  samples counted
//   3 steps    u32  batches counted
//   4 invalid_labels u32  samples whose label was >= M (loss 0 for them)

import type { Gpu } from "../gpu/device.ts";
import { type Binding, compileKernel, type Kernel, type Plan } from "../gpu/kernel.ts";
import {
  bindingBuffer,
  type LayerKernelOptions,
  validateBindings,
  validateDims,
  workgroupOverrides,
} from "./layer_bindings.ts";

/** Size in bytes of a loss statistics buffer. */
export const LOSS_STATS_BYTES = 20;

/** Shape of a batch of logits. */
export interface CrossEntropyShape {
  /** Samples N in the batch. */
  n: number;
  /** Classes M. */
  m: number;
}

/** Buffers of the training loss. */
export interface CrossEntropyIo {
  /** Logits [N][M] f32, read. */
  logits: Binding;
  /** Class indices [N] u32, each in 0..M-1, read. */
  labels: Binding;
  /** Gradient of the batch mean loss with respect to the logits [N][M] f32, overwritten. */
  dlogits: Binding;
  /** Per-sample loss [N] f32, overwritten. */
  sampleLoss: Binding;
  /** Statistics buffer of `LOSS_STATS_BYTES`, added to. */
  stats: Binding;
}

/** Buffers of the eval pass, which only counts correct predictions. */
export interface CrossEntropyEvalIo {
  /** Logits [N][M] f32, read. */
  logits: Binding;
  /** Class indices [N] u32, read. */
  labels: Binding;
  /** Statistics buffer of `LOSS_STATS_BYTES`. Its correct, samples, steps and invalid_labels fields are added to. */
  stats: Binding;
}

/** Totals read from a statistics buffer. */
export interface LossStats {
  /** Sum over training steps of the batch mean loss. */
  lossSum: number;
  /** Samples predicted correctly (top-1). */
  correct: number;
  /** Samples counted. */
  samples: number;
  /** Batches counted. */
  steps: number;
  /** Samples whose label was out of range. Any value but 0 means the labels are invalid. */
  invalidLabels: number;
  /** lossSum / steps, or NaN when no step was counted. */
  meanLoss: number;
  /** correct / samples, or NaN when no sample was counted. */
  accuracy: number;
}

const FILE = "loss.wgsl";

/** Compiled cross-entropy kernels for one device. */
export class CrossEntropyKernels {
  readonly #gpu: Gpu;
  readonly #train: Kernel;
  readonly #eval: Kernel;
  readonly #reduce: Kernel;

  private constructor(gpu: Gpu, kernels: Kernel[]) {
    this.#gpu = gpu;
    [this.#train, this.#eval, this.#reduce] = kernels;
  }

  /** Compiles the kernels. Throws a `GpuError` naming the kernel if one fails. */
  static async create(gpu: Gpu, options: LayerKernelOptions = {}): Promise<CrossEntropyKernels> {
    const overrides = workgroupOverrides(options.workgroupSize);
    const compile = (entry: string, bindings: string[]) =>
      compileKernel(gpu, {
        name: `loss.${entry}`,
        file: FILE,
        entry,
        bindings: ["params", ...bindings],
        workgroup: ["WG"],
        overrides,
      });
    const kernels = await Promise.all([
      compile("cross_entropy", ["logits", "labels", "dlogits", "sample_loss", "counters"]),
      compile("cross_entropy_eval", ["logits", "labels", "counters"]),
      compile("loss_reduce", ["sample_loss_in", "stats"]),
    ]);
    return new CrossEntropyKernels(gpu, kernels);
  }

  /**
   * Records the training loss: per-sample loss logsumexp(logits) - logit[label],
   * dlogits = (softmax - onehot) / N, and adds to `stats` the batch mean
   * loss, the correct count, N samples and one step. Two dispatches.
   */
  crossEntropy(plan: Plan, io: CrossEntropyIo, shape: CrossEntropyShape): void {
    const op = "loss.crossEntropy";
    const { n, m } = this.#validateShape(op, shape);
    validateBindings(this.#gpu, {
      op,
      bindings: {
        logits: { binding: io.logits, elements: n * m },
        labels: { binding: io.labels, elements: n },
        dlogits: { binding: io.dlogits, elements: n * m, write: true },
        sampleLoss: { binding: io.sampleLoss, elements: n, write: true },
        stats: { binding: io.stats, elements: LOSS_STATS_BYTES / 4, write: true },
      },
    });
    validateBindings(this.#gpu, {
      op: `${op} (reduction)`,
      bindings: {
        sampleLoss: { binding: io.sampleLoss, elements: n },
        stats: { binding: io.stats, elements: LOSS_STATS_BYTES / 4, write: true },
      },
    });

    const workgroup = this.#train.workgroupSize[0];
    plan.add(
      this.#train,
      {
        logits: io.logits,
        labels: io.labels,
        dlogits: io.dlogits,
        sample_loss: io.sampleLoss,
        counters: io.stats,
      },
      { n, m },
      n * workgroup,
    );
    plan.add(
      this.#reduce,
      { sample_loss_in: io.sampleLoss, stats: io.stats },
      { n, m },
      this.#reduce.workgroupSize[0],
    );
  }

  /** Records the eval pass: adds the correct count, N samples and one step to `stats`. One dispatch. */
  crossEntropyEval(plan: Plan, io: CrossEntropyEvalIo, shape: CrossEntropyShape): void {
    const op = "loss.crossEntropyEval";
    const { n, m } = this.#validateShape(op, shape);
    validateBindings(this.#gpu, {
      op,
      bindings: {
        logits: { binding: io.logits, elements: n * m },
        labels: { binding: io.labels, elements: n },
        stats: { binding: io.stats, elements: LOSS_STATS_BYTES / 4, write: true },
      },
    });
    const workgroup = this.#eval.workgroupSize[0];
    plan.add(
      this.#eval,
      { logits: io.logits, labels: io.labels, counters: io.stats },
      { n, m },
      n * workgroup,
    );
  }

  #validateShape(op: string, shape: CrossEntropyShape): CrossEntropyShape {
    validateDims(op, { n: shape.n, m: shape.m });
    if (shape.n > 65535) {
      throw new RangeError(
        `${op}: N must be at most 65535 (one workgroup per sample), got ${shape.n}.`,
      );
    }
    if (shape.n * shape.m > 0xffffffff) {
      throw new RangeError(
        `${op}: N * M = ${shape.n * shape.m} exceeds the 2^32 - 1 elements a kernel can index.`,
      );
    }
    return shape;
  }
}

/** Reads a statistics buffer (waits for the GPU, about one readback). */
export async function readLossStats(gpu: Gpu, stats: Binding): Promise<LossStats> {
  const buffer = bindingBuffer(stats);
  const offset = stats instanceof GPUBuffer ? 0 : stats.offset ?? 0;
  const view = new DataView(await gpu.read(buffer, LOSS_STATS_BYTES, offset));
  const lossSum = view.getFloat32(0, true);
  const correct = view.getUint32(4, true);
  const samples = view.getUint32(8, true);
  const steps = view.getUint32(12, true);
  const invalidLabels = view.getUint32(16, true);
  return {
    lossSum,
    correct,
    samples,
    steps,
    invalidLabels,
    meanLoss: steps > 0 ? lossSum / steps : NaN,
    accuracy: samples > 0 ? correct / samples : NaN,
  };
}

/** Zeroes a statistics buffer. The write is queued in order with later submits. */
export function resetLossStats(gpu: Gpu, stats: Binding): void {
  const buffer = bindingBuffer(stats);
  const offset = stats instanceof GPUBuffer ? 0 : stats.offset ?? 0;
  gpu.write(buffer, new Uint8Array(LOSS_STATS_BYTES), offset);
}
