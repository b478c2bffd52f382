// Encode and compress checkpoints: the finished images of an encode or of the
// pruning and fine-tuning of a compress, saved after every batch to
// `<output>.partial` so that `--resume` can continue after a crash or a kill.
//
// Encode checkpoint layout, little-endian:
//   8 bytes  magic "RINRPART"
//   u32      format version (1)
//   u32      byte length J of the JSON header
//   J bytes  JSON header: {job, batchSize, imagesDone, paramCount}
//   0-3 zero bytes, so the arrays below start at a multiple of 4
//   f32      weights [imagesDone][Q]
//   f32      PSNR [imagesDone], dB
//
// A compress checkpoint has the same prefix with the magic "RINRCOMP", then
// the JSON header {job, bits, batchSize, imagesDone, paramCount}, the padding,
// and for each of the S steps of the job's sparsity schedule:
//   f32      weights [imagesDone][Q]
//   f32      PSNR [imagesDone], dB
// followed by the masks of all steps, u8 [S][imagesDone][Q] (1 keeps a weight).

import { resolve } from "@std/path";
import type { Dataset } from "../data/mod.ts";
import type { PruneStep } from "../inr/prune.ts";
import type { SirenArch } from "../inr/siren.ts";
import { UsageError } from "./options.ts";

const MAGIC = new TextEncoder().encode("RINRPART");
const VERSION = 1;

/** Everything that decides the bytes of the final .rinr file, except the batch size. */
export interface EncodeJob {
  /** Absolute dataset path. */
  source: string;
  split: string | null;
  /** Image side R in pixels. */
  size: number;
  limitPerClass: number | null;
  limit: number | null;
  maxBadFraction: number | null;
  images: number;
  /** SHA-256 (hex) of the pixels, labels and class names. */
  contentSha256: string;
  preset: string;
  sineLayers: number;
  width: number;
  w0: number;
  iterations: number;
  learningRate: number;
  seed: number;
}

/** Contents of a checkpoint file. */
export interface EncodeCheckpoint {
  job: EncodeJob;
  /** Images per batch of the interrupted run; a resumed run must use it too. */
  batchSize: number;
  imagesDone: number;
  /** Best weights of the finished images, [imagesDone][Q]. */
  weights: Float32Array;
  /** PSNR of the finished images in dB, [imagesDone]. */
  psnr: Float32Array;
}

/** Settings of the encode stage that {@linkcode encodeJob} records. */
export interface EncodeJobSettings {
  path: string;
  split?: string;
  limitPerClass?: number;
  limit?: number;
  maxBadFraction?: number;
  preset: string;
  arch: SirenArch;
  iterations: number;
  learningRate: number;
  seed: number;
}

/** Returns the checkpoint path of an encode output. */
export function encodeCheckpointPath(output: string): string {
  return `${output}.partial`;
}

/** Builds the fingerprint of an encode job from its settings and loaded dataset. */
export async function encodeJob(settings: EncodeJobSettings, dataset: Dataset): Promise<EncodeJob> {
  return {
    source: resolve(settings.path),
    split: settings.split ?? null,
    size: dataset.side,
    limitPerClass: settings.limitPerClass ?? null,
    limit: settings.limit ?? null,
    maxBadFraction: settings.maxBadFraction ?? null,
    images: dataset.labels.length,
    contentSha256: await datasetSha256(dataset),
    preset: settings.preset,
    sineLayers: settings.arch.sineLayers,
    width: settings.arch.width,
    w0: settings.arch.w0,
    iterations: settings.iterations,
    learningRate: settings.learningRate,
    seed: settings.seed,
  };
}

// SHA-256 of the pixels, labels and class names, the identity of a loaded dataset.
function datasetSha256(dataset: Dataset): Promise<string> {
  const content = concatBytes([
    dataset.images,
    new Uint8Array(Int32Array.from(dataset.labels).buffer),
    new TextEncoder().encode(JSON.stringify(dataset.classNames)),
  ]);
  return hexSha256(content);
}

async function hexSha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const hash = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, "0")).join("");
}

// Name of each job field in messages: its CLI option where there is one.
const FIELD_NAMES: Record<keyof EncodeJob, string> = {
  source: "dataset path",
  split: "--split",
  size: "--size",
  limitPerClass: "--per-class",
  limit: "--limit",
  maxBadFraction: "--max-bad-fraction",
  images: "image count",
  contentSha256: "image pixels, labels or class names",
  preset: "--preset",
  sineLayers: "--layers",
  width: "--width",
  w0: "--w0",
  iterations: "--iterations",
  learningRate: "--lr",
  seed: "--seed",
};

