// GPU decoding of a resident compressed dataset into classifier batches and images.
//
// `InrDecoder` uploads the packed codes, ranges and labels of N images once
// and keeps them on the GPU in that packed form. A training plan records two
// dispatches once. The first dequantizes the weights of the images listed in
// an indices buffer at offset `first`. The second evaluates their SIRENs at
// every output pixel with per-sample crop and flip, and writes normalized
// NCHW f32 plus the labels. Each step then only rewrites `first` and `step`
// in the plan's uniform buffer before submitting.
//
// Usage:
//   const decoder = await InrDecoder.create(gpu, rinrFile);
//   const plan = new Plan(gpu, "train step");
//   const decode = decoder.decodeBatch(plan, { indices, output, labelsOut }, { batch: 128, pad: 4, flip: true, mean, std, seed });
//   ...record the classifier dispatches into the same plan...
//   for (let step = 0; step < steps; step++) { decode.update({ first: step * 128, step }); plan.submit(); }

import { GpuError, GpuOutOfMemoryError } from "../gpu/device.ts";
import type { Gpu } from "../gpu/device.ts";
import { compileKernel, type DispatchHandle, type Kernel, Plan } from "../gpu/kernel.ts";
import type {
  BatchBuffers,
  BatchOptions,
  BatchUpdate,
  DecodeImagesOptions,
  DecoderOptions,
  DecoderSource,
  RecordedDecode,
} from "./decode_options.ts";
import { packFloat32, type QuantizedInrs } from "./quantize.ts";
import { augmentationOf, coordinateMapping, paddedSlots } from "./sampling.ts";
import type { SirenArch } from "./siren.ts";

export type * from "./decode_options.ts";
export { augmentationOf, coordinateMapping };

const BATCH_BINDINGS = [
  "params",
  "codes",
  "ranges",
  "layers",
  "indices",
  "labels",
  "weights",
  "output",
  "labels_out",
];
const RGBA_BINDINGS = ["params", "codes", "ranges", "layers", "indices", "weights", "pixels"];
const UNPACK_BINDINGS = ["params", "codes", "ranges", "layers", "indices", "weights"];
interface ResidentBuffers {
  codes: GPUBuffer;
  ranges: GPUBuffer;
  layers: GPUBuffer;
  labels: GPUBuffer;
  /** Bound to `indices` when images are addressed directly; never read. */
  noIndices: GPUBuffer;
}

interface DecodeKernels {
  batch: Kernel;
  rgba: Kernel;
  unpack: Kernel;
}

/** Images decoded per dispatch by `decodeImages`. */
const IMAGES_PER_CHUNK = 256;

/** A compressed dataset resident on the GPU, decoded into batches or images on demand. */
export class InrDecoder {
  readonly gpu: Gpu;
  readonly arch: SirenArch;
  /** N, the number of images. */
  readonly count: number;
  /** Side R in pixels of the encoded images. */
  readonly resolution: number;
  /** True when each workgroup copies its image's weights to workgroup memory. */
  readonly cached: boolean;
  /** Bytes of the resident dataset: codes, ranges, layer table and labels. */
  readonly residentBytes: number;
  readonly #wordsPerImage: number;
  readonly #buffers: ResidentBuffers;
  readonly #kernels: DecodeKernels;
  /** Per-batch buffers allocated by `decodeBatch`, released by `destroy`. */
  readonly #owned: GPUBuffer[] = [];

  private constructor(
    gpu: Gpu,
    init: {
      source: DecoderSource;
      inrs: QuantizedInrs;
      cached: boolean;
      buffers: ResidentBuffers;
      kernels: DecodeKernels;
    },
  ) {
    this.gpu = gpu;
    this.arch = init.inrs.arch;
    this.count = init.inrs.count;
    this.resolution = init.source.resolution;
    this.cached = init.cached;
    this.#wordsPerImage = init.inrs.wordsPerImage;
    this.#buffers = init.buffers;
    this.#kernels = init.kernels;
    const { codes, ranges, layers, labels } = init.buffers;
    this.residentBytes = codes.size + ranges.size + layers.size + labels.size;
  }

