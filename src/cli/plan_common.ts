// Shared parts of a --dry-run plan: its type, the adapter query, output
// checks and the checks of the source images that a PSNR measurement reloads.

import type { RinrFile } from "../format/mod.ts";
import { GpuError } from "../gpu/device.ts";
import { resolveLayerBits } from "../inr/quantize.ts";
import { type SirenArch, sirenParamCount } from "../inr/siren.ts";
import { sirenImageBytes } from "../inr/siren_batch.ts";
import type { InputKind } from "../train/trainer.ts";
import { parseBits } from "./compress.ts";
import { checkOutputFree, layerBits } from "./export.ts";
import type { Log } from "./log.ts";
import { type ParsedCommand, UsageError } from "./options.ts";
import { type DatasetPlan, planDataset } from "./plan_dataset.ts";
import { decodeChunkBytes, packedCodeBytes, residentDatasetBytes } from "./plan_memory.ts";

/** The GPU adapter as far as a plan needs it. */
export interface AdapterPlan {
  available: boolean;
  name: string | null;
  software: boolean | null;
  /** Largest storage binding in bytes. */
  maxStorageBufferBindingSize: number | null;
  /** Reason that no adapter is available, or null when one is. */
  problem: string | null;
}

/** One GPU buffer group of a stage, in bytes (an estimate). */
export interface MemoryItem {
  stage: string;
  item: string;
  bytes: number;
}

/** The plan that --dry-run prints, as text or as one JSON object. */
export interface DryRunPlan {
  command: string;
  dryRun: true;
  adapter: AdapterPlan | null;
  /** Dataset read by encode, raw or files training, or the source of a PSNR check. */
  dataset: DatasetPlan | null;
  testDataset: DatasetPlan | null;
  /** The .rinr file read by compress, decode, train --input inr or export. */
  input: {
    path: string;
    images: number;
    classes: number;
    resolution: number;
    bitsPerLayer: number[];
  } | null;
  siren: { sineLayers: number; width: number; w0: number; paramsPerImage: number } | null;
  encode: {
    images: number;
    side: number;
    iterations: number;
    learningRate: number;
    seed: number;
    /** Images fitted per batch; null when no adapter reported its limits. */
    batchSize: number | null;
    batches: number | null;
    /** Maximum images per batch on this adapter within the 2 GiB memory budget. */
    maxBatchImages: number | null;
  } | null;
  /** With `autoBits`, the widths and size are estimates: the widths are chosen at run time. */
  compress: { bitsPerLayer: number[]; autoBits: boolean; estimatedFileBytes: number; rawBytes: number } | null;
  decode: { images: number; size: number; psnr: boolean } | null;
  train: {
    input: InputKind;
    images: number;
    classes: number;
    inputSize: number;
    epochs: number;
    batch: number;
    stepsPerEpoch: number;
    /** Images left out of each epoch by dropping the last partial batch. */
    droppedPerEpoch: number;
    resnetWidth: number;
    parameters: number;
    testImages: number;
    seed: number;
  } | null;
  export: { tensors: { name: string; shape: number[] }[]; estimatedFileBytes: number } | null;
  /** GPU memory per stage; stages run one after another and free their buffers. */
  gpuMemory: MemoryItem[];
  /** Largest sum of one stage's items. */
  peakGpuBytes: number;
  /** Files the command writes; `reused` marks a finished one that `run --resume` keeps. */
  outputs: { path: string; exists: boolean; reused?: boolean }[];
  notes: string[];
}

export function emptyPlan(command: string): DryRunPlan {
  return {
    command,
    dryRun: true,
    adapter: null,
    dataset: null,
    testDataset: null,
    input: null,
    siren: null,
    encode: null,
    compress: null,
    decode: null,
    train: null,
    export: null,
    gpuMemory: [],
    peakGpuBytes: 0,
    outputs: [],
    notes: [],
  };
}

export async function addOutput(plan: DryRunPlan, path: string): Promise<void> {
  const exists = await checkOutputFree(path, false).then(() => false, (error) => {
    if (error instanceof UsageError) return true;
    throw error;
  });
  plan.outputs.push({ path, exists });
}

/** Reads the adapter's name and limits without creating a device. */
export async function readAdapter(): Promise<
  { plan: AdapterPlan; limits: GPUSupportedLimits | null }
