// GPU state and dispatch plans for fitting a batch of SIRENs at once.
//
// Every image has its own weights, Adam moments and best weights. One
// iteration is five dispatches (wgsl/siren.wgsl, siren_grad.wgsl,
// siren_fit.wgsl): forward and backward per quad of 4 pixels, weight
// gradients reduced over the pixels, PSNR and best-weight copy, Adam, step
// counter. The step
// counter and the learning-rate schedule live on the GPU, so `run(k)` records
// k iterations into one submit and reads nothing back.
//
// With `quantization` set, the batch fine-tunes for compression: Adam updates
// latent f32 weights, and each iteration first projects them onto the
// quantization grid and the pruning mask (wgsl/siren_quant.wgsl). The forward
// pass thus uses the values the compressed file will decode to. The gradient
// with respect to the projected weights updates the latent ones unchanged
// (the straight-through estimator).

import { type Gpu, GpuError } from "../gpu/device.ts";
import { compileKernel, type Kernel, Plan } from "../gpu/kernel.ts";
import { resolveLayerBits } from "./quantize.ts";
import { type SirenArch, sirenLayers, sirenParamCount } from "./siren.ts";

/** Widest SIREN layer the kernels support (register arrays in wgsl/siren.wgsl). */
export const MAX_SIREN_WIDTH = 64;
/** Largest register tile side of the gradient kernel (wgsl/siren_grad.wgsl). */
export const MAX_TILE_SIDE = 8;

/** Adam hyperparameters, as in PyTorch's `torch.optim.Adam`. */
export interface AdamSettings {
  /** First-moment decay. Default 0.9. */
  beta1: number;
  /** Second-moment decay. Default 0.999. */
  beta2: number;
  /** Added to the denominator. Default 1e-8. */
  epsilon: number;
}

/** Default Adam hyperparameters. */
export const ADAM_DEFAULTS: Readonly<AdamSettings> = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };

/** Workgroup and tile sizes. They change results only through the float32 summation order. */
export interface SirenTuning {
  /** Invocations per workgroup of the forward/backward kernel (4 pixels each). Default 64. */
  pixelWorkgroup: number;
  /** Invocations per workgroup of the gradient reduction. Default 64. */
  gradWorkgroup: number;
  /** Output rows per register tile of the gradient reduction, 1..8. Default 4. */
  tileRows: number;
  /** Input columns per register tile of the gradient reduction, 1..8. Default 4. */
  tileCols: number;
  /**
   * Pixels one gradient workgroup reduces, rounded up to a multiple of 4.
   * Images with more pixels are split into chunks that run in parallel and
   * are summed by the Adam kernel. Default 16384: 4 chunks at 224 px, so one
   * invocation of a 64-wide workgroup sums at most 64 quads.
   */
  chunkPixels: number;
}

/** Default tuning. */
export const TUNING_DEFAULTS: Readonly<SirenTuning> = {
  pixelWorkgroup: 64,
  gradWorkgroup: 64,
  tileRows: 4,
  tileCols: 4,
  chunkPixels: 16384,
};

/** Settings of a {@linkcode SirenFitBatch}. */
export interface SirenFitSettings {
  arch: SirenArch;
  /** Image side R in pixels; images are R x R. */
  side: number;
  /** Images the buffers hold. */
  capacity: number;
  /** Iterations of the cosine learning-rate schedule. */
  iterations: number;
  /** Initial learning rate; decays to 0 over `iterations`. */
  learningRate: number;
  adam?: Partial<AdamSettings>;
  tuning?: Partial<SirenTuning>;
  /**
   * Quantization-aware fitting with these bit widths, one per layer (1..16,
   * or 32 for a layer kept in f32). Default: plain f32 fitting.
   */
  quantization?: { bits: readonly number[] };
}

/** Bytes of GPU memory per image, per buffer, for a fitting batch. */
export interface SirenImageBytes {
  /** Sine-layer activations [S*D][P4] f32, P4 = P rounded up to a multiple of 4. */
  act: number;
  /** Gradients with respect to the pre-activations [S*D + 3][P4] f32. */
  delta: number;
  /** Every buffer together. */
  total: number;
}

