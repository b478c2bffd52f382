// 2-D convolution for ResNet training: dispatch recording for the kernels of
// wgsl/conv2d.wgsl. This module also re-exports the shape checks and the
// float64 CPU references.
//
// Tensors are f32 in NCHW order, weights [K][C][KH][KW] with KH = KW, no bias
// (batch norm follows every convolution). Each GPU method records dispatches
// into a caller's `Plan` and overwrites its output, so a training step stays
// one submit. backward_weight reduces over N*OH*OW, which is long, so it
// splits that sum into chunks that run in parallel and adds them in a second
// pass. The caller provides the scratch buffer for the partial sums.

import { type Gpu, GpuError } from "../gpu/device.ts";
import { type Binding, compileKernel, type Kernel, type Plan } from "../gpu/kernel.ts";
import { convOutputSize, type ConvShape, tensorSizes } from "./conv_shape.ts";

export { convOutputSize, type ConvShape } from "./conv_shape.ts";
export {
  conv2dBackwardDataReference,
  conv2dBackwardWeightReference,
  conv2dReference,
} from "./conv_reference.ts";

/** Register tile and workgroup size of one kernel. */
export interface ConvTiles {
  /** Channels per invocation (TM), 1 to 8. */
  rows: number;
  /** Pixels, or filter positions in backward_weight, per invocation (TN): 4 or 8. */
  columns: number;
  /** Invocations per workgroup (WG). */
  workgroup: number;
}

/** Options for {@linkcode ConvKernels.create}. */
export interface ConvKernelOptions {
  /** Tiles of the forward kernel. Default: 8 x 8, workgroup 64. */
  forward?: ConvTiles;
  /** Tiles of the backward_data kernel. Default: 8 x 8, workgroup 64. */
  backwardData?: ConvTiles;
  /** Tiles of the backward_weight kernel. Default: 8 x 8, workgroup 32. */
  backwardWeight?: ConvTiles;
  /**
   * Output pixels (out of N*OH*OW) summed by one backward_weight chunk,
   * rounded up to whole output rows. Default: chosen per shape so that the
   * grid has at least 2^15 invocations and each chunk at least 1024 pixels.
   */
  chunkPixels?: number;
}

// Defaults from runs on Mesa 22.3 llvmpipe (2 cores of an AMD EPYC) with the
// ResNet-18 shapes of bench/conv_bench.ts and other tiles passed as options.
// 8 x 8 was the fastest tile tried in every pass, against 4 x 8 and 8 x 4.
// The forward pass also lost speed with 16 x 4, 16 x 8 and 8 x 16 tiles,
// tried with larger register bounds in the shader. The workgroup size made no
// difference to forward and backward_data. backward_weight ran 10 to 20%
// faster with 16 or 32 invocations than with 64, and 32 still fills a warp on
// NVIDIA GPUs.
// NOTE: not yet measured on a real GPU. There, 8 x 8 tiles leave the deep
// layers short of parallelism (512 channels at 4x4 and batch 32 give 4096
// forward invocations), and forward and backward_data do not split their
// reduction the way backward_weight does.
const DEFAULT_TILES: ConvTiles = { rows: 8, columns: 8, workgroup: 64 };
const DEFAULT_WEIGHT_TILES: ConvTiles = { rows: 8, columns: 8, workgroup: 32 };
const TARGET_INVOCATIONS = 1 << 15;
const MIN_CHUNK_PIXELS = 1024;

/** The compiled convolution kernels and the recording of their dispatches. */
export class ConvKernels {
  readonly gpu: Gpu;
  #forward: Kernel;
  #backwardData: Kernel;
  #backwardWeight: Kernel;
  #reduce: Kernel;
  #chunkPixels: number | undefined;

