// GPU device acquisition and the buffer helpers every stage shares.
//
// One `Gpu` owns one WebGPU device. It requests the adapter's real limits (the
// WebGPU defaults cap storage bindings at 128 MiB), reports a software adapter
// once on stderr, turns device loss into a `GpuDeviceLostError`, and tracks
// every buffer it creates so that `destroy()` releases them: GPU memory is
// invisible to the JavaScript garbage collector.

/** Error raised for GPU setup problems, shader failures and device loss. */
export class GpuError extends Error {
  override name = "GpuError";
}

// The subclasses keep the name "GpuError", which the CLI maps to exit code 4.

/**
 * Error raised when the device cannot allocate a buffer, reported by WebGPU
 * through an "out-of-memory" error scope or by the `Gpu.memoryLimit` check.
 */
export class GpuOutOfMemoryError extends GpuError {
  /** Bytes of the allocation that failed; NaN when WebGPU reports no size. */
  readonly bytes: number;
  /** Cause as a clause: WebGPU's message, or the buffer that would exceed `Gpu.memoryLimit`. */
  readonly detail: string;

  constructor(what: string, failure: { detail: string; bytes?: number }) {
    super(`Out of GPU memory allocating ${what}: ${failure.detail}.`);
    this.bytes = failure.bytes ?? NaN;
    this.detail = failure.detail;
  }
}

/** Error raised when the GPU device is lost: driver reset, GPU removed or `device.destroy()`. */
export class GpuDeviceLostError extends GpuError {
  /** Reason and message of WebGPU's `GPUDeviceLostInfo`. */
  readonly reason: string;
  /** Description of the interrupted work, e.g. "while fitting images 5-8 of 20". */
  readonly context: string | undefined;
  /** Sentence for the user, e.g. what was saved and how to resume. */
  readonly note: string | undefined;

  constructor(reason: string, details: { context?: string; note?: string } = {}) {
    const context = details.context ? ` ${details.context}` : "";
    const note = details.note ? ` ${details.note}` : "";
    super(`The GPU device was lost${context}: ${reason}.${note}`);
    this.reason = reason;
    this.context = details.context;
    this.note = details.note;
  }

  /** Returns this error with `context` added, unless it already has one. */
  during(context: string): GpuDeviceLostError {
    if (this.context) return this;
    return new GpuDeviceLostError(this.reason, { context, note: this.note });
  }

  /** Returns this error with `note` as its last sentence. */
  withNote(note: string): GpuDeviceLostError {
    return new GpuDeviceLostError(this.reason, { context: this.context, note });
  }
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
  /**
   * Bytes that tracked buffers may hold together; a larger allocation fails
   * with a `GpuOutOfMemoryError`, as it would on a full device. WebGPU does
   * not report how much memory a device has, so the default is Infinity.
   * Tests lower it to inject out-of-memory faults.
   */
  memoryLimit = Infinity;
  #buffers = new Set<GPUBuffer>();
  #allocatedBytes = 0;
  #closed = false;

