// Compute kernels and recorded dispatch plans.
//
// The WGSL file is the single declaration of a kernel's interface: binding
// indices, access modes, the `Params` uniform struct and `override` constants
// are parsed from it, and the TypeScript side binds buffers and packs uniforms
// by name. A name that does not match the shader is an error at pipeline
// creation, never a silent misbinding.
//
// A `Plan` records many dispatches with their bind groups once and replays
// them into one command encoder and one submit per step. Each dispatch owns a
// 256-byte slot of one uniform buffer, so steps that change only a learning
// rate or a batch index rewrite a few bytes instead of rebuilding bind groups.

import { type Gpu, GpuError } from "./device.ts";

/** Declaration of one compute entry point. */
export interface KernelSpec {
  /** Kernel name used in error messages, e.g. "siren.forward". */
  name: string;
  /** WGSL file name under `wgsl/`. */
  file: string;
  /** Entry point function name. */
  entry: string;
  /** Storage bindings used by this entry point, by their WGSL variable names. */
  bindings: string[];
  /** Override constants naming the workgroup size per dimension, e.g. ["WG"]. */
  workgroup: string[];
  /** Values for `override` constants; unspecified ones keep the WGSL default. */
  overrides?: Record<string, number>;
}

type ScalarType = "u32" | "i32" | "f32";

interface BindingInfo {
  index: number;
  kind: "uniform" | "read" | "read_write";
}

/** The interface a WGSL source declares: bindings, `Params` fields and overrides. */
export interface ShaderInterface {
  bindings: Map<string, BindingInfo>;
  params: { name: string; type: ScalarType }[];
  overrides: Map<string, number>;
}

const sourceCache = new Map<string, string>();

/** Loads `wgsl/<file>`; works from a checkout and from a `deno compile` binary built with `--include wgsl`. */
export function loadShader(file: string): string {
  let source = sourceCache.get(file);
  if (source === undefined) {
    const url = new URL(`../../wgsl/${file}`, import.meta.url);
    try {
      source = Deno.readTextFileSync(url);
    } catch (error) {
      throw new GpuError(`Shader file ${url.pathname} could not be read: ${(error as Error).message}`);
    }
    sourceCache.set(file, source);
  }
  return source;
}

/** Parses the binding declarations, the `Params` struct and the overrides of a WGSL source. */
export function parseShaderInterface(source: string): ShaderInterface {
  const code = source.replace(/\/\/[^\n]*/g, "");
  const bindings = new Map<string, BindingInfo>();
  const bindingPattern =
    /@group\(\s*0\s*\)\s*@binding\(\s*(\d+)\s*\)\s*var\s*<\s*(uniform|storage)\s*(?:,\s*(read|read_write)\s*)?>\s*(\w+)/g;
  for (const match of code.matchAll(bindingPattern)) {
    const kind = match[2] === "uniform" ? "uniform" : (match[3] ?? "read") as BindingInfo["kind"];
    bindings.set(match[4], { index: Number(match[1]), kind });
  }

  const params: ShaderInterface["params"] = [];
  const struct = code.match(/struct\s+Params\s*\{([^}]*)\}/);
  if (struct) {
    for (const field of struct[1].split(",")) {
      const m = field.trim().match(/^(\w+)\s*:\s*(\w+)$/);
      if (!m) continue;
      if (m[2] !== "u32" && m[2] !== "i32" && m[2] !== "f32") {
        throw new GpuError(`Params field "${m[1]}" has type ${m[2]}; only u32, i32 and f32 are packed.`);
      }
      params.push({ name: m[1], type: m[2] });
    }
  }

  const overrides = new Map<string, number>();
  for (const m of code.matchAll(/override\s+(\w+)\s*:\s*\w+\s*=\s*([-\d.eE+]+)\w*\s*;/g)) {
    overrides.set(m[1], Number(m[2]));
  }
  return { bindings, params, overrides };
}

/** A compiled kernel: pipeline, bind group layout and the parsed interface. */
export class Kernel {
  readonly spec: KernelSpec;
  readonly shader: ShaderInterface;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  /** Workgroup size per dimension, resolved from the overrides. */
  readonly workgroupSize: number[];
  /** Byte size of the packed `Params` struct, 0 when the entry takes none. */
  readonly paramsBytes: number;

  constructor(spec: KernelSpec, shader: ShaderInterface, pipeline: GPUComputePipeline, layout: GPUBindGroupLayout) {
    this.spec = spec;
    this.shader = shader;
    this.pipeline = pipeline;
    this.layout = layout;
    this.workgroupSize = spec.workgroup.map((name) => spec.overrides?.[name] ?? shader.overrides.get(name)!);
    this.paramsBytes = spec.bindings.includes("params") ? shader.params.length * 4 : 0;
  }