/** Returns the per-image GPU memory of a fitting batch. */
export function sirenImageBytes(
  settings: { arch: SirenArch; side: number; tuning?: Partial<SirenTuning>; quantization?: unknown },
): SirenImageBytes {
  const pixels = settings.side * settings.side;
  const paddedPixels = 4 * Math.ceil(pixels / 4);
  const rows = settings.arch.sineLayers * settings.arch.width;
  const q = sirenParamCount(settings.arch);
  const chunks = gradientChunks(pixels, resolveTuning(settings.tuning));
  const act = rows * paddedPixels * 4;
  const delta = (rows + 3) * paddedPixels * 4;
  // Also per image: target and sqerr per pixel, then theta, best, m, v and the
  // gradient partials per parameter, then the score.
  // Quantization-aware fitting adds the latent weights and the mask.
  const small = (pixels + paddedPixels) * 4 + (4 + chunks + (settings.quantization ? 2 : 0)) * q * 4 + 8;
  return { act, delta, total: act + delta + small };
}

/**
 * Returns the most images one batch can hold on `gpu`: every buffer must fit
 * one storage binding, and all of them together `memoryBytes`. Throws a
 * `GpuError` when not even one image fits.
 */
export function maxBatchImages(
  gpu: Gpu,
  settings: {
    arch: SirenArch;
    side: number;
    memoryBytes: number;
    tuning?: Partial<SirenTuning>;
    quantization?: unknown;
  },
): number {
  const limits = gpu.device.limits;
  const maxBinding = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const bytes = sirenImageBytes(settings);
  const byBinding = Math.floor(maxBinding / bytes.delta);
  const byMemory = Math.floor(settings.memoryBytes / bytes.total);
  const images = Math.min(byBinding, byMemory, limits.maxComputeWorkgroupsPerDimension);
  if (images < 1) {
    const { sineLayers, width } = settings.arch;
    throw new GpuError(
      `One ${settings.side}x${settings.side} image with ${sineLayers} sine layers of width ${width} ` +
        `needs ${bytes.delta} bytes of gradients in one storage binding and ${bytes.total} bytes in all, ` +
        `but the adapter allows ${maxBinding} per binding and the memory budget is ${settings.memoryBytes}. ` +
        "Use a smaller image side, fewer or narrower layers, or a larger memory budget.",
    );
  }
  return images;
}

// Pixel chunks of the gradient reduction; chunks hold whole quads of 4 pixels.
function gradientChunks(pixels: number, tuning: SirenTuning): number {
  return Math.ceil(Math.ceil(pixels / 4) / chunkQuads(tuning));
}

function chunkQuads(tuning: SirenTuning): number {
  return Math.ceil(tuning.chunkPixels / 4);
}

function resolveTuning(tuning: Partial<SirenTuning> = {}): SirenTuning {
  const resolved = { ...TUNING_DEFAULTS, ...tuning };
  for (const [name, value] of Object.entries(resolved)) {
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`SIREN tuning ${name} must be a positive integer, got ${value}.`);
    }
  }
  for (const name of ["tileRows", "tileCols"] as const) {
    if (resolved[name] > MAX_TILE_SIDE) {
      throw new RangeError(
        `SIREN tuning ${name} must be at most ${MAX_TILE_SIDE}, got ${resolved[name]}.`,
      );
    }
  }
  return resolved;
}

/**
 * Returns per-step Adam factors (lr_t / (1 - beta1^(t+1)), 1 / sqrt(1 -
 * beta2^(t+1))) for t = 0 .. iterations - 1, with the cosine schedule
 * lr_t = lr * (1 + cos(pi t / iterations)) / 2 of PyTorch's CosineAnnealingLR.
 */
export function adamSchedule(
  settings: { iterations: number; learningRate: number; adam?: Partial<AdamSettings> },
): Float32Array {
  const { beta1, beta2 } = { ...ADAM_DEFAULTS, ...settings.adam };
  const table = new Float32Array(2 * settings.iterations);
  for (let t = 0; t < settings.iterations; t++) {
    const lr = settings.learningRate * (1 + Math.cos(Math.PI * t / settings.iterations)) / 2;
    table[2 * t] = lr / (1 - beta1 ** (t + 1));
    table[2 * t + 1] = 1 / Math.sqrt(1 - beta2 ** (t + 1));
  }
  return table;
}