/**
 * Lists the settings in which `current` differs from the checkpoint's job, as
 * "NAME: VALUE in the checkpoint, VALUE now". Empty when the jobs match.
 */
export function jobDifferences(saved: EncodeJob, current: EncodeJob): string[] {
  return fieldDifferences(saved, current, FIELD_NAMES);
}

function fieldDifferences<T extends object>(saved: T, current: T, names: Record<keyof T, string>): string[] {
  const differences: string[] = [];
  for (const key of Object.keys(names) as (keyof T)[]) {
    const before = JSON.stringify(saved[key] ?? null);
    const now = JSON.stringify(current[key] ?? null);
    if (before !== now) differences.push(`${names[key]}: ${before} in the checkpoint, ${now} now`);
  }
  return differences;
}

/**
 * Writes a checkpoint atomically: the bytes go to `<path>.tmp`, which is
 * flushed to disk and renamed over `path`. A run killed during the write
 * leaves the previous checkpoint intact and possibly a stale `<path>.tmp`,
 * which the next write replaces.
 */
export async function writeEncodeCheckpoint(path: string, checkpoint: EncodeCheckpoint): Promise<void> {
  const bytes = concatBytes([
    ...checkpointPrefix(MAGIC, {
      job: checkpoint.job,
      batchSize: checkpoint.batchSize,
      imagesDone: checkpoint.imagesDone,
      paramCount: checkpoint.imagesDone ? checkpoint.weights.length / checkpoint.imagesDone : 0,
    }),
    littleEndianF32(checkpoint.weights),
    littleEndianF32(checkpoint.psnr),
  ]);
  await writeDurably(path, bytes);
}

// Returns the magic, version, header length, JSON header and the padding that
// aligns the arrays after it to 4 bytes.
function checkpointPrefix(magic: Uint8Array, header: unknown): Uint8Array[] {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const prefix = new Uint8Array(16);
  prefix.set(magic);
  const view = new DataView(prefix.buffer);
  view.setUint32(8, VERSION, true);
  view.setUint32(12, json.length, true);
  const padding = new Uint8Array((4 - ((prefix.length + json.length) % 4)) % 4);
  return [prefix, json, padding];
}

// Writes `bytes` to `<path>.tmp`, flushes it to disk and renames it over `path`.
async function writeDurably(path: string, bytes: Uint8Array): Promise<void> {
  const temporary = `${path}.tmp`;
  const file = await Deno.open(temporary, { write: true, create: true, truncate: true });
  try {
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.syncData();
  } finally {
    file.close();
  }
  await Deno.rename(temporary, path);
}

/**
 * Reads a checkpoint. Returns null when `path` does not exist; throws a
 * UsageError naming the file when it is damaged or not a checkpoint.
 */
export async function readEncodeCheckpoint(path: string): Promise<EncodeCheckpoint | null> {
  const file = await readCheckpointFile<{ job: EncodeJob; batchSize: number; imagesDone: number; paramCount: number }>(
    path,
    { magic: MAGIC, kind: "an encode checkpoint", restart: "the encode" },
  );
  if (!file) return null;
  const { bytes, headerLength, damaged } = file;
  const { job, batchSize, imagesDone, paramCount } = file.header ?? {};
  if (typeof job !== "object" || job === null) throw damaged("missing job");
  for (const [name, value] of Object.entries({ batchSize, imagesDone, paramCount })) {
    if (!Number.isSafeInteger(value) || value < 0) throw damaged(`invalid ${name} ${value}`);
  }
  const dataStart = 16 + headerLength + ((4 - ((16 + headerLength) % 4)) % 4);
  const weightCount = imagesDone * paramCount;
  if (bytes.length !== dataStart + 4 * (weightCount + imagesDone)) {
    throw damaged(`expected ${dataStart + 4 * (weightCount + imagesDone)} bytes, found ${bytes.length}`);
  }
  const floats = readLittleEndianF32(bytes.subarray(dataStart));
  return {
    job,
    batchSize,
    imagesDone,
    weights: floats.slice(0, weightCount),
    psnr: floats.slice(weightCount),
  };
}