  /** Uploads the dataset and compiles the decode kernels for its architecture. */
  static async create(
    gpu: Gpu,
    source: DecoderSource,
    options: DecoderOptions = {},
  ): Promise<InrDecoder> {
    const inrs = source.weights instanceof Float32Array
      ? packFloat32(source.arch, source.weights)
      : source.weights;
    if (JSON.stringify(inrs.arch) !== JSON.stringify(source.arch)) {
      throw new RangeError(
        `Weights are for SIREN ${JSON.stringify(inrs.arch)}, but the source declares ${
          JSON.stringify(source.arch)
        }.`,
      );
    }
    if (!Number.isInteger(source.resolution) || source.resolution < 1) {
      throw new RangeError(`Resolution must be a positive integer, got ${source.resolution}.`);
    }
    if (inrs.count === 0) throw new RangeError("The dataset has no images to decode.");
    const labels = source.labels ?? new Uint32Array(inrs.count);
    if (labels.length !== inrs.count) {
      throw new RangeError(`Got ${labels.length} labels for ${inrs.count} images.`);
    }
    const maxBinding = gpu.device.limits.maxStorageBufferBindingSize;
    if (inrs.codes.byteLength > maxBinding) {
      // NOTE: larger datasets would need the codes split over several bindings.
      throw new GpuError(
        `The packed weights of ${inrs.count} images take ${inrs.codes.byteLength} bytes, more than this GPU's ` +
          `maximum storage binding of ${maxBinding} bytes. Quantize to fewer bits or encode fewer images per file.`,
      );
    }

    const slots = paddedSlots(inrs.arch);
    const workgroupSize = options.workgroupSize ?? 64;
    const maxWorkgroup = gpu.device.limits.maxComputeInvocationsPerWorkgroup;
    if (!Number.isInteger(workgroupSize) || workgroupSize < 1 || workgroupSize > maxWorkgroup) {
      throw new RangeError(
        `Workgroup size must be an integer in 1..${maxWorkgroup}, got ${workgroupSize}.`,
      );
    }
    const cacheBytes = Math.min(
      options.cacheBytes ?? Infinity,
      gpu.device.limits.maxComputeWorkgroupStorageSize,
    );
    const cached = slots * 16 <= cacheBytes;
    const overrides = {
      WG: workgroupSize,
      SINE_LAYERS: inrs.arch.sineLayers,
      WIDTH: inrs.arch.width,
      CACHED: cached ? 1 : 0,
      CACHE_VEC4: cached ? slots : 1,
    };
    const spec = (entry: string, bindings: string[]) => ({
      name: `inr_decode.${entry}`,
      file: "inr_decode.wgsl",
      entry,
      bindings,
      workgroup: ["WG"],
      overrides,
    });
    const kernels = {
      batch: await compileKernel(gpu, spec("decode_batch", BATCH_BINDINGS)),
      rgba: await compileKernel(gpu, spec("decode_rgba8", RGBA_BINDINGS)),
      unpack: await compileKernel(gpu, spec("unpack", UNPACK_BINDINGS)),
    };

    const layerTable = new Uint32Array(2 * (inrs.arch.sineLayers + 1));
    inrs.bits.forEach((bits, l) => layerTable.set([inrs.layerWordOffsets[l], bits], 2 * l));
    // The whole dataset stays resident, so it cannot be split like a fitting
    // batch: running out of memory here is reported with what to change.
    const residentBytes = inrs.codes.byteLength + inrs.ranges.byteLength + labels.byteLength;
    const allocation = `the resident dataset of ${inrs.count} images (${residentBytes} bytes)`;
    return await gpu.allocate(allocation, () => {
      const created: GPUBuffer[] = [];
      const upload = (bytes: number, label: string, data?: ArrayBufferView) => {
        const buffer = gpu.buffer(bytes, label, data);
        created.push(buffer);
        return buffer;
      };
      try {
        const buffers = {
          codes: upload(inrs.codes.byteLength, "inr codes", inrs.codes),
          ranges: upload(inrs.ranges.byteLength, "inr ranges", inrs.ranges),
          layers: upload(layerTable.byteLength, "inr layer table", layerTable),
          labels: upload(labels.byteLength, "inr labels", labels),
          noIndices: upload(4, "inr decode: no indices"),
        };
        return new InrDecoder(gpu, { source, inrs, cached, buffers, kernels });
      } catch (error) {
        for (const buffer of created) gpu.release(buffer);
        throw error;
      }
    }).catch((error) => {
      if (!(error instanceof GpuOutOfMemoryError)) throw error;
      throw new GpuOutOfMemoryError(allocation, {
        detail: `${error.detail}. Compress to fewer bits per layer (compress --bits or --target-percent), ` +
          "or encode fewer images per file",
        bytes: residentBytes,
      });
    });
  }

