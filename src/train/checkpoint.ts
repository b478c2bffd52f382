// Training checkpoints: the state after each finished epoch, stored as a
// safetensors file so a killed run can continue where it stopped.
//
// Tensors: the network's weights and running statistics under their
// torchvision names, plus the SGD momentum buffer as `optimizer.velocity`
// (the whole parameter arena, alignment padding included). Metadata: the
// format tag, the job fingerprint and the finished epoch records, as JSON.

import { decodeSafetensors, encodeSafetensors, type NamedTensor } from "../format/safetensors.ts";
import type { EpochRecord, ResumeState } from "./trainer.ts";
import type { ResNet18 } from "./resnet.ts";

const FORMAT = "rapid-inr train checkpoint 1";
const VELOCITY = "optimizer.velocity";

/**
 * Settings that must match for a checkpoint to continue a run: with any of
 * them changed, the remaining epochs would not equal an uninterrupted run.
 */
export type TrainFingerprint = Record<string, string | number>;

/** A training checkpoint as read from disk. */
export interface TrainCheckpoint extends ResumeState {
  fingerprint: TrainFingerprint;
}

/** Raised for a checkpoint file that cannot be read or belongs to another job. */
export class CheckpointError extends Error {
  // The CLI matches error names, so this is reported like a usage error: exit code 2, no stack trace.
  override name = "UsageError";
}

/** Reads the network and momentum from the GPU and serializes them with `records` and `fingerprint`. */
export async function encodeTrainCheckpoint(
  net: ResNet18,
  job: { fingerprint: TrainFingerprint; records: EpochRecord[] },
): Promise<Uint8Array> {
  const tensors: NamedTensor[] = await net.readTensors();
  const velocity = await net.readVelocity();
  tensors.push({ name: VELOCITY, shape: [velocity.length], data: velocity });
  return encodeSafetensors(tensors, {
    format: FORMAT,
    fingerprint: JSON.stringify(job.fingerprint),
    epochs: JSON.stringify(job.records),
  });
}

/** Parses checkpoint bytes. `file` names the source in error messages. */
export function decodeTrainCheckpoint(bytes: Uint8Array, file: string): TrainCheckpoint {
  let decoded;
  try {
    decoded = decodeSafetensors(bytes, file);
  } catch (error) {
    throw new CheckpointError(`${(error as Error).message} Delete the checkpoint to start over.`);
  }
  const { tensors, metadata } = decoded;
  if (metadata.format !== FORMAT) {
    throw new CheckpointError(`${file} is not a rapid-inr training checkpoint (format "${metadata.format ?? "missing"}"). Delete it or choose another --checkpoint.`);
  }
  const velocity = tensors.get(VELOCITY);
  if (!velocity || !(velocity.data instanceof Float32Array)) {
    throw new CheckpointError(`${file} has no F32 tensor ${VELOCITY}. Delete the checkpoint to start over.`);
  }
  tensors.delete(VELOCITY);
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, tensor] of tensors) {
    if (!(tensor.data instanceof Float32Array)) throw new CheckpointError(`${file}: tensor ${name} is not F32. Delete the checkpoint to start over.`);
    weights.set(name, { shape: tensor.shape, data: tensor.data });
  }
  let fingerprint: TrainFingerprint, records: EpochRecord[];
  try {
    fingerprint = JSON.parse(metadata.fingerprint);
    records = JSON.parse(metadata.epochs);
  } catch {
    throw new CheckpointError(`${file} has invalid fingerprint or epoch metadata. Delete the checkpoint to start over.`);
  }
  return { fingerprint, records, tensors: weights, velocity: velocity.data };
}

/** Reads a checkpoint file, or returns undefined when `path` does not exist. */
export async function readTrainCheckpoint(path: string): Promise<TrainCheckpoint | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  return decodeTrainCheckpoint(bytes, path);
}

/**
 * Throws a CheckpointError naming every setting where `stored` differs from
 * `current`, including settings present in only one of them.
 */
export function checkTrainFingerprint(stored: TrainFingerprint, current: TrainFingerprint, file: string): void {
  const keys = new Set([...Object.keys(stored), ...Object.keys(current)]);
  const differences: string[] = [];
  for (const key of keys) {
    if (stored[key] !== current[key]) {
      differences.push(`${key} is ${JSON.stringify(current[key] ?? null)}, the checkpoint has ${JSON.stringify(stored[key] ?? null)}`);
    }
  }
  if (differences.length > 0) {
    throw new CheckpointError(
      `${file} belongs to another training job: ${differences.join("; ")}. Rerun with the checkpoint's settings, or delete it to start over.`,
    );
  }
}