// Reads a checkpoint file and its JSON header: magic, u32 version, u32 header
// length, then the header. Returns null when `path` does not exist. `damaged`
// builds the error for a problem found later in the payload.
async function readCheckpointFile<Header>(
  path: string,
  format: { magic: Uint8Array; kind: string; restart: string },
): Promise<{ bytes: Uint8Array; header: Header; headerLength: number; damaged: (reason: string) => UsageError } | null> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new UsageError(`Checkpoint ${path} could not be read: ${(error as Error).message}`);
  }
  const damaged = (reason: string) =>
    new UsageError(`Checkpoint ${path} is damaged (${reason}). Delete it to start ${format.restart} over.`);

  if (bytes.length < 16 || !format.magic.every((b, i) => bytes[i] === b)) throw damaged(`not ${format.kind}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== VERSION) throw damaged(`unsupported version ${version}`);
  const headerLength = view.getUint32(12, true);
  if (16 + headerLength > bytes.length) throw damaged("truncated header");
  try {
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + headerLength))) as Header;
    return { bytes, header, headerLength, damaged };
  } catch {
    throw damaged("invalid JSON header");
  }
}

/** Deletes an encode or compress checkpoint and any temporary file left by an interrupted write. */
export async function removeCheckpoint(path: string): Promise<void> {
  for (const file of [path, `${path}.tmp`]) {
    await Deno.remove(file).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
}

/** Deletes an encode checkpoint; the same as {@linkcode removeCheckpoint}. */
export const removeEncodeCheckpoint = removeCheckpoint;

// ---------------------------------------------------------------- compress

const COMPRESS_MAGIC = new TextEncoder().encode("RINRCOMP");

/**
 * Everything that decides the pruning and fine-tuning results of a compress,
 * except the batch size. The choice of a step per image (--max-psnr-drop,
 * --target-percent) and the entropy coding run after fine-tuning, so they may
 * change on resume.
 */
export interface CompressJob {
  /** Absolute path of the fp32 .rinr input. */
  input: string;
  /** Size of the input file in bytes. */
  inputBytes: number;
  /** SHA-256 (hex) of the input file. */
  inputSha256: string;
  /** Absolute path of the source dataset that the fine-tuning fits. */
  source: string;
  images: number;
  /** SHA-256 (hex) of the source pixels, labels and class names, as encode computes it. */
  contentSha256: string;
  /** --bits as requested: "auto", or the width of each layer. */
  bits: "auto" | number[];
  /** With --bits auto, the PSNR loss in dB that rounding one layer alone may cause; null otherwise. */
  layerToleranceDb: number | null;
  sparsities: number[];
  /** Fine-tuning iterations per step. */
  iterations: number;
  learningRate: number;
}

/** Contents of a compress checkpoint. */
export interface CompressCheckpoint {
  job: CompressJob;
  /** Bit width per layer used by the fine-tuning; with --bits auto, the result of the sensitivity search. */
  bits: number[];
  /** With --bits auto, the layer tolerance in dB that chose `bits`. */
  layerToleranceDb?: number;
  /** Images per batch of the interrupted run; a resumed run must use it too. */
  batchSize: number;
  imagesDone: number;
  /** One entry per sparsity of the job's schedule, holding the first `imagesDone` images. */
  steps: PruneStep[];
}

/** Settings of the compress stage that {@linkcode compressJob} records. */
export interface CompressJobSettings {
  /** Path of the fp32 .rinr input. */
  input: string;
  /** Path of the source dataset. */
  source: string;
  bits: "auto" | number[];
  layerToleranceDb: number | null;
  sparsities: readonly number[];
  iterations: number;
  learningRate: number;
}

/** Returns the checkpoint path of a compress output. */
export function compressCheckpointPath(output: string): string {
  return `${output}.partial`;
}

/** Builds the fingerprint of a compress job from its settings and loaded source dataset; reads and hashes the input file. */
export async function compressJob(settings: CompressJobSettings, source: Dataset): Promise<CompressJob> {
  const input = await Deno.readFile(settings.input);
  return {
    input: resolve(settings.input),
    inputBytes: input.length,
    inputSha256: await hexSha256(input),
    source: resolve(settings.source),
    images: source.labels.length,
    contentSha256: await datasetSha256(source),
    bits: settings.bits === "auto" ? "auto" : [...settings.bits],
    layerToleranceDb: settings.layerToleranceDb,
    sparsities: [...settings.sparsities],
    iterations: settings.iterations,
    learningRate: settings.learningRate,
  };
}

const COMPRESS_FIELD_NAMES: Record<keyof CompressJob, string> = {
  input: "input path",
  inputBytes: "input file size",
  inputSha256: "input file contents",
  source: "source dataset path (--source)",
  images: "source image count",
  contentSha256: "source pixels, labels or class names",
  bits: "--bits",
  layerToleranceDb: "--layer-tolerance",
  sparsities: "--prune",
  iterations: "--tune-iterations",
  learningRate: "--tune-lr",
};

/**
 * Lists the settings in which `current` differs from the checkpoint's compress
 * job, as "NAME: VALUE in the checkpoint, VALUE now". Empty when the jobs match.
 */
export function compressJobDifferences(saved: CompressJob, current: CompressJob): string[] {
  return fieldDifferences(saved, current, COMPRESS_FIELD_NAMES);
}

/** Writes a compress checkpoint atomically, as {@linkcode writeEncodeCheckpoint} does. */
export async function writeCompressCheckpoint(path: string, checkpoint: CompressCheckpoint): Promise<void> {
  const { steps, imagesDone } = checkpoint;
  const paramCount = imagesDone ? steps[0].weights.length / imagesDone : 0;
  const parts = checkpointPrefix(COMPRESS_MAGIC, {
    job: checkpoint.job,
    bits: checkpoint.bits,
    ...(checkpoint.layerToleranceDb !== undefined ? { layerToleranceDb: checkpoint.layerToleranceDb } : {}),
    batchSize: checkpoint.batchSize,
    imagesDone,
    paramCount,
  });
  for (const step of steps) parts.push(littleEndianF32(step.weights), littleEndianF32(step.psnr));
  for (const step of steps) parts.push(step.mask);
  await writeDurably(path, concatBytes(parts));
}

/**
 * Reads a compress checkpoint. Returns null when `path` does not exist; throws
 * a UsageError naming the file when it is damaged or not a compress checkpoint.
 */
export async function readCompressCheckpoint(path: string): Promise<CompressCheckpoint | null> {
  const file = await readCheckpointFile<
    {
      job: CompressJob;
      bits: number[];
      layerToleranceDb?: number;
      batchSize: number;
      imagesDone: number;
      paramCount: number;
    }
  >(path, { magic: COMPRESS_MAGIC, kind: "a compress checkpoint", restart: "the compression" });
  if (!file) return null;
  const { bytes, headerLength, damaged } = file;
  const { job, bits, layerToleranceDb, batchSize, imagesDone, paramCount } = file.header ?? {};
  if (layerToleranceDb !== undefined && !(typeof layerToleranceDb === "number" && layerToleranceDb >= 0)) {
    throw damaged(`invalid layerToleranceDb ${layerToleranceDb}`);
  }
  if (typeof job !== "object" || job === null) throw damaged("missing job");
  const sparsities = job.sparsities;
  if (!Array.isArray(sparsities) || sparsities.length === 0 || !sparsities.every((s) => typeof s === "number")) {
    throw damaged("invalid sparsity schedule");
  }
  if (!Array.isArray(bits) || !bits.every((b) => Number.isInteger(b) && b >= 1 && b <= 32)) {
    throw damaged("invalid bits per layer");
  }
  for (const [name, value] of Object.entries({ batchSize, imagesDone, paramCount })) {
    if (!Number.isSafeInteger(value) || value < 0) throw damaged(`invalid ${name} ${value}`);
  }
  if (batchSize < 1) throw damaged(`invalid batchSize ${batchSize}`);

  const dataStart = 16 + headerLength + ((4 - ((16 + headerLength) % 4)) % 4);
  const weightCount = imagesDone * paramCount;
  const floatsPerStep = weightCount + imagesDone;
  const expected = dataStart + sparsities.length * (4 * floatsPerStep + weightCount);
  if (bytes.length !== expected) throw damaged(`expected ${expected} bytes, found ${bytes.length}`);
  const floats = readLittleEndianF32(bytes.subarray(dataStart, dataStart + 4 * sparsities.length * floatsPerStep));
  const masks = bytes.subarray(dataStart + 4 * sparsities.length * floatsPerStep);
  const steps = sparsities.map((sparsity, k) => ({
    sparsity,
    weights: floats.slice(k * floatsPerStep, k * floatsPerStep + weightCount),
    psnr: floats.slice(k * floatsPerStep + weightCount, (k + 1) * floatsPerStep),
    mask: masks.slice(k * weightCount, (k + 1) * weightCount),
  }));
  return { job, bits, ...(layerToleranceDb !== undefined ? { layerToleranceDb } : {}), batchSize, imagesDone, steps };
}

function concatBytes(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

// Whether this host stores floats little-endian, so arrays can be copied as bytes.
const LITTLE_ENDIAN_HOST = new Uint8Array(new Float32Array([1]).buffer)[3] === 0x3f;

function littleEndianF32(values: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN_HOST) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
  return out;
}

function readLittleEndianF32(bytes: Uint8Array): Float32Array {
  // slice() copies into a fresh, aligned buffer.
  if (LITTLE_ENDIAN_HOST) return new Float32Array(bytes.slice().buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}