  /**
   * Records the decode of one training batch into `plan` and returns a handle
   * whose `update` sets `first` and `step` before each submit. Sample j reads
   * image indices[first + j]; the caller keeps first + batch within `indices`
   * and every index below N.
   */
  decodeBatch(plan: Plan, buffers: BatchBuffers, options: BatchOptions): RecordedDecode {
    const size = options.size ?? this.resolution;
    const batch = options.batch;
    checkCount("batch", batch);
    checkCount("size", size);
    const pad = options.pad ?? 0;
    if (!Number.isInteger(pad) || pad < 0 || pad >= size) {
      throw new RangeError(`Crop padding must be an integer in 0..${size - 1} pixels, got ${pad}.`);
    }
    const mean = options.mean ?? [0, 0, 0];
    const std = options.std ?? [1, 1, 1];
    if (!std.every((s) => s > 0 && Number.isFinite(s)) || !mean.every(Number.isFinite)) {
      throw new RangeError(
        `Normalization needs finite means and positive standard deviations, got mean [${mean}], std [${std}].`,
      );
    }
    checkBuffer("output", buffers.output, batch * 3 * size * size * 4);
    if (buffers.labelsOut) checkBuffer("labelsOut", buffers.labelsOut, batch * 4);
    const indexCapacity = buffers.indices ? buffers.indices.size / 4 : this.count;

    const coordinates = coordinateMapping(this.resolution, size);
    const values: Record<string, number> = {
      ...this.#baseParams(batch, size, !buffers.indices),
      first: options.first ?? 0,
      pad,
      flip: options.flip ? 1 : 0,
      seed: options.seed ?? 0,
      step: options.step ?? 0,
      coord_scale: coordinates.scale,
      coord_bias: coordinates.bias,
      mean_r: mean[0],
      mean_g: mean[1],
      mean_b: mean[2],
      inv_std_r: 1 / std[0],
      inv_std_g: 1 / std[1],
      inv_std_b: 1 / std[2],
    };
    const checkFirst = () => {
      if (
        !Number.isInteger(values.first) || values.first < 0 || values.first + batch > indexCapacity
      ) {
        const what = buffers.indices
          ? `the ${indexCapacity} entries of the indices buffer`
          : `the ${this.count} images`;
        throw new RangeError(`Batch first ${values.first} + ${batch} samples runs past ${what}.`);
      }
    };
    checkFirst();

    const common = {
      codes: this.#buffers.codes,
      ranges: this.#buffers.ranges,
      layers: this.#buffers.layers,
      indices: buffers.indices ?? this.#buffers.noIndices,
    };
    const weights = this.#allocate(batch * paddedSlots(this.arch) * 16, "decode batch weights");
    // The kernel always writes the labels, so a caller that needs none gets a private buffer.
    const labelsOut = buffers.labelsOut ?? this.#allocate(batch * 4, "decode batch labels");
    const handles: DispatchHandle[] = [];
    handles.push(
      plan.add(
        this.#kernels.unpack,
        { ...common, weights },
        values,
        batch * paddedSlots(this.arch),
      ),
    );
    handles.push(plan.add(
      this.#kernels.batch,
      {
        ...common,
        labels: this.#buffers.labels,
        weights,
        output: buffers.output,
        labels_out: labelsOut,
      },
      values,
      this.#grid(batch, size),
    ));
    return {
      batch,
      size,
      update: (update: BatchUpdate) => {
        if (update.first !== undefined) values.first = update.first;
        if (update.step !== undefined) values.step = update.step;
        if (update.seed !== undefined) values.seed = update.seed;
        checkFirst();
        for (const handle of handles) plan.update(handle, values);
      },
    };
  }