> {
  const missing = (problem: string) => ({
    plan: {
      available: false,
      name: null,
      software: null,
      maxStorageBufferBindingSize: null,
      problem,
    },
    limits: null,
  });
  if (!("gpu" in navigator) || !navigator.gpu) {
    return missing("WebGPU is not available in this Deno build.");
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (error) {
    return missing(`requesting a GPU adapter failed: ${(error as Error).message}`);
  }
  if (!adapter) {
    return missing(
      "no GPU adapter found. Install a Vulkan, Metal or D3D12 driver, or set DENO_WEBGPU_BACKEND=vulkan with mesa-vulkan-drivers installed.",
    );
  }
  const info = adapter.info;
  const name = info.description || info.device || info.vendor || "unknown adapter";
  const software = info.isFallbackAdapter === true ||
    /llvmpipe|swiftshader|lavapipe|warp/i.test(name);
  const limits = adapter.limits;
  return {
    plan: {
      available: true,
      name,
      software,
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      problem: null,
    },
    limits,
  };
}

export function sirenPlan(arch: SirenArch): DryRunPlan["siren"] {
  try {
    return {
      sineLayers: arch.sineLayers,
      width: arch.width,
      w0: arch.w0,
      paramsPerImage: sirenParamCount(arch),
    };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

export function inputPlan(path: string, file: RinrFile): DryRunPlan["input"] {
  return {
    path,
    images: file.labels.length,
    classes: file.classNames.length,
    resolution: file.resolution,
    bitsPerLayer: layerBits(file),
  };
}

/**
 * Returns the bit widths of --bits. For "auto", which is decided at run time,
 * it returns an estimate for the plan: 16 bits for the first layer and 8 for
 * the others, the widths the search chose on CIFAR-10 images.
 */
export function resolveBits(arch: SirenArch, values: ParsedCommand["values"]): { bits: number[]; auto: boolean } {
  const bits = parseBits(String(values.bits));
  if (bits === "auto") {
    const layers = resolveLayerBits(arch, 8);
    layers[0] = 16;
    return { bits: layers, auto: true };
  }
  try {
    return { bits: resolveLayerBits(arch, bits), auto: false };
  } catch (error) {
    throw new UsageError(`--bits: ${(error as Error).message}`);
  }
}

// Approximate .rinr size: payload, u16 labels and a JSON header of about 8 bytes of PSNR per image.
export function estimatedRinrBytes(count: number, payloadBytes: number): number {
  return payloadBytes + count * 2 + count * 8 + 1024;
}

export function quantizedBits(file: RinrFile): number[] | "f32" {
  return file.weights instanceof Float32Array ? "f32" : [...file.weights.bits];
}

/**
 * Throws the `GpuError` the run would raise when one buffer of `bytes` exceeds
 * the adapter's storage binding limit. Without an adapter there is no check.
 */
export function checkBinding(plan: DryRunPlan, what: string, bytes: number, fix: string): void {
  const max = plan.adapter?.maxStorageBufferBindingSize;
  if (max !== null && max !== undefined && bytes > max) {
    throw new GpuError(
      `${what} needs ${bytes} bytes in one storage binding, but the adapter allows ${max}. ${fix}`,
    );
  }
}

/**
 * Adds the compress stage's GPU memory: the fp32 INRs for the PSNR before,
 * then the quantized ones (held one after the other), and the decode buffers.
 */
export function addCompressMemory(
  plan: DryRunPlan,
  shape: { arch: SirenArch; count: number; side: number; bits: number[]; tuneIterations: number },
): void {
  const { arch, count, side, bits } = shape;
  const maxBinding = plan.adapter?.maxStorageBufferBindingSize ?? undefined;
  const fp32 = residentDatasetBytes({ arch, count, bits: "f32" });
  const quantized = residentDatasetBytes({ arch, count, bits });
  const fix = "Encode fewer images per file.";
  checkBinding(
    plan,
    `The fp32 weights of ${count} images`,
    packedCodeBytes({ arch, count, bits: "f32" }),
    fix,
  );
  checkBinding(
    plan,
    `The packed weights of ${count} images`,
    packedCodeBytes({ arch, count, bits }),
    fix,
  );
  plan.gpuMemory.push(
    { stage: "compress", item: "fp32, then quantized INRs", bytes: Math.max(fp32, quantized) },
    {
      stage: "compress",
      item: "per-chunk decode buffers",
      bytes: decodeChunkBytes({ arch, count, size: side, maxBinding }),
    },
  );
  if (shape.tuneIterations > 0) {
    // pruneAndTune fills batches up to its 2 GiB default budget.
    const perImage = sirenImageBytes({ arch, side, quantization: { bits } }).total;
    plan.gpuMemory.push({
      stage: "compress",
      item: "fine-tuning batch",
      bytes: Math.min(count, Math.max(1, Math.floor(2 * 1024 ** 3 / perImage))) * perImage,
    });
  }
}

/** Checks the source images that a PSNR measurement reloads; mirrors sourceImages in stages.ts. */
export async function planSource(
  file: RinrFile,
  override: string | undefined,
  log: Log,
): Promise<DatasetPlan> {
  const encode = file.encode ?? {};
  const path = override || file.source;
  if (!path) {
    throw new UsageError(
      `${file.name} records no source dataset. Pass --source with the encoded image folder.`,
    );
  }
  let dataset: DatasetPlan;
  try {
    dataset = await planDataset({
      path,
      split: typeof encode.split === "string" ? encode.split : undefined,
      size: file.resolution,
      limitPerClass: typeof encode.limitPerClass === "number" ? encode.limitPerClass : undefined,
      limit: typeof encode.limit === "number" ? encode.limit : undefined,
      // The run reloads the source with the fraction recorded by encode, so the plan applies it too.
      maxBadFraction: typeof encode.maxBadFraction === "number" && encode.maxBadFraction >= 0 &&
          encode.maxBadFraction <= 1
        ? encode.maxBadFraction
        : undefined,
    }, log);
  } catch (error) {
    if ((error as Error).name === "DataError" || error instanceof Deno.errors.NotFound) {
      throw new UsageError(
        `Source images of ${file.name} could not be loaded from ${path}: ${
          (error as Error).message
        } Pass --source with the encoded image folder.`,
      );
    }
    throw error;
  }
  // The encoder skipped the unreadable images it recorded; the reload skips the same ones.
  const skipped = typeof encode.skippedImages === "number" ? encode.skippedImages : 0;
  if (dataset.images !== file.labels.length + skipped) {
    throw new UsageError(
      `Source ${path} has ${dataset.images} images but ${file.name} has ${file.labels.length}${
        skipped ? ` (plus ${skipped} skipped)` : ""
      }. Pass --source with the dataset that was encoded.`,
    );
  }
  dataset.sideFrom = "encoded resolution";
  return dataset;
}