  /** Packs `values` into the `Params` layout, rejecting missing and unknown names. */
  packParams(values: Record<string, number>, target = new ArrayBuffer(this.paramsBytes)): ArrayBuffer {
    const view = new DataView(target);
    const known = new Set(this.shader.params.map((p) => p.name));
    for (const name of Object.keys(values)) {
      if (!known.has(name)) throw new GpuError(`${this.spec.name}: unknown parameter "${name}".`);
    }
    // An entry that does not bind "params" takes none, even when its file declares Params.
    if (this.paramsBytes === 0) return target;
    this.shader.params.forEach(({ name, type }, i) => {
      const value = values[name];
      if (value === undefined || !Number.isFinite(value)) {
        throw new GpuError(`${this.spec.name}: parameter "${name}" is missing or not finite (${value}).`);
      }
      if (type === "f32") view.setFloat32(i * 4, value, true);
      else if (type === "u32") view.setUint32(i * 4, value >>> 0, true);
      else view.setInt32(i * 4, value | 0, true);
    });
    return target;
  }
}

const BUFFER_BINDING_TYPES: Record<BindingInfo["kind"], GPUBufferBindingType> = {
  uniform: "uniform",
  read: "read-only-storage",
  read_write: "storage",
};

const kernelCache = new WeakMap<GPUDevice, Map<string, Kernel>>();

/**
 * Compiles `spec` on `gpu`, or returns the cached kernel. Shader and pipeline
 * errors are re-thrown as a `GpuError` that names the kernel.
 */
export async function compileKernel(gpu: Gpu, spec: KernelSpec): Promise<Kernel> {
  const key = JSON.stringify(spec);
  let cache = kernelCache.get(gpu.device);
  if (!cache) kernelCache.set(gpu.device, cache = new Map());
  const cached = cache.get(key);
  if (cached) return cached;

  const source = loadShader(spec.file);
  const shader = parseShaderInterface(source);
  const entries: GPUBindGroupLayoutEntry[] = [];
  for (const name of spec.bindings) {
    const info = shader.bindings.get(name);
    if (!info) throw new GpuError(`${spec.name}: binding "${name}" is not declared in wgsl/${spec.file}.`);
    const type = BUFFER_BINDING_TYPES[info.kind];
    entries.push({ binding: info.index, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
  }
  for (const name of spec.workgroup) {
    if (spec.overrides?.[name] === undefined && !shader.overrides.has(name)) {
      throw new GpuError(`${spec.name}: workgroup size override "${name}" has no value.`);
    }
  }

  const device = gpu.device;
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code: source, label: spec.file });
  const layout = device.createBindGroupLayout({ entries, label: spec.name });
  const pipeline = device.createComputePipeline({
    label: spec.name,
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: spec.entry, constants: spec.overrides ?? {} },
  });
  const error = await device.popErrorScope();
  if (error) {
    const info = await module.getCompilationInfo();
    const detail = info.messages.map((m) => `${m.type} at ${m.lineNum}:${m.linePos}: ${m.message.trim()}`);
    throw new GpuError(
      `Kernel ${spec.name} (wgsl/${spec.file}, entry ${spec.entry}) failed to compile:\n` +
        (detail.length ? detail.join("\n") : error.message),
    );
  }
  const kernel = new Kernel(spec, shader, pipeline, layout);
  cache.set(key, kernel);
  return kernel;
}

/** A buffer binding: a whole buffer, or a byte range of one. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** Number of invocations per dimension; a single number means 1-D. */
export type Grid = number | [number, number?, number?];

const SLOT_BYTES = 256;

interface RecordedDispatch {
  kernel: Kernel;
  bindGroup?: GPUBindGroup;
  bind: Record<string, Binding>;
  params: ArrayBuffer;
  workgroups: [number, number, number];
  slot: number;
}

/** Handle to one recorded dispatch, for updating its parameters later. */
export type DispatchHandle = number;

/**
 * A recorded sequence of dispatches replayed with one submit. Record with
 * `add`, then call `submit` once per step; `update` rewrites one dispatch's
 * uniform parameters before the next submit.
 */
export class Plan {
  readonly gpu: Gpu;
  readonly label: string;
  #dispatches: RecordedDispatch[] = [];
  #uniforms: GPUBuffer | undefined;
  #dirty = new Set<number>();

  constructor(gpu: Gpu, label = "plan") {
    this.gpu = gpu;
    this.label = label;
  }

  get length(): number {
    return this.#dispatches.length;
  }

