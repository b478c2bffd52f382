// GPU device acquisition and the buffer helpers every stage shares.
//
// One `Gpu` owns one WebGPU device. It requests the adapter's real limits (the
// WebGPU defaults cap storage bindings at 128 MiB), reports a software adapter
// once on stderr, turns device loss into a `GpuError`, and tracks every buffer
// it creates so that `destroy()` releases them: GPU memory is invisible to the
// JavaScript garbage collector.

/** Error raised for GPU setup problems, shader failures and device loss. */
export class GpuError extends Error {
  override name = "GpuError";
}

/** Options for {@linkcode Gpu.create}. */
export interface GpuOptions {
  /** Optional features to enable when the adapter has them. Default: none. */
  optionalFeatures?: GPUFeatureName[];
  /** Print the software-adapter notice on stderr. Default: true. */
  notice?: boolean;
}

let noticePrinted = false;

/** Storage usage for buffers the kernels read and write. */
export const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** A WebGPU device with buffer tracking, readback and error reporting. */
export class Gpu {
  readonly device: GPUDevice;
  readonly adapterName: string;
  readonly isSoftware: boolean;
  readonly features: ReadonlySet<string>;
  /** Set once the device is lost; checked before every submit. */
  lostReason: string | undefined;
  #buffers = new Set<GPUBuffer>();

  private constructor(device: GPUDevice, adapterName: string, isSoftware: boolean) {
    this.device = device;
    this.adapterName = adapterName;
    this.isSoftware = isSoftware;
    this.features = new Set(device.features as unknown as Iterable<string>);
    device.lost.then((info) => {
      if (info.reason !== "destroyed") this.lostReason = info.message || info.reason;
    });
  }

  /** Requests an adapter and a device with the adapter's full limits. */
  static async create(options: GpuOptions = {}): Promise<Gpu> {
    if (!("gpu" in navigator) || !navigator.gpu) {
      throw new GpuError(
        "WebGPU is not available in this Deno build. Use Deno 2.x and run with the default flags.",
      );
    }
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) {
      throw new GpuError(
        "No GPU adapter found. Install a Vulkan, Metal or D3D12 driver; on Linux without a GPU, " +
          "install mesa-vulkan-drivers and set DENO_WEBGPU_BACKEND=vulkan to use the software adapter.",
      );
    }
    const info = adapter.info;
    const adapterName = info.description || info.device || info.vendor || "unknown adapter";
    const isSoftware = info.isFallbackAdapter === true || /llvmpipe|swiftshader|lavapipe|warp/i
      .test(adapterName);
    if (isSoftware && options.notice !== false && !noticePrinted) {
      noticePrinted = true;
      console.error(`rapid-inr: using the software GPU adapter "${adapterName}"; expect slow runs.`);
    }

    const requiredLimits: Record<string, number> = {};
    for (const key of LIMIT_KEYS) {
      const value = (adapter.limits as unknown as Record<string, number>)[key];
      if (typeof value === "number") requiredLimits[key] = value;
    }
    const requiredFeatures = (options.optionalFeatures ?? []).filter((f) => adapter.features.has(f));
    const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
    return new Gpu(device, adapterName, isSoftware);
  }

  /** Throws a `GpuError` if a buffer of `bytes` cannot be bound as one storage binding. */
  checkBindingSize(bytes: number, what: string): void {
    const max = this.device.limits.maxStorageBufferBindingSize;
    if (bytes > max) {
      throw new GpuError(
        `${what} needs ${bytes} bytes in one storage binding, but the adapter allows ${max}. ` +
          "Use a smaller batch size.",
      );
    }
  }

  /** Creates a tracked storage buffer of `bytes` (rounded up to 4), filled with `data` if given. */
  buffer(bytes: number, label: string, data?: ArrayBufferView): GPUBuffer {
    this.checkBindingSize(bytes, label);
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const buffer = this.device.createBuffer({ size, usage: STORAGE, label });
    if (data) this.write(buffer, data);
    this.#buffers.add(buffer);
    return buffer;
  }

  /** Creates a tracked uniform buffer of `bytes`. */
  uniformBuffer(bytes: number, label: string): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const usage = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
    const buffer = this.device.createBuffer({ size, usage, label });
    this.#buffers.add(buffer);
    return buffer;
  }

  /** Writes `data` into `buffer` at `offset` bytes; pads the copy to a multiple of 4 bytes. */
  write(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    let bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    this.device.queue.writeBuffer(buffer, offset, bytes);
  }

  /** Destroys one tracked buffer now. */
  release(buffer: GPUBuffer | undefined): void {
    if (!buffer) return;
    buffer.destroy();
    this.#buffers.delete(buffer);
  }

  /** Copies `bytes` from `buffer` at `offset` to the CPU. Each call waits for the GPU (~11 ms). */
  async read(buffer: GPUBuffer, bytes = buffer.size, offset = 0): Promise<ArrayBuffer> {
    this.assertAlive();
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({
      size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "readback",
    });
    const encoder = this.device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, offset, staging, 0, size);
    this.device.queue.submit([encoder.finish()]);
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (error) {
      this.assertAlive();
      throw new GpuError(`Reading back "${buffer.label}" failed: ${(error as Error).message}`);
    }
    const copy = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    return copy;
  }

  /** Reads `count` f32 values starting at element `first`. */
  async readF32(buffer: GPUBuffer, count?: number, first = 0): Promise<Float32Array> {
    const n = count ?? buffer.size / 4 - first;
    return new Float32Array(await this.read(buffer, n * 4, first * 4));
  }

  /** Reads `count` u32 values starting at element `first`. */
  async readU32(buffer: GPUBuffer, count?: number, first = 0): Promise<Uint32Array> {
    const n = count ?? buffer.size / 4 - first;
    return new Uint32Array(await this.read(buffer, n * 4, first * 4));
  }

  /** Waits until all submitted work has finished and throws if the device was lost. */
  async finish(): Promise<void> {
    await this.device.queue.onSubmittedWorkDone();
    this.assertAlive();
  }

  /** Throws a `GpuError` when the device has been lost. */
  assertAlive(): void {
    if (this.lostReason !== undefined) {
      throw new GpuError(`The GPU device was lost: ${this.lostReason}`);
    }
  }

  /** Destroys every tracked buffer and the device. */
  destroy(): void {
    for (const buffer of this.#buffers) buffer.destroy();
    this.#buffers.clear();
    this.device.destroy();
  }
}

// Limits worth raising above the WebGPU defaults for large batches.
const LIMIT_KEYS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxBindingsPerBindGroup",
  "maxUniformBufferBindingSize",
];
