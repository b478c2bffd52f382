// Checks shared by the layer kernels before they record a dispatch.
//
// WebGPU reports a misaligned binding, a binding too small for the shape, or
// one buffer bound both read-only and read_write in a dispatch only as a
// validation error at submit time, which nothing captures there: the outputs
// just stay unchanged. These checks turn the same mistakes into an exception
// at record time that names the op and the binding.

import { type Gpu, GpuError } from "../gpu/device.ts";
import type { Binding } from "../gpu/kernel.ts";

/** One binding of a dispatch and the number of 4-byte elements it must hold. */
export interface BindingUse {
  binding: Binding;
  elements: number;
  /** True when the kernel writes the binding (read_write in WGSL). Default: false. */
  write?: boolean;
}

/** Returns the buffer behind a binding. */
export function bindingBuffer(binding: Binding): GPUBuffer {
  return binding instanceof GPUBuffer ? binding : binding.buffer;
}

/**
 * Validates the bindings of one dispatch: offsets aligned to the adapter's
 * `minStorageBufferOffsetAlignment`, ranges inside their buffer and large
 * enough for `elements`, and no buffer bound both read-only and read_write,
 * which WebGPU rejects even for disjoint ranges. Throws a `GpuError`.
 */
export function validateBindings(
  gpu: Gpu,
  request: { op: string; bindings: Record<string, BindingUse> },
): void {
  const alignment = gpu.device.limits.minStorageBufferOffsetAlignment;
  const readOnly = new Map<GPUBuffer, string>();
  const written = new Map<GPUBuffer, string>();

  for (const [name, use] of Object.entries(request.bindings)) {
    const buffer = bindingBuffer(use.binding);
    const offset = use.binding instanceof GPUBuffer ? 0 : use.binding.offset ?? 0;
    const size = use.binding instanceof GPUBuffer
      ? buffer.size
      : use.binding.size ?? buffer.size - offset;
    const label = buffer.label || "unlabelled buffer";
    if (offset % alignment !== 0) {
      throw new GpuError(
        `${request.op}: binding "${name}" starts at byte ${offset} of "${label}", which is not a ` +
          `multiple of ${alignment}. Pad tensor offsets inside shared buffers to ${alignment} bytes.`,
      );
    }
    if (offset + size > buffer.size) {
      throw new GpuError(
        `${request.op}: binding "${name}" (bytes ${offset}..${
          offset + size
        }) extends past the end ` +
          `of "${label}" (${buffer.size} bytes).`,
      );
    }
    if (size < use.elements * 4) {
      throw new GpuError(
        `${request.op}: binding "${name}" has ${size} bytes, but the shape needs ${use.elements} ` +
          `elements (${use.elements * 4} bytes). Allocate a larger buffer or check the shape.`,
      );
    }
    (use.write ? written : readOnly).set(buffer, name);
  }

  for (const [buffer, writer] of written) {
    const reader = readOnly.get(buffer);
    if (reader !== undefined) {
      throw new GpuError(
        `${request.op}: "${writer}" is written and "${reader}" is read in the same buffer ` +
          `"${buffer.label || "unlabelled buffer"}", which WebGPU rejects within one dispatch. ` +
          "Use separate buffers, or the in-place variant of the op where one exists.",
      );
    }
  }
}

/** Throws a `RangeError` unless every value of `dims` is an integer in 1..2^31-1. */
export function validateDims(op: string, dims: Record<string, number>): void {
  for (const [name, value] of Object.entries(dims)) {
    if (!Number.isInteger(value) || value < 1 || value > 0x7fffffff) {
      throw new RangeError(`${op}: ${name} must be a positive integer, got ${value}.`);
    }
  }
}

/** Returns the product of `sizes`; throws a `RangeError` when it exceeds the kernels' u32 indices. */
export function validateElementCount(op: string, sizes: number[]): number {
  const count = sizes.reduce((a, b) => a * b, 1);
  if (count > 0xffffffff) {
    throw new RangeError(
      `${op}: the tensor has ${count} elements, more than the 2^32 - 1 a kernel can index.`,
    );
  }
  return count;
}

/**
 * Returns the `override` values that set the workgroup-size constant `name`
 * (e.g. "WG"), or undefined to keep the WGSL default. Throws a `RangeError`
 * unless `size` is a power of two, which the tree reductions need.
 */
export function workgroupOverrides(
  size: number | undefined,
  name = "WG",
): Record<string, number> | undefined {
  if (size === undefined) return undefined;
  if (!Number.isInteger(size) || size < 1 || (size & (size - 1)) !== 0) {
    throw new RangeError(
      `Workgroup size ${name} must be a power of two, because the reductions halve it, got ${size}.`,
    );
  }
  return { [name]: size };
}

/** Options shared by the `create` functions of the layer kernel families. */
export interface LayerKernelOptions {
  /**
   * Invocations per workgroup (WGSL override WG), a power of two that the
   * adapter allows. Default: 64, the value in the WGSL files.
   */
  workgroupSize?: number;
  /**
   * Invocations per workgroup of the per-channel batch-norm reductions (WGSL
   * override REDUCE_WG), a power of two. Default: 256, because these kernels
   * run only one workgroup per channel.
   */
  reductionWorkgroupSize?: number;
}
