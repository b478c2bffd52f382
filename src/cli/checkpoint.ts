// Encode checkpoints: the finished images of an encode, saved after every
// batch to `<output>.partial` so that `--resume` can continue after a crash
// or a kill.
//
// File layout, little-endian:
//   8 bytes  magic "RINRPART"
//   u32      format version (1)
//   u32      byte length J of the JSON header
//   J bytes  JSON header: {job, batchSize, imagesDone, paramCount}
//   0-3 zero bytes, so the arrays below start at a multiple of 4
//   f32      weights [imagesDone][Q]
//   f32      PSNR [imagesDone], dB

import { resolve } from "@std/path";
import type { Dataset } from "../data/mod.ts";
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
  const content = concatBytes([
    dataset.images,
    new Uint8Array(Int32Array.from(dataset.labels).buffer),
    new TextEncoder().encode(JSON.stringify(dataset.classNames)),
  ]);
  const hash = await crypto.subtle.digest("SHA-256", content);
  return {
    source: resolve(settings.path),
    split: settings.split ?? null,
    size: dataset.side,
    limitPerClass: settings.limitPerClass ?? null,
    limit: settings.limit ?? null,
    maxBadFraction: settings.maxBadFraction ?? null,
    images: dataset.labels.length,
    contentSha256: Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, "0")).join(""),
    preset: settings.preset,
    sineLayers: settings.arch.sineLayers,
    width: settings.arch.width,
    w0: settings.arch.w0,
    iterations: settings.iterations,
    learningRate: settings.learningRate,
    seed: settings.seed,
  };
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
  const differences: string[] = [];
  for (const key of Object.keys(FIELD_NAMES) as (keyof EncodeJob)[]) {
    const before = JSON.stringify(saved[key] ?? null);
    const now = JSON.stringify(current[key] ?? null);
    if (before !== now) differences.push(`${FIELD_NAMES[key]}: ${before} in the checkpoint, ${now} now`);
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
  const header = new TextEncoder().encode(JSON.stringify({
    job: checkpoint.job,
    batchSize: checkpoint.batchSize,
    imagesDone: checkpoint.imagesDone,
    paramCount: checkpoint.imagesDone ? checkpoint.weights.length / checkpoint.imagesDone : 0,
  }));
  const prefix = new Uint8Array(16);
  prefix.set(MAGIC);
  const view = new DataView(prefix.buffer);
  view.setUint32(8, VERSION, true);
  view.setUint32(12, header.length, true);
  const padding = new Uint8Array((4 - ((prefix.length + header.length) % 4)) % 4);
  const bytes = concatBytes([
    prefix,
    header,
    padding,
    littleEndianF32(checkpoint.weights),
    littleEndianF32(checkpoint.psnr),
  ]);

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
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new UsageError(`Checkpoint ${path} could not be read: ${(error as Error).message}`);
  }
  const damaged = (reason: string) =>
    new UsageError(`Checkpoint ${path} is damaged (${reason}). Delete it to start the encode over.`);

  if (bytes.length < 16 || !MAGIC.every((b, i) => bytes[i] === b)) throw damaged("not an encode checkpoint");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== VERSION) throw damaged(`unsupported version ${version}`);
  const headerLength = view.getUint32(12, true);
  if (16 + headerLength > bytes.length) throw damaged("truncated header");

  let header: { job: EncodeJob; batchSize: number; imagesDone: number; paramCount: number };
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + headerLength)));
  } catch {
    throw damaged("invalid JSON header");
  }
  const { job, batchSize, imagesDone, paramCount } = header ?? {};
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

/** Deletes the checkpoint and any temporary file left by an interrupted write. */
export async function removeEncodeCheckpoint(path: string): Promise<void> {
  for (const file of [path, `${path}.tmp`]) {
    await Deno.remove(file).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
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