  private constructor(gpu: Gpu, kernels: Kernel[], chunkPixels: number | undefined) {
    this.gpu = gpu;
    [this.#forward, this.#backwardData, this.#backwardWeight, this.#reduce] = kernels;
    this.#chunkPixels = chunkPixels;
  }

  /** Compiles the four convolution pipelines (cached per device). */
  static async create(gpu: Gpu, options: ConvKernelOptions = {}): Promise<ConvKernels> {
    const maxWorkgroup = gpu.device.limits.maxComputeInvocationsPerWorkgroup;
    const compile = (entry: string, bindings: string[], tiles: ConvTiles) => {
      checkTiles(entry, tiles, maxWorkgroup);
      return compileKernel(gpu, {
        name: `conv2d.${entry}`,
        file: "conv2d.wgsl",
        entry,
        bindings: ["params", ...bindings],
        workgroup: ["WG"],
        overrides: { WG: tiles.workgroup, TM: tiles.rows, TN: tiles.columns },
      });
    };
    const chunkPixels = options.chunkPixels;
    if (chunkPixels !== undefined && (!Number.isInteger(chunkPixels) || chunkPixels < 1)) {
      throw new RangeError(`chunkPixels must be a positive integer, got ${chunkPixels}.`);
    }
    const kernels = await Promise.all([
      compile("forward", ["x", "w", "y"], options.forward ?? DEFAULT_TILES),
      compile("backward_data", ["dy", "w", "dx"], options.backwardData ?? DEFAULT_TILES),
      compile(
        "backward_weight",
        ["x", "dy", "dw_partial"],
        options.backwardWeight ?? DEFAULT_WEIGHT_TILES,
      ),
      compile("backward_weight_reduce", ["dw_partial", "dw"], {
        ...DEFAULT_TILES,
        rows: 1,
        columns: 4,
      }),
    ]);
    return new ConvKernels(gpu, kernels, chunkPixels);
  }

  /** Bytes of scratch the backward_weight pass needs for this shape (0 if none). */
  scratchBytes(shape: ConvShape): number {
    const { chunks } = this.#chunking(shape);
    return chunks > 1 ? chunks * tensorSizes(shape).w * 4 : 0;
  }

  /** Records y = conv(x, w), overwriting y. */
  forward(plan: Plan, io: { x: Binding; w: Binding; y: Binding }, shape: ConvShape): void {
    const sizes = tensorSizes(shape);
    this.#checkBinding("forward", "x", io.x, sizes.x);
    this.#checkBinding("forward", "w", io.w, sizes.w);
    this.#checkBinding("forward", "y", io.y, sizes.y);
    checkDistinct("forward", { y: io.y }, { x: io.x, w: io.w });

    const kernel = this.#forward;
    const rowTiles = Math.ceil(shape.k / tileOf(kernel, "TM"));
    const grid = this.#grid(kernel, shape.n * sizes.out.h * sizes.out.w, rowTiles);
    plan.add(kernel, { x: io.x, w: io.w, y: io.y }, this.#params(shape, { rowTiles }), grid);
  }

  /** Records dx = the gradient of sum(y * dy) w.r.t. x, overwriting dx. */
  backwardData(plan: Plan, io: { dy: Binding; w: Binding; dx: Binding }, shape: ConvShape): void {
    const sizes = tensorSizes(shape);
    this.#checkBinding("backwardData", "dy", io.dy, sizes.y);
    this.#checkBinding("backwardData", "w", io.w, sizes.w);
    this.#checkBinding("backwardData", "dx", io.dx, sizes.x);
    checkDistinct("backwardData", { dx: io.dx }, { dy: io.dy, w: io.w });

    // One z slice per stride phase. A phase has at most ceil(H/s) x ceil(W/s) pixels.
    const kernel = this.#backwardData;
    const s = shape.stride;
    const rowTiles = Math.ceil(shape.c / tileOf(kernel, "TM"));
    const phaseColumns = shape.n * Math.ceil(shape.h / s) * Math.ceil(shape.w / s);
    const grid = this.#grid(kernel, phaseColumns, rowTiles * s * s);
    plan.add(kernel, { dy: io.dy, w: io.w, dx: io.dx }, this.#params(shape, { rowTiles }), grid);
  }

  /**
   * Records dw = the gradient of sum(y * dy) w.r.t. w, summed over the batch
   * and overwriting dw. Needs `scratch` of `scratchBytes(shape)` bytes when
   * that is not 0.
   */
  backwardWeight(
    plan: Plan,
    io: { x: Binding; dy: Binding; dw: Binding; scratch?: Binding },
    shape: ConvShape,
  ): void {
    const sizes = tensorSizes(shape);
    this.#checkBinding("backwardWeight", "x", io.x, sizes.x);
    this.#checkBinding("backwardWeight", "dy", io.dy, sizes.y);
    this.#checkBinding("backwardWeight", "dw", io.dw, sizes.w);
    checkDistinct("backwardWeight", { dw: io.dw, scratch: io.scratch }, { x: io.x, dy: io.dy });

    const kernel = this.#backwardWeight;
    const { chunks, chunkRows } = this.#chunking(shape);
    const rowTiles = Math.ceil(shape.k / tileOf(kernel, "TM"));
    const params = this.#params(shape, { rowTiles, chunkRows, chunks });
    const columns = shape.c * shape.kernel * shape.kernel;
    const grid = this.#grid(kernel, columns, rowTiles * chunks);
    if (chunks === 1) {
      plan.add(kernel, { x: io.x, dy: io.dy, dw_partial: io.dw }, params, grid);
      return;
    }

    const scratchBytes = chunks * sizes.w * 4;
    if (!io.scratch) {
      throw new RangeError(
        `Convolution backwardWeight needs a scratch binding of ${scratchBytes} bytes for this ` +
          "shape; pass io.scratch sized by scratchBytes(shape).",
      );
    }
    this.#checkBinding("backwardWeight", "scratch", io.scratch, scratchBytes / 4);
    plan.add(kernel, { x: io.x, dy: io.dy, dw_partial: io.scratch }, params, grid);
    plan.add(this.#reduce, { dw_partial: io.scratch, dw: io.dw }, params, sizes.w);
  }

  /** Splits the N*OH rows of the backward_weight reduction into chunks. */
  #chunking(shape: ConvShape): { chunks: number; chunkRows: number } {
    const out = convOutputSize(shape);
    const rows = shape.n * out.h;
    let chunkPixels = this.#chunkPixels;
    if (chunkPixels === undefined) {
      const kernel = this.#backwardWeight;
      const columns = shape.c * shape.kernel * shape.kernel;
      const invocations = Math.ceil(columns / tileOf(kernel, "TN")) *
        Math.ceil(shape.k / tileOf(kernel, "TM"));
      const chunksNeeded = Math.ceil(TARGET_INVOCATIONS / invocations);
      chunkPixels = Math.max(MIN_CHUNK_PIXELS, Math.ceil(rows * out.w / chunksNeeded));
    }
    const chunkRows = Math.min(rows, Math.ceil(chunkPixels / out.w));
    return { chunks: Math.ceil(rows / chunkRows), chunkRows };
  }

  #params(
    shape: ConvShape,
    extra: { rowTiles: number; chunkRows?: number; chunks?: number },
  ): Record<string, number> {
    const out = convOutputSize(shape);
    return {
      n: shape.n,
      c: shape.c,
      h: shape.h,
      w: shape.w,
      k: shape.k,
      kernel: shape.kernel,
      stride: shape.stride,
      pad: shape.pad,
      oh: out.h,
      ow: out.w,
      row_tiles: extra.rowTiles,
      chunk_rows: extra.chunkRows ?? 0,
      chunks: extra.chunks ?? 1,
    };
  }

  /**
   * Returns the invocation grid for `columns` GEMM columns and `slices` z
   * slices. Column tiles fill x and spill into y past the per-dimension limit.
   */
  #grid(kernel: Kernel, columns: number, slices: number): [number, number, number] {
    const maxPerDim = this.gpu.device.limits.maxComputeWorkgroupsPerDimension;
    const workgroup = kernel.workgroupSize[0];
    const workgroups = Math.ceil(Math.ceil(columns / tileOf(kernel, "TN")) / workgroup);
    const spill = Math.ceil(workgroups / maxPerDim);
    if (slices > maxPerDim || spill > maxPerDim) {
      throw new GpuError(
        `${kernel.spec.name}: ${columns} columns in ${slices} slices exceed the adapter's ` +
          `${maxPerDim} workgroups per dimension; use a smaller batch.`,
      );
    }
    return [Math.ceil(workgroups / spill) * workgroup, spill, slices];
  }

  #checkBinding(method: string, name: string, binding: Binding, elements: number): void {
    const bytes = elements * 4;
    this.gpu.checkBindingSize(bytes, `Convolution ${method} ${name}`);
    const size = binding instanceof GPUBuffer
      ? binding.size
      : binding.size ?? binding.buffer.size - (binding.offset ?? 0);
    if (size < bytes) {
      throw new RangeError(
        `Convolution ${method}: ${name} has ${size} bytes but the shape needs ${bytes} ` +
          `(${elements} f32 values); allocate a larger buffer or check the shape.`,
      );
    }
  }
}