  private constructor(device: GPUDevice, adapterName: string, isSoftware: boolean) {
    this.device = device;
    this.adapterName = adapterName;
    this.isSoftware = isSoftware;
    this.features = new Set(device.features as unknown as Iterable<string>);
    // Only our own `destroy()` is a normal end. Anyone else destroying the
    // device (reason "destroyed") loses it just as a driver reset does.
    device.lost.then((info) => {
      if (this.#closed) return;
      this.lostReason = info.message ? `${info.message} (reason "${info.reason}")` : `reason "${info.reason}"`;
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

  /** Bytes held by the tracked buffers. */
  get allocatedBytes(): number {
    return this.#allocatedBytes;
  }

  /** Creates a tracked storage buffer of `bytes` (rounded up to 4), filled with `data` if given. */
  buffer(bytes: number, label: string, data?: ArrayBufferView): GPUBuffer {
    this.checkBindingSize(bytes, label);
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    this.#checkMemoryLimit(size, label);
    const buffer = this.device.createBuffer({ size, usage: STORAGE, label });
    if (data) this.write(buffer, data);
    this.#track(buffer);
    return buffer;
  }

  /** Creates a tracked uniform buffer of `bytes`. */
  uniformBuffer(bytes: number, label: string): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    this.#checkMemoryLimit(size, label);
    const usage = GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST;
    const buffer = this.device.createBuffer({ size, usage, label });
    this.#track(buffer);
    return buffer;
  }

  #track(buffer: GPUBuffer): void {
    this.#buffers.add(buffer);
    this.#allocatedBytes += buffer.size;
  }

  #checkMemoryLimit(size: number, label: string): void {
    if (this.#allocatedBytes + size <= this.memoryLimit) return;
    throw new GpuOutOfMemoryError("a buffer", {
      detail: `"${label}" needs ${size} bytes, but ${this.#allocatedBytes} of the ${this.memoryLimit} ` +
        "bytes allowed by Gpu.memoryLimit are in use",
      bytes: size,
    });
  }

  /**
   * Runs `create` inside an "out-of-memory" error scope and returns its result.
   * WebGPU reports a failed allocation only through such a scope, and the
   * buffer it returns instead is invalid. When the scope catches an error or
   * `create` throws a `GpuOutOfMemoryError`, this destroys whatever `create`
   * returned and throws a `GpuOutOfMemoryError` that names `what`.
   */
  async allocate<T extends { destroy(): void }>(
    what: string,
    create: () => T | Promise<T>,
  ): Promise<T> {
    this.device.pushErrorScope("out-of-memory");
    let value: T | undefined;
    let failed = false;
    let failure: unknown;
    try {
      value = await create();
    } catch (error) {
      failed = true;
      failure = error;
    }
    const scopeError = await this.device.popErrorScope();
    if (scopeError) {
      value?.destroy();
      throw new GpuOutOfMemoryError(what, { detail: scopeError.message.replace(/\.$/, "") });
    }
    if (failure instanceof GpuOutOfMemoryError) {
      throw new GpuOutOfMemoryError(what, { detail: failure.detail, bytes: failure.bytes });
    }
    if (failed) throw failure;
    return value as T;
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
    if (this.#buffers.delete(buffer)) this.#allocatedBytes -= buffer.size;
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
      staging.destroy();
      // On a lost device the map fails with a validation error a few
      // milliseconds before `device.lost` resolves (measured on Deno 2.9 with
      // llvmpipe), so wait briefly to report the loss instead.
      await this.#waitForLoss(LOSS_WAIT_MS);
      this.assertAlive();
      throw new GpuError(`Reading back "${buffer.label}" failed: ${(error as Error).message}`);
    }
    // NOTE: Deno 2.9 resolves a map that was pending when the device was
    // destroyed, so the data may be garbage when the loss is not yet known here.
    this.assertAlive();
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

  /** Throws a `GpuDeviceLostError` when the device has been lost. */
  assertAlive(): void {
    if (this.lostReason !== undefined) throw new GpuDeviceLostError(this.lostReason);
  }

  // Resolves when the device is lost or after `ms` milliseconds, whichever is first.
  async #waitForLoss(ms: number): Promise<void> {
    if (this.lostReason !== undefined) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => timer = setTimeout(resolve, ms));
    await Promise.race([this.device.lost, timeout]);
    // The constructor's handler on `device.lost` was registered first, so it
    // has set `lostReason` by now.
    clearTimeout(timer);
  }

  /** Destroys every tracked buffer and the device. */
  destroy(): void {
    this.#closed = true;
    for (const buffer of this.#buffers) buffer.destroy();
    this.#buffers.clear();
    this.#allocatedBytes = 0;
    this.device.destroy();
  }
}

// Maximum wait for `device.lost` after a failed readback, in milliseconds.
const LOSS_WAIT_MS = 1000;

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