  /** Records a dispatch of `grid` invocations; the grid need not divide by the workgroup size. */
  add(kernel: Kernel, bind: Record<string, Binding>, params: Record<string, number>, grid: Grid): DispatchHandle {
    if (this.#uniforms) throw new GpuError(`Plan "${this.label}" was already submitted; record before the first submit.`);
    for (const name of kernel.spec.bindings) {
      if (name !== "params" && !bind[name]) throw new GpuError(`${kernel.spec.name}: binding "${name}" is missing.`);
    }
    for (const name of Object.keys(bind)) {
      if (!kernel.spec.bindings.includes(name)) throw new GpuError(`${kernel.spec.name}: "${name}" is not a binding of this entry.`);
    }
    const handle = this.#dispatches.length;
    this.#dispatches.push({
      kernel,
      bind,
      params: kernel.packParams(params),
      workgroups: workgroupCount(kernel, grid, this.gpu.device.limits.maxComputeWorkgroupsPerDimension),
      slot: handle,
    });
    this.#dirty.add(handle);
    return handle;
  }

  /** Replaces the parameters of a recorded dispatch; takes effect on the next submit. */
  update(handle: DispatchHandle, params: Record<string, number>): void {
    const dispatch = this.#dispatches[handle];
    dispatch.kernel.packParams(params, dispatch.params);
    this.#dirty.add(handle);
  }

  #prepare(): void {
    const device = this.gpu.device;
    if (!this.#uniforms) {
      this.#uniforms = this.gpu.uniformBuffer(Math.max(1, this.#dispatches.length) * SLOT_BYTES, `${this.label} params`);
      for (const d of this.#dispatches) {
        const entries: GPUBindGroupEntry[] = [];
        for (const name of d.kernel.spec.bindings) {
          const index = d.kernel.shader.bindings.get(name)!.index;
          if (name === "params") {
            entries.push({ binding: index, resource: { buffer: this.#uniforms, offset: d.slot * SLOT_BYTES, size: Math.max(16, d.kernel.paramsBytes) } });
            continue;
          }
          const b = d.bind[name];
          const resource = "buffer" in b && !(b instanceof GPUBuffer) ? b : { buffer: b as GPUBuffer };
          entries.push({ binding: index, resource });
        }
        d.bindGroup = device.createBindGroup({ layout: d.kernel.layout, entries, label: d.kernel.spec.name });
      }
    }
    for (const handle of this.#dirty) {
      const d = this.#dispatches[handle];
      if (d.kernel.paramsBytes > 0) device.queue.writeBuffer(this.#uniforms, d.slot * SLOT_BYTES, d.params);
    }
    this.#dirty.clear();
  }

  /** Encodes every recorded dispatch, `repeat` times in order, into `encoder`. */
  encode(encoder: GPUCommandEncoder, repeat = 1): void {
    this.#prepare();
    const pass = encoder.beginComputePass({ label: this.label });
    for (let r = 0; r < repeat; r++) {
      for (const d of this.#dispatches) {
        pass.setPipeline(d.kernel.pipeline);
        pass.setBindGroup(0, d.bindGroup!);
        pass.dispatchWorkgroups(...d.workgroups);
      }
    }
    pass.end();
  }

  /** Encodes the plan `repeat` times and submits it once. Does not wait for the GPU. */
  submit(repeat = 1): void {
    this.gpu.assertAlive();
    const encoder = this.gpu.device.createCommandEncoder({ label: this.label });
    this.encode(encoder, repeat);
    this.gpu.device.queue.submit([encoder.finish()]);
  }

  /** Releases the plan's uniform buffer. Bound buffers belong to the caller. */
  destroy(): void {
    this.gpu.release(this.#uniforms);
    this.#uniforms = undefined;
  }
}

/**
 * Converts an invocation grid to workgroup counts. A 1-D grid larger than the
 * per-dimension limit spills into y, so 1-D kernels must compute their linear
 * index as `gid.x + gid.y * nwg.x * WG` and return early past the end.
 */
export function workgroupCount(kernel: Kernel, grid: Grid, maxPerDim = 65535): [number, number, number] {
  const dims = typeof grid === "number" ? [grid, 1, 1] : [grid[0], grid[1] ?? 1, grid[2] ?? 1];
  const size = [kernel.workgroupSize[0] ?? 1, kernel.workgroupSize[1] ?? 1, kernel.workgroupSize[2] ?? 1];
  const groups = dims.map((d, i) => Math.ceil(d / size[i])) as [number, number, number];
  if (groups.some((g) => g === 0)) return [0, 0, 0];
  if (groups[0] > maxPerDim && groups[1] === 1 && groups[2] === 1) {
    const y = Math.ceil(groups[0] / maxPerDim);
    return [Math.ceil(groups[0] / y), y, 1];
  }
  if (groups.some((g) => g > maxPerDim)) {
    throw new GpuError(`${kernel.spec.name}: grid ${dims.join("x")} needs more than ${maxPerDim} workgroups per dimension.`);
  }
  return groups;
}