/** Returns the register tiles (layer, first row, first column, 0) of the gradient kernel. */
export function gradientTiles(
  arch: SirenArch,
  tuning: { tileRows: number; tileCols: number },
): Uint32Array {
  const tiles: number[] = [];
  for (const layer of sirenLayers(arch)) {
    for (let row = 0; row < layer.outputs; row += tuning.tileRows) {
      // Column `inputs` is the bias.
      for (let col = 0; col <= layer.inputs; col += tuning.tileCols) {
        tiles.push(layer.index, row, col, 0);
      }
    }
  }
  return new Uint32Array(tiles);
}

interface SirenKernels {
  forwardBackward: Kernel;
  render: Kernel;
  weightGrad: Kernel;
  scoreBest: Kernel;
  adam: Kernel;
  advance: Kernel;
  project?: Kernel;
}

async function compileSirenKernels(
  gpu: Gpu,
  arch: SirenArch,
  tuning: SirenTuning,
  quantized: boolean,
): Promise<SirenKernels> {
  const shape = { SINE_LAYERS: arch.sineLayers, WIDTH: arch.width };
  const pixel = { ...shape, W0: arch.w0, WG: tuning.pixelWorkgroup };
  const pixelBindings = ["params", "theta", "target_rgba", "act", "delta", "sqerr"];
  const grad = {
    ...shape,
    WG: tuning.gradWorkgroup,
    TILE_ROWS: tuning.tileRows,
    TILE_COLS: tuning.tileCols,
  };
  const [forwardBackward, render, weightGrad, scoreBest, adam, advance] = await Promise.all([
    compileKernel(gpu, {
      name: "siren.forward_backward",
      file: "siren.wgsl",
      entry: "forward_backward",
      bindings: pixelBindings,
      workgroup: ["WG"],
      overrides: pixel,
    }),
    compileKernel(gpu, {
      name: "siren.render",
      file: "siren.wgsl",
      entry: "render",
      bindings: ["params", "theta", "rgb"],
      workgroup: ["WG"],
      overrides: pixel,
    }),
    compileKernel(gpu, {
      name: "siren_grad.weight_grad",
      file: "siren_grad.wgsl",
      entry: "weight_grad",
      bindings: ["params", "tiles", "act", "delta", "grad_part"],
      workgroup: ["WG"],
      overrides: grad,
    }),
    compileKernel(gpu, {
      name: "siren_fit.score_best",
      file: "siren_fit.wgsl",
      entry: "score_best",
      bindings: ["params", "sqerr", "score", "theta", "best_theta"],
      workgroup: ["WG"],
    }),
    compileKernel(gpu, {
      name: "siren_fit.adam",
      file: "siren_fit.wgsl",
      entry: "adam",
      bindings: ["params", "theta", "grad_part", "moment1", "moment2", "schedule", "counter"],
      workgroup: ["WG"],
    }),
    compileKernel(gpu, {
      name: "siren_fit.advance",
      file: "siren_fit.wgsl",
      entry: "advance",
      bindings: ["counter"],
      workgroup: [],
    }),
  ]);
  const project = quantized
    ? await compileKernel(gpu, {
      name: "siren_quant.project",
      file: "siren_quant.wgsl",
      entry: "project",
      bindings: ["params", "layers", "mask", "latent", "theta"],
      workgroup: ["WG"],
    })
    : undefined;
  return { forwardBackward, render, weightGrad, scoreBest, adam, advance, project };
}

/** PSNR per image in dB, read from the GPU. */
export interface SirenScores {
  /** PSNR of the latest evaluated weights, one per loaded image. */
  latest: Float32Array;
  /** Best PSNR so far, one per loaded image; the weights of `readBestWeights`. */
  best: Float32Array;
}

/**
 * Buffers, kernels and plans for fitting up to `capacity` SIRENs together.
 * Call `load`, then `run` until `iterations` steps are done, then read.
 */