  /**
   * Decodes images first .. first + count - 1 to RGB bytes [count][S][S][3],
   * without augmentation. Waits for the GPU once per chunk of 256 images.
   */
  async decodeImages(options: DecodeImagesOptions = {}): Promise<Uint8Array> {
    const first = options.first ?? 0;
    const count = options.count ?? this.count - first;
    const size = options.size ?? this.resolution;
    checkCount("size", size);
    if (
      !Number.isInteger(first) || first < 0 || !Number.isInteger(count) || count < 0 ||
      first + count > this.count
    ) {
      throw new RangeError(
        `Images ${first} .. ${first + count - 1} are outside the dataset of ${this.count} images.`,
      );
    }
    const rgb = new Uint8Array(count * size * size * 3);
    if (count === 0) return rgb;

    const chunk = Math.max(
      1,
      Math.min(
        count,
        IMAGES_PER_CHUNK,
        Math.floor(this.gpu.device.limits.maxStorageBufferBindingSize / (size * size * 4)),
      ),
    );
    const pixels = this.gpu.buffer(chunk * size * size * 4, "decoded rgba8");
    const weights = this.gpu.buffer(chunk * paddedSlots(this.arch) * 16, "decode weights");
    const plan = new Plan(this.gpu, "decode images");
    const coordinates = coordinateMapping(this.resolution, size);
    const values: Record<string, number> = {
      ...this.#baseParams(chunk, size, true),
      first,
      coord_scale: coordinates.scale,
      coord_bias: coordinates.bias,
    };
    const common = {
      codes: this.#buffers.codes,
      ranges: this.#buffers.ranges,
      layers: this.#buffers.layers,
      indices: this.#buffers.noIndices,
      weights,
    };
    const handles: DispatchHandle[] = [];
    try {
      handles.push(plan.add(this.#kernels.unpack, common, values, chunk * paddedSlots(this.arch)));
      handles.push(
        plan.add(this.#kernels.rgba, { ...common, pixels }, values, this.#grid(chunk, size)),
      );
      for (let done = 0; done < count; done += chunk) {
        const n = Math.min(chunk, count - done);
        values.first = first + done;
        values.batch = n;
        for (const handle of handles) plan.update(handle, values);
        plan.submit();
        const rgba = new Uint8Array((await this.gpu.readU32(pixels, n * size * size)).buffer);
        const out = rgb.subarray(done * size * size * 3);
        for (let p = 0; p < n * size * size; p++) {
          out[3 * p] = rgba[4 * p];
          out[3 * p + 1] = rgba[4 * p + 1];
          out[3 * p + 2] = rgba[4 * p + 2];
        }
      }
    } finally {
      plan.destroy();
      this.gpu.release(pixels);
      this.gpu.release(weights);
    }
    return rgb;
  }

  /** Releases the resident dataset and every buffer the decoder allocated. */
  destroy(): void {
    for (const buffer of [...Object.values(this.#buffers), ...this.#owned]) {
      this.gpu.release(buffer);
    }
    this.#owned.length = 0;
  }

  #baseParams(batch: number, size: number, direct: boolean): Record<string, number> {
    return {
      batch,
      first: 0,
      direct: direct ? 1 : 0,
      words: this.#wordsPerImage,
      size,
      pad: 0,
      flip: 0,
      seed: 0,
      step: 0,
      w0: this.arch.w0,
      coord_scale: 0,
      coord_bias: 0,
      mean_r: 0,
      mean_g: 0,
      mean_b: 0,
      inv_std_r: 1,
      inv_std_g: 1,
      inv_std_b: 1,
    };
  }

  /** Invocation count of a decode dispatch: whole workgroups per sample, since a workgroup never spans two. */
  #grid(batch: number, size: number): number {
    const workgroupSize = this.#kernels.batch.workgroupSize[0];
    return batch * Math.ceil((size * size) / workgroupSize) * workgroupSize;
  }

  #allocate(bytes: number, label: string): GPUBuffer {
    const buffer = this.gpu.buffer(bytes, label);
    this.#owned.push(buffer);
    return buffer;
  }
}

function checkCount(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}.`);
  }
}

function checkBuffer(name: string, buffer: GPUBuffer, bytes: number): void {
  if (buffer.size < bytes) {
    throw new RangeError(`Buffer ${name} has ${buffer.size} bytes, but the batch needs ${bytes}.`);
  }
}