function bufferOf(binding: Binding): GPUBuffer {
  return binding instanceof GPUBuffer ? binding : binding.buffer;
}

/**
 * Throws when an output shares a buffer with an input: WebGPU rejects a
 * dispatch that binds one buffer both read-only and writable, even at
 * disjoint ranges, and that validation error is silent without an error scope.
 */
function checkDistinct(
  method: string,
  outputs: Record<string, Binding | undefined>,
  inputs: Record<string, Binding>,
): void {
  for (const [name, output] of Object.entries(outputs)) {
    if (!output) continue;
    for (const [input, binding] of Object.entries(inputs)) {
      if (bufferOf(binding) === bufferOf(output)) {
        throw new RangeError(
          `Convolution ${method}: ${name} and ${input} share one buffer, but WebGPU cannot bind ` +
            "a buffer read-only and writable in one dispatch. Use separate buffers.",
        );
      }
    }
  }
}

function tileOf(kernel: Kernel, name: "TM" | "TN"): number {
  return kernel.spec.overrides![name];
}

function checkTiles(entry: string, tiles: ConvTiles, maxWorkgroup: number): void {
  if (!Number.isInteger(tiles.rows) || tiles.rows < 1 || tiles.rows > 8) {
    throw new RangeError(
      `conv2d.${entry}: tile rows must be an integer in 1..8, got ${tiles.rows}.`,
    );
  }
  if (tiles.columns !== 4 && tiles.columns !== 8) {
    throw new RangeError(`conv2d.${entry}: tile columns must be 4 or 8, got ${tiles.columns}.`);
  }
  if (!Number.isInteger(tiles.workgroup) || tiles.workgroup < 1 || tiles.workgroup > maxWorkgroup) {
    throw new RangeError(
      `conv2d.${entry}: workgroup size must be an integer in 1..${maxWorkgroup}, got ${tiles.workgroup}.`,
    );
  }
}