export class SirenFitBatch {
  readonly gpu: Gpu;
  readonly arch: SirenArch;
  readonly side: number;
  readonly capacity: number;
  readonly iterations: number;
  /** Q, parameters per image. */
  readonly paramCount: number;
  /** Pixel chunks per image in the gradient reduction. */
  readonly chunks: number;
  /** Bit widths of quantization-aware fitting, or undefined for plain f32 fitting. */
  readonly quantizationBits: readonly number[] | undefined;
  #kernels: SirenKernels;
  #tuning: SirenTuning;
  #adam: AdamSettings;
  #buffers: Record<string, GPUBuffer>;
  #tileCount: number;
  #count = 0;
  #stepsDone = 0;
  #plans: Plan[] = [];
  #iterationPlan: Plan | undefined;
  #gradientPlan: Plan | undefined;

  private constructor(
    gpu: Gpu,
    settings: SirenFitSettings,
    kernels: SirenKernels,
    tuning: SirenTuning,
  ) {
    this.gpu = gpu;
    this.arch = settings.arch;
    this.side = settings.side;
    this.capacity = settings.capacity;
    this.iterations = settings.iterations;
    this.paramCount = sirenParamCount(settings.arch);
    this.#kernels = kernels;
    this.#tuning = tuning;
    this.#adam = { ...ADAM_DEFAULTS, ...settings.adam };
    this.quantizationBits = settings.quantization ? [...settings.quantization.bits] : undefined;
    const pixels = settings.side * settings.side;
    this.chunks = gradientChunks(pixels, tuning);

    const tiles = gradientTiles(settings.arch, tuning);
    this.#tileCount = tiles.length / 4;
    const maxGroups = gpu.device.limits.maxComputeWorkgroupsPerDimension;
    if (this.#tileCount * this.chunks > maxGroups) {
      throw new GpuError(
        `The gradient reduction needs ${
          this.#tileCount * this.chunks
        } workgroups per image, more than ` +
          `the adapter's ${maxGroups}. Raise tuning.chunkPixels or the tile sizes.`,
      );
    }

    const n = settings.capacity;
    const q = this.paramCount;
    const bytes = sirenImageBytes(settings);
    const buffers: Record<string, GPUBuffer> = {};
    try {
      buffers.act = gpu.buffer(n * bytes.act, "siren act");
      buffers.delta = gpu.buffer(n * bytes.delta, "siren delta");
      buffers.target = gpu.buffer(n * pixels * 4, "siren target");
      buffers.sqerr = gpu.buffer(n * 4 * Math.ceil(pixels / 4) * 4, "siren sqerr");
      buffers.theta = gpu.buffer(n * q * 4, "siren theta");
      buffers.bestTheta = gpu.buffer(n * q * 4, "siren best theta");
      buffers.moment1 = gpu.buffer(n * q * 4, "siren adam m");
      buffers.moment2 = gpu.buffer(n * q * 4, "siren adam v");
      buffers.gradPart = gpu.buffer(n * this.chunks * q * 4, "siren gradient partials");
      buffers.score = gpu.buffer(n * 2 * 4, "siren score");
      buffers.counter = gpu.buffer(4, "siren step counter");
      buffers.tiles = gpu.buffer(tiles.byteLength, "siren gradient tiles", tiles);
      buffers.schedule = gpu.buffer(
        settings.iterations * 8,
        "siren schedule",
        adamSchedule({ ...settings, adam: this.#adam }),
      );
      if (this.quantizationBits) {
        // theta contains the projected weights the forward pass reads, and latent the ones Adam updates.
        buffers.latent = gpu.buffer(n * q * 4, "siren latent theta");
        buffers.mask = gpu.buffer(n * q * 4, "siren pruning mask");
        const layers = sirenLayers(settings.arch).flatMap((layer, l) => [
          layer.weightOffset,
          layer.outputs * (layer.inputs + 1),
          this.quantizationBits![l],
          0,
        ]);
        buffers.quantLayers = gpu.buffer(layers.length * 4, "siren quantization layers", new Uint32Array(layers));
      }
    } catch (error) {
      for (const buffer of Object.values(buffers)) gpu.release(buffer);
      throw error;
    }
    this.#buffers = buffers;
  }

  /** Validates `settings`, compiles the kernels and allocates the buffers. */
  static async create(gpu: Gpu, settings: SirenFitSettings): Promise<SirenFitBatch> {
    const { arch } = settings;
    sirenLayers(arch);
    if (arch.width > MAX_SIREN_WIDTH) {
      throw new RangeError(
        `SIREN width ${arch.width} is above the GPU kernels' limit of ${MAX_SIREN_WIDTH}. Use a width of at most ${MAX_SIREN_WIDTH}.`,
      );
    }
    if (!Number.isFinite(arch.w0) || arch.w0 <= 0) {
      throw new RangeError(`SIREN w0 must be a positive number, got ${arch.w0}.`);
    }
    for (const name of ["side", "capacity", "iterations"] as const) {
      if (!Number.isInteger(settings[name]) || settings[name] < 1) {
        throw new RangeError(
          `SIREN fit ${name} must be a positive integer, got ${settings[name]}.`,
        );
      }
    }
    if (!(settings.learningRate > 0) || !Number.isFinite(settings.learningRate)) {
      throw new RangeError(
        `Learning rate must be a positive number, got ${settings.learningRate}.`,
      );
    }
    const tuning = resolveTuning(settings.tuning);
    const limits = gpu.device.limits;
    for (const name of ["pixelWorkgroup", "gradWorkgroup"] as const) {
      if (tuning[name] > limits.maxComputeInvocationsPerWorkgroup) {
        throw new RangeError(
          `SIREN tuning ${name} is ${
            tuning[name]
          }, above the adapter's ${limits.maxComputeInvocationsPerWorkgroup} invocations per workgroup.`,
        );
      }
    }
    const sharedBytes = tuning.gradWorkgroup * tuning.tileRows * tuning.tileCols * 4;
    if (sharedBytes > limits.maxComputeWorkgroupStorageSize) {
      throw new RangeError(
        `The gradient reduction needs ${sharedBytes} bytes of workgroup memory (gradWorkgroup x tileRows x ` +
          `tileCols x 4), above the adapter's ${limits.maxComputeWorkgroupStorageSize}. Use smaller tiles or workgroups.`,
      );
    }
    const pixelGroups = Math.ceil((settings.side * settings.side) / 4 / tuning.pixelWorkgroup);
    if (pixelGroups > limits.maxComputeWorkgroupsPerDimension) {
      throw new RangeError(
        `Image side ${settings.side} needs ${pixelGroups} workgroups per image, more than the adapter allows. ` +
          "Raise tuning.pixelWorkgroup or use smaller images.",
      );
    }
    if (settings.quantization) resolveLayerBits(arch, settings.quantization.bits);
    const kernels = await compileSirenKernels(gpu, arch, tuning, settings.quantization !== undefined);
    return new SirenFitBatch(gpu, settings, kernels, tuning);
  }

  /** Images loaded by the last `load`. */
  get count(): number {
    return this.#count;
  }

  /** Adam steps taken since the last `load`. */
  get stepsDone(): number {
    return this.#stepsDone;
  }

  /**
   * Loads images (u8 RGB, [count][R][R][3]) and their initial weights
   * ([count][Q]), and resets the moments, the best PSNR and the step counter.
   * `mask` ([count][Q], 0 prunes) applies to quantization-aware fitting only;
   * by default every weight is kept.
   */
  load(input: { images: Uint8Array; weights: Float32Array; mask?: Uint8Array }): void {
    const pixels = this.side * this.side;
    const count = input.weights.length / this.paramCount;
    if (!Number.isInteger(count) || count < 1 || count > this.capacity) {
      throw new RangeError(
        `Initial weights have ${input.weights.length} floats; expected 1..${this.capacity} images of ${this.paramCount}.`,
      );
    }
    if (input.images.length !== count * pixels * 3) {
      throw new RangeError(
        `Images have ${input.images.length} bytes; expected ${count} x ${this.side} x ${this.side} x 3 = ${
          count * pixels * 3
        }.`,
      );
    }

    const packed = new Uint32Array(count * pixels);
    const rgb = input.images;
    for (let i = 0; i < packed.length; i++) {
      packed[i] = rgb[3 * i] | (rgb[3 * i + 1] << 8) | (rgb[3 * i + 2] << 16);
    }

    if (input.mask && (!this.quantizationBits || input.mask.length !== input.weights.length)) {
      throw new RangeError(
        this.quantizationBits
          ? `The pruning mask has ${input.mask.length} entries; expected one per weight, ${input.weights.length}.`
          : "A pruning mask needs a batch created with quantization settings.",
      );
    }

    const b = this.#buffers;
    const gpu = this.gpu;
    gpu.write(b.target, packed);
    gpu.write(b.theta, input.weights);
    gpu.write(b.bestTheta, input.weights);
    if (this.quantizationBits) {
      gpu.write(b.latent, input.weights);
      const mask = new Uint32Array(input.weights.length).fill(1);
      if (input.mask) mask.set(input.mask);
      gpu.write(b.mask, mask);
    }
    const zeros = new Float32Array(count * this.paramCount);
    gpu.write(b.moment1, zeros);
    gpu.write(b.moment2, zeros);
    // (latest, best) per image; the lowest float32 makes the first PSNR the best.
    const score = new Float32Array(2 * count);
    for (let i = 0; i < count; i++) score[2 * i + 1] = -3.4e38;
    gpu.write(b.score, score);
    gpu.write(b.counter, new Uint32Array(1));

    this.#stepsDone = 0;
    if (count !== this.#count) {
      this.#destroyPlans();
      this.#count = count;
    }
  }

  /** Records `steps` iterations into one submit; does not wait for the GPU. */
  run(steps: number): void {
    this.#requireLoaded();
    if (!Number.isInteger(steps) || steps < 1 || this.#stepsDone + steps > this.iterations) {
      throw new RangeError(
        `Cannot run ${steps} more steps: ${this.#stepsDone} of ${this.iterations} are done.`,
      );
    }
    this.#iterationPlan ??= this.#buildPlan("siren iteration", true);
    this.#iterationPlan.submit(steps);
    this.#stepsDone += steps;
  }

  /** Returns the PSNR of every loaded image. One readback. */
  async readScores(): Promise<SirenScores> {
    this.#requireLoaded();
    const score = await this.gpu.readF32(this.#buffers.score, 2 * this.#count);
    const latest = new Float32Array(this.#count);
    const best = new Float32Array(this.#count);
    for (let i = 0; i < this.#count; i++) {
      latest[i] = score[2 * i];
      best[i] = score[2 * i + 1];
    }
    return { latest, best };
  }

  /** Returns the weights with the best PSNR, [count][Q]. */
  readBestWeights(): Promise<Float32Array> {
    this.#requireLoaded();
    return this.gpu.readF32(this.#buffers.bestTheta, this.#count * this.paramCount);
  }

  /**
   * Returns the current weights, [count][Q]: the latent weights when fitting
   * is quantization-aware.
   */
  readWeights(): Promise<Float32Array> {
    this.#requireLoaded();
    return this.gpu.readF32(this.#latentBuffer(), this.#count * this.paramCount);
  }

  /**
   * Returns the weights the forward pass saw last, [count][Q]: after quantization-aware
   * fitting, the latent weights projected onto the grid and the mask.
   */
  readProjectedWeights(): Promise<Float32Array> {
    this.#requireLoaded();
    return this.gpu.readF32(this.#buffers.theta, this.#count * this.paramCount);
  }

  /**
   * Returns the gradient of each image's MSE with respect to its current
   * weights, [count][Q], without updating anything. For tests and debugging.
   */
  async computeGradient(): Promise<Float32Array> {
    this.#requireLoaded();
    this.#gradientPlan ??= this.#buildPlan("siren gradient", false);
    this.#gradientPlan.submit();
    const q = this.paramCount;
    const parts = await this.gpu.readF32(this.#buffers.gradPart, this.#count * this.chunks * q);
    const gradient = new Float32Array(this.#count * q);
    for (let n = 0; n < this.#count; n++) {
      for (let c = 0; c < this.chunks; c++) {
        const from = (n * this.chunks + c) * q;
        for (let i = 0; i < q; i++) gradient[n * q + i] += parts[from + i];
      }
    }
    return gradient;
  }

  /** Evaluates the current weights at every pixel; returns RGB [count][P][3], not clamped. */
  async render(): Promise<Float32Array> {
    this.#requireLoaded();
    const pixels = this.side * this.side;
    const rgb = this.gpu.buffer(this.#count * pixels * 3 * 4, "siren rgb");
    const plan = new Plan(this.gpu, "siren render");
    try {
      this.#addProjection(plan);
      plan.add(
        this.#kernels.render,
        { theta: this.#buffers.theta, rgb },
        { images: this.#count, side: this.side },
        [Math.ceil(pixels / 4), this.#count],
      );
      plan.submit();
      return await this.gpu.readF32(rgb, this.#count * pixels * 3);
    } finally {
      plan.destroy();
      this.gpu.release(rgb);
    }
  }

  /** Releases every buffer and plan of the batch. */
  destroy(): void {
    this.#destroyPlans();
    for (const buffer of Object.values(this.#buffers)) this.gpu.release(buffer);
    this.#buffers = {};
  }

  #requireLoaded(): void {
    if (this.#count === 0) {
      throw new GpuError("SirenFitBatch: call load() before running or reading.");
    }
  }

  #destroyPlans(): void {
    for (const plan of this.#plans) plan.destroy();
    this.#plans = [];
    this.#iterationPlan = undefined;
    this.#gradientPlan = undefined;
  }

  // The weights Adam updates and the best-weight copy reads.
  #latentBuffer(): GPUBuffer {
    return this.#buffers.latent ?? this.#buffers.theta;
  }

  // Records the projection of the latent weights into theta, if fitting is quantization-aware.
  #addProjection(plan: Plan): void {
    const project = this.#kernels.project;
    if (!project) return;
    const b = this.#buffers;
    const layerCount = sirenLayers(this.arch).length;
    plan.add(
      project,
      { layers: b.quantLayers, mask: b.mask, latent: b.latent, theta: b.theta },
      { images: this.#count, param_count: this.paramCount },
      [layerCount * project.workgroupSize[0], this.#count],
    );
  }

  #buildPlan(label: string, update: boolean): Plan {
    const k = this.#kernels;
    const b = this.#buffers;
    const n = this.#count;
    const q = this.paramCount;
    const pixels = this.side * this.side;
    const plan = new Plan(this.gpu, label);
    this.#plans.push(plan);

    this.#addProjection(plan);
    plan.add(
      k.forwardBackward,
      { theta: b.theta, target_rgba: b.target, act: b.act, delta: b.delta, sqerr: b.sqerr },
      { images: n, side: this.side },
      [Math.ceil(pixels / 4), n],
    );
    const gradParams = {
      images: n,
      side: this.side,
      chunks: this.chunks,
      chunk_quads: chunkQuads(this.#tuning),
      tile_count: this.#tileCount,
    };
    plan.add(
      k.weightGrad,
      { tiles: b.tiles, act: b.act, delta: b.delta, grad_part: b.gradPart },
      gradParams,
      [this.#tileCount * this.chunks * this.#tuning.gradWorkgroup, n],
    );
    if (!update) return plan;

    const fitParams = {
      images: n,
      pixels,
      param_count: q,
      chunks: this.chunks,
      steps: this.iterations,
      ...this.#adam,
    };
    plan.add(
      k.scoreBest,
      { sqerr: b.sqerr, score: b.score, theta: this.#latentBuffer(), best_theta: b.bestTheta },
      fitParams,
      [k.scoreBest.workgroupSize[0], n],
    );
    plan.add(
      k.adam,
      {
        theta: this.#latentBuffer(),
        grad_part: b.gradPart,
        moment1: b.moment1,
        moment2: b.moment2,
        schedule: b.schedule,
        counter: b.counter,
      },
      fitParams,
      n * q,
    );
    plan.add(k.advance, { counter: b.counter }, {}, 1);
    return plan;
  }
}
