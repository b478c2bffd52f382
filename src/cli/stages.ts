// The pipeline stages behind the subcommands: encode, compress, decode and
// train. `run` chains them; each subcommand calls one. Every stage returns the
// figures its --json output reports and writes its outputs atomically.

import { basename, join, resolve } from "@std/path";
import { type Dataset, DataError, detectDatasetKind, encodePng, loadDataset } from "../data/mod.ts";
import { codeBitsPerImage, encodeQans } from "../format/entropy.ts";
import { encodeRinr, encodeSafetensors, type RinrDataset, type RinrFile, readRinr, writeRinr } from "../format/mod.ts";
import { Gpu, GpuDeviceLostError } from "../gpu/device.ts";
import { InrDecoder } from "../inr/decode.ts";
import { encodeImages } from "../inr/encode.ts";
import { encodePreset } from "../inr/presets.ts";
import { chooseLayerBitsLadder } from "../inr/layer_bits.ts";
import { DEFAULT_SPARSITIES, pruneAndTune, selectSteps } from "../inr/prune.ts";
import { dequantize, type QuantizedInrs, quantize, residentDatasetBytes, resolveLayerBits } from "../inr/quantize.ts";
import { type SirenArch, sirenParamCount } from "../inr/siren.ts";
import { percentile } from "../report/rd.ts";
import { cosineLearningRate, type InputKind, train, type TrainInput } from "../train/trainer.ts";
import {
  checkTrainFingerprint,
  encodeTrainCheckpoint,
  readTrainCheckpoint,
  type TrainCheckpoint,
  type TrainFingerprint,
} from "../train/checkpoint.ts";
import {
  compressCheckpointPath,
  type CompressCheckpoint,
  compressJob,
  compressJobDifferences,
  encodeCheckpointPath,
  type EncodeCheckpoint,
  encodeJob,
  jobDifferences,
  readCompressCheckpoint,
  readEncodeCheckpoint,
  removeCheckpoint,
  removeEncodeCheckpoint,
  writeCompressCheckpoint,
  writeEncodeCheckpoint,
} from "./checkpoint.ts";
import { formatDuration, type Log } from "./log.ts";
import { UsageError } from "./options.ts";

/** A dataset location and the part of it to use. */
export interface DatasetSpec {
  path: string;
  /** Split folder or name; default: the loader's ("train", or the folder itself). */
  split?: string;
  /** Side R the images are resized to. */
  size?: number;
  limitPerClass?: number;
  limit?: number;
  /** Decode only the first N selected images. */
  first?: number;
  /** Fail on the first unreadable or corrupt image; default: skip it with a warning. */
  strict?: boolean;
  /** Largest fraction (0..1) of the requested images that may be skipped; default: the loader's, 0.01. */
  maxBadFraction?: number;
}

/** Loads a dataset, reporting progress and each skipped file on `log`. */
export async function loadSpec(spec: DatasetSpec, log: Log): Promise<Dataset> {
  const startedAt = performance.now();
  const dataset = await loadDataset(spec.path, {
    split: spec.split,
    size: spec.size,
    limitPerClass: spec.limitPerClass,
    limit: spec.limit,
    first: spec.first,
    strict: spec.strict,
    maxBadFraction: spec.maxBadFraction,
    onWarning: (message: string) => log.warn(message),
    onProgress: (done: number, total: number) =>
      log.progress(`load ${spec.split ?? "images"}`, { done, total, startedAt, unit: "images" }),
  });
  const count = dataset.labels.length;
  const skipped = dataset.skipped?.length ?? 0;
  const skippedNote = skipped > 0 ? `; skipped ${skipped} unreadable or corrupt image${skipped === 1 ? "" : "s"} (see the warnings)` : "";
  const classes = new Set(dataset.labels).size;
  log.info(`Loaded ${count} images of ${dataset.side}x${dataset.side} px in ${classes} ${classes === 1 ? "class" : "classes"} from ${spec.path}${spec.split ? ` (${spec.split})` : ""}${skippedNote}.`);
  return dataset;
}

/** Picks the test split next to `train`: "test" if it exists, else "val". */
export async function defaultTestSplit(path: string): Promise<string> {
  try {
    await Deno.stat(path);
  } catch {
    throw new DataError(path, "not found. Check the dataset path.");
  }
  for (const split of ["test", "val"]) {
    try {
      const info = await Deno.stat(join(path, split));
      if (info.isDirectory) return split;
    } catch {
      // try the next name
    }
  }
  const kind = await detectDatasetKind(path).catch(() => "image-folder");
  if (kind !== "image-folder") return "test";
  throw new UsageError(`No "test" or "val" folder in ${path}. Name the test split with --test-split, or the folder with --test.`);
}

export async function withGpu<T>(log: Log, fn: (gpu: Gpu) => Promise<T>): Promise<T> {
  const gpu = await Gpu.create({ notice: log.verbosity !== "quiet" });
  try {
    return await fn(gpu);
  } finally {
    gpu.destroy();
  }
}

function mean(values: ArrayLike<number>): number {
  let sum = 0, count = 0;
  for (let i = 0; i < values.length; i++) {
    if (Number.isFinite(values[i])) {
      sum += values[i];
      count++;
    }
  }
  return count ? sum / count : Infinity;
}

// ---------------------------------------------------------------- encode

/** Settings of the encode stage. */
export interface EncodeStageOptions {
  dataset: DatasetSpec;
  output: string;
  preset: string;
  arch?: Partial<SirenArch>;
  iterations?: number;
  learningRate?: number;
  batchSize?: number;
  seed: number;
  progressEvery?: number;
  overwrite: boolean;
  /**
   * Continue from the checkpoint `<output>.partial` of an interrupted run with
   * the same settings. Default false: an existing checkpoint is an error.
   */
  resume?: boolean;
}

/** Figures of a finished encode. */
export interface EncodeReport {
  output: string;
  images: number;
  resolution: number;
  arch: SirenArch;
  iterations: number;
  meanPsnr: number;
  minPsnr: number;
  imagesPerSecond: number;
  seconds: number;
  seed: number;
  /** Images skipped as unreadable or corrupt while loading the dataset. */
  skippedImages: number;
  /** True when `run --resume` reused a finished file; speed figures are then NaN. */
  reused?: boolean;
}

/** Fits one SIREN per image of the dataset and writes an fp32 .rinr file. */
export async function encodeStage(options: EncodeStageOptions, log: Log): Promise<EncodeReport> {
  const preset = encodePreset(options.preset);
  const size = options.dataset.size ?? preset.side;
  const checkpoint = encodeCheckpointPath(options.output);
  // Loading a dataset can take minutes, so the outputs are checked first.
  await refuseOverwrite(options.output, options.overwrite);
  if (!options.resume) await rejectEncodeCheckpoint(checkpoint);
  const dataset = await loadSpec({ ...options.dataset, size }, log);
  const arch: SirenArch = { ...preset.arch, ...options.arch };
  const iterations = options.iterations ?? preset.iterations;
  const learningRate = options.learningRate ?? preset.learningRate;
  const job = await encodeJob({ ...options.dataset, preset: preset.name, arch, iterations, learningRate, seed: options.seed }, dataset);
  const resume = options.resume ? await loadResume(checkpoint, job, options, log) : undefined;
  // Printed before the work because Ctrl-C or a kill ends the process silently. A SIGINT
  // handler could print it only after the GPU work in flight, which takes minutes per batch
  // on a software adapter.
  log.info(
    `Finished images are saved to ${checkpoint} after every batch; ` +
      "if this run stops, run the same command with --resume to continue.",
  );
  log.info(`Encoding with ${arch.sineLayers} sine layers of width ${arch.width}, ${iterations} iterations, learning rate ${learningRate}, seed ${options.seed}.`);

  let saved = resume?.imagesDone ?? 0;
  let savedBatchSize = resume?.batchSize;
  let batchStartedAt = performance.now();
  const result = await withGpu(log, (gpu) =>
    encodeImages(gpu, { images: dataset.images, count: dataset.labels.length, side: dataset.side }, {
      preset: preset.name,
      arch,
      iterations,
      learningRate,
      batchSize: resume?.batchSize ?? options.batchSize,
      seed: options.seed,
      progressEvery: options.progressEvery,
      resume,
      onBatch: async (batch) => {
        await writeEncodeCheckpoint(checkpoint, {
          job,
          batchSize: batch.batchSize,
          imagesDone: batch.imagesDone,
          weights: batch.weights.subarray(0, batch.imagesDone * (batch.weights.length / batch.imageCount)),
          psnr: batch.psnr.subarray(0, batch.imagesDone),
        });
        const first = saved;
        saved = batch.imagesDone;
        savedBatchSize = batch.batchSize;
        const psnr = batch.psnr.subarray(first, batch.imagesDone);
        const now = performance.now();
        log.detail(
          `encode batch: images ${first + 1}-${batch.imagesDone} of ${batch.imageCount}, ` +
            `mean PSNR ${mean(psnr).toFixed(2)} dB, min ${Math.min(...psnr).toFixed(2)} dB, ` +
            `${((now - batchStartedAt) / 1000).toFixed(2)} s; saved to ${checkpoint}`,
        );
        batchStartedAt = now;
      },
      onWarning: (message) => log.warn(message),
      onProgress: (p) => {
        log.progress("encode", {
          done: p.imagesDone,
          total: p.imageCount,
          fraction: (p.batchStart * iterations + p.iteration * p.batchImages) / (p.imageCount * iterations),
          doneBefore: resume?.imagesDone ?? 0,
          startedAt: performance.now() - p.seconds * 1000,
          unit: "images",
          // Images count only once their batch ends, so the iteration shows progress inside a batch.
          status: `batch of ${p.batchImages} at iteration ${p.iteration}/${p.iterations}, mean PSNR ${p.meanPsnr.toFixed(2)} dB`,
        });
      },
    })
  ).catch((error) => {
    if (!(error instanceof GpuDeviceLostError)) throw error;
    if (saved === 0) throw error.withNote("No batch had finished, so nothing was saved; run the same command again.");
    // A batch halved to fit memory is recorded in the checkpoint, and a resume must ask for that size.
    const halved = options.batchSize !== undefined && savedBatchSize !== options.batchSize;
    throw error.withNote(
      `${saved} of ${dataset.labels.length} images are saved in ${checkpoint}; run the same command with ` +
        `--resume${halved ? ` and --encode-batch ${savedBatchSize}` : ""} to continue.`,
    );
  });

  await writeRinr(options.output, {
    arch,
    resolution: dataset.side,
    classNames: dataset.classNames,
    labels: Uint32Array.from(dataset.labels),
    psnr: result.psnr,
    weights: result.weights,
    source: options.dataset.path,
    encode: {
      seed: options.seed,
      split: options.dataset.split ?? null,
      limitPerClass: options.dataset.limitPerClass ?? null,
      limit: options.dataset.limit ?? null,
      // compress and decode reload the source images and must skip the same files.
      maxBadFraction: options.dataset.maxBadFraction ?? null,
      skippedImages: dataset.skipped?.length ?? 0,
      preset: preset.name,
      iterations,
      learningRate,
      batchSize: result.batchSize,
    },
  }, { overwrite: options.overwrite });
  // Only now is the finished work safe in the output, so the checkpoint can go.
  await removeEncodeCheckpoint(checkpoint);

  const report: EncodeReport = {
    output: options.output,
    images: dataset.labels.length,
    resolution: dataset.side,
    arch,
    iterations,
    meanPsnr: mean(result.psnr),
    minPsnr: Math.min(...result.psnr),
    imagesPerSecond: result.imagesPerSecond,
    seconds: result.seconds,
    seed: options.seed,
    skippedImages: dataset.skipped?.length ?? 0,
  };
  // After a resume, the time and the rate cover only the images fitted by this run.
  const fittedNow = resume ? ` (${report.images - resume.imagesDone} in this run)` : "";
  const skipped = report.skippedImages > 0
    ? `, skipped ${report.skippedImages} unreadable image${report.skippedImages === 1 ? "" : "s"}`
    : "";
  log.result(`Encoded ${report.images} images${fittedNow} in ${formatDuration(report.seconds)} (${report.imagesPerSecond.toFixed(2)} images/s)${skipped}, mean PSNR ${report.meanPsnr.toFixed(2)} dB; wrote ${options.output}.`);
  return report;
}

// Rejects the checkpoint of an interrupted encode when --resume is not given,
// so that a new run never discards finished work.
async function rejectEncodeCheckpoint(path: string): Promise<void> {
  const saved = await readEncodeCheckpoint(path);
  if (!saved) return;
  throw new UsageError(
    `Checkpoint ${path} exists from an interrupted encode (${saved.imagesDone} of ${saved.job.images} images done). ` +
      `Pass --resume to continue it, or delete the file to start over.`,
  );
}

// Returns the checkpoint to continue from with --resume, or undefined to start
// at the first image. Rejects a checkpoint whose job differs.
async function loadResume(
  path: string,
  job: EncodeCheckpoint["job"],
  options: EncodeStageOptions,
  log: Log,
): Promise<EncodeCheckpoint | undefined> {
  const saved = await readEncodeCheckpoint(path);
  if (!saved) {
    log.info(`No checkpoint ${path} found; encoding from the first image.`);
    return undefined;
  }
  const progress = `${saved.imagesDone} of ${saved.job.images} images`;
  const differences = jobDifferences(saved.job, job);
  if (options.batchSize !== undefined && options.batchSize !== saved.batchSize) {
    differences.push(`--encode-batch: ${saved.batchSize} in the checkpoint, ${options.batchSize} now`);
  }
  if (differences.length > 0) {
    throw new UsageError(
      `Cannot resume from checkpoint ${path}: the settings differ (${differences.join("; ")}). ` +
        `Run again with the checkpoint's settings, or delete the file to start over.`,
    );
  }
  log.info(`Resuming from checkpoint ${path}: ${progress} done, batch size ${saved.batchSize}.`);
  return saved;
}

async function refuseOverwrite(path: string, overwrite: boolean): Promise<void> {
  if (overwrite) return;
  try {
    await Deno.lstat(path);
  } catch {
    return;
  }
  throw new UsageError(`Output ${path} already exists. Choose another path or pass --force to replace it.`);
}

// ---------------------------------------------------------------- compress

/** Settings of the compress stage. */
export interface CompressStageOptions {
  input: string;
  output: string;
  /** "auto" (chosen per layer by sensitivity), one bit width for every layer, or one per layer. */
  bits: "auto" | number | number[];
  /** Largest PSNR loss one layer may cause alone when bits are "auto", dB. Default 0.25. */
  layerToleranceDb?: number;
  /** Fine-tuning iterations per pruning step; 0 only rounds the fp32 weights. Default 100. */
  tuneIterations?: number;
  /** Initial learning rate of the fine-tuning. Default 3e-4. */
  tuneLearningRate?: number;
  /** Sparsity schedule of the pruning steps. Default DEFAULT_SPARSITIES. */
  sparsities?: number[];
  /** Largest PSNR loss per image against its fp32 fit, dB. Default 1. Ignored with `targetPercent`. */
  maxPsnrDrop?: number;
  /** File size target in percent of the raw RGB size; picks each image's pruning step to meet it. */
  targetPercent?: number;
  /** Dataset to measure PSNR against; default: the source recorded in the file. */
  source?: string;
  overwrite: boolean;
  /**
   * true stores the codes rANS-coded (section QANS), false packed (QCOD).
   * Both decode to the same codes. Default: whichever file is smaller.
   */
  entropy?: boolean;
  /** Images fine-tuned per batch. Default: as many as fit the GPU memory budget, in equal batches. */
  tuneBatch?: number;
  /**
   * Continue the fine-tuning from the checkpoint `<output>.partial` of an
   * interrupted run with the same settings. Default false: an existing
   * checkpoint is an error.
   */
  resume?: boolean;
}

/** Figures of a finished compression. */
export interface CompressReport {
  output: string;
  images: number;
  bitsPerLayer: number[];
  /** Size of the written file in bytes, after entropy coding if any. */
  storedBytes: number;
  rawBytes: number;
  percentOfRaw: number;
  /** Bits of the file per pixel of the images it holds. */
  bitsPerPixel: number;
  /** Whether the file stores the codes rANS-coded (section QANS). */
  entropyCoded: boolean;
  /** Bytes the decoder keeps on the GPU: packed codes and ranges. */
  residentBytes: number;
  /** Resident bytes per image. */
  residentBytesPerImage: number;
  /** Mean PSNR of the input (unquantized) weights against the source images, dB. */
  meanPsnrBefore: number;
  /** Mean PSNR of the quantized weights against the source images, dB. */
  meanPsnr: number;
  /** 5th percentile of the per-image PSNR of the quantized weights, dB. */
  p5Psnr: number;
  /** Fraction of all weights that are zero: pruned, or rounded to the zero code. */
  sparsity: number;
  /** Layer tolerance in dB that chose the widths of --bits auto; absent for given widths. */
  layerToleranceDb?: number;
  /** Fine-tuning iterations per pruning step; 0 when the weights were only rounded. */
  tuneIterations: number;
  /** Images per pruning step chosen, one count per sparsity of the schedule. */
  stepImages?: number[];
  /** Sparsity schedule that was run. */
  sparsities?: number[];
  /** True when `run --resume` reused a finished file. */
  reused?: boolean;
}

/** Quantizes (and by default prunes and fine-tunes) the weights of a .rinr file and writes a new file. */
export async function compressStage(options: CompressStageOptions, log: Log): Promise<CompressReport> {
  // Outputs and a leftover checkpoint are checked before anything is loaded.
  await refuseOverwrite(options.output, options.overwrite);
  const checkpoint = compressCheckpointPath(options.output);
  if (!options.resume) await rejectCompressCheckpoint(checkpoint);
  const file = await readRinr(options.input);
  if (!(file.weights instanceof Float32Array)) {
    throw new UsageError(`${options.input} is already quantized. Compress the fp32 file that encode wrote.`);
  }
  const weights = file.weights;
  const tuneIterations = options.tuneIterations ?? 100;
  const sparsities = options.sparsities ?? [...DEFAULT_SPARSITIES];
  const maxPsnrDrop = options.maxPsnrDrop ?? 1;
  if (!Number.isInteger(tuneIterations) || tuneIterations < 0) {
    throw new UsageError(`--tune-iterations must be a non-negative integer, got ${tuneIterations}.`);
  }
  if (!(maxPsnrDrop >= 0)) throw new UsageError(`--max-psnr-drop must be a non-negative number of dB, got ${maxPsnrDrop}.`);
  if (options.targetPercent !== undefined && !(options.targetPercent > 0)) {
    throw new UsageError(`--target-percent must be a positive percentage, got ${options.targetPercent}.`);
  }
  const source = await sourceImages(file, options.source, log);
  const q = sirenParamCount(file.arch);
  const rawBytes = file.labels.length * file.resolution * file.resolution * 3;
  const job = await compressJob({
    input: options.input,
    // sourceImages has loaded this path, so it is defined.
    source: (options.source ?? file.source)!,
    bits: options.bits === "auto" ? "auto" : resolveLayerBits(file.arch, options.bits),
    layerToleranceDb: options.bits === "auto" ? options.layerToleranceDb ?? 0.25 : null,
    sparsities,
    iterations: tuneIterations,
    learningRate: options.tuneLearningRate ?? 3e-4,
  }, source);
  const resume = await loadCompressResume(checkpoint, job, options, log);

  // The settings go into the header's encode record, so that `run --resume` can check them.
  const withCompressRecord = (bits: number[], layerToleranceDb?: number) => ({
    ...file.encode,
    compress: {
      bits,
      ...(layerToleranceDb !== undefined ? { layerToleranceDb } : {}),
      tuneIterations,
      ...(tuneIterations > 0
        ? {
          sparsities,
          learningRate: options.tuneLearningRate ?? 3e-4,
          ...(options.targetPercent === undefined ? { maxPsnrDrop } : { targetPercent: options.targetPercent }),
        }
        : {}),
    },
  });
  const startedAt = performance.now();
  // Images whose fine-tuning is saved in the checkpoint, for the message when the device is lost.
  let tunedSaved = resume?.imagesDone ?? 0;
  let batchStarted = performance.now();
  const result = await withGpu(log, async (gpu) => {
    const before = await psnrOnGpu(gpu, file, weights, source);
    // A resumed run keeps the checkpoint's bits: the sensitivity search could choose others.
    let bits: number[];
    let layerToleranceDb: number | undefined;
    if (resume) {
      bits = resume.bits;
      layerToleranceDb = resume.layerToleranceDb;
      log.info(`Bits per layer ${bits.join(",")} (from the checkpoint).`);
    } else if (options.bits === "auto") {
      ({ bits, toleranceDb: layerToleranceDb } = await autoLayerBits(gpu, {
        file,
        weights,
        source,
        toleranceDb: options.layerToleranceDb,
        targetBytes: options.targetPercent === undefined ? undefined : (options.targetPercent / 100) * rawBytes,
      }, log));
    } else {
      bits = resolveLayerBits(file.arch, options.bits);
    }

    let quantized: QuantizedInrs;
    let stepImages: number[] | undefined;
    if (tuneIterations === 0) {
      quantized = quantize(file.arch, weights, bits);
    } else {
      const tuned = await pruneAndTune(gpu, {
        arch: file.arch,
        side: file.resolution,
        images: source.images,
        weights,
        bits,
        sparsities,
        iterations: tuneIterations,
        learningRate: options.tuneLearningRate ?? 3e-4,
        batchSize: options.tuneBatch,
        resume,
        onWarning: (message) => log.warn(message),
        onBatch: async (batch) => {
          const now = performance.now();
          const steps = batch.steps.map((step) =>
            `${step.sparsity}: ${mean(step.psnr.subarray(tunedSaved, batch.imagesDone)).toFixed(2)} dB`
          );
          log.detail(
            `compress batch: images ${tunedSaved + 1}-${batch.imagesDone} of ${batch.imageCount}, ` +
              `${((now - batchStarted) / 1000).toFixed(1)} s; mean PSNR per sparsity ${steps.join(", ")}`,
          );
          batchStarted = now;
          tunedSaved = batch.imagesDone;
          await writeCompressCheckpoint(checkpoint, {
            job,
            bits,
            ...(layerToleranceDb !== undefined ? { layerToleranceDb } : {}),
            batchSize: batch.batchSize,
            imagesDone: batch.imagesDone,
            steps: batch.steps.map((step) => ({
              sparsity: step.sparsity,
              weights: step.weights.subarray(0, batch.imagesDone * q),
              mask: step.mask.subarray(0, batch.imagesDone * q),
              psnr: step.psnr.subarray(0, batch.imagesDone),
            })),
          });
        },
        onProgress: (p) =>
          log.progress("compress", {
            done: p.done,
            total: p.total,
            startedAt,
            unit: "image-iterations",
            status: `step ${p.step + 1}/${sparsities.length} (sparsity ${sparsities[p.step]}), batch mean PSNR ${p.meanPsnr.toFixed(2)} dB`,
          }),
      });
      const assemble = (chosen: Uint32Array) => {
        const finalWeights = new Float32Array(weights.length);
        const mask = new Uint8Array(weights.length);
        chosen.forEach((k, n) => {
          finalWeights.set(tuned.steps[k].weights.subarray(n * q, (n + 1) * q), n * q);
          mask.set(tuned.steps[k].mask.subarray(n * q, (n + 1) * q), n * q);
        });
        return quantize(file.arch, finalWeights, { bits, mask });
      };
      let chosen: Uint32Array;
      if (options.targetPercent === undefined) {
        chosen = selectSteps(tuned.steps, { kind: "psnr-drop", maxDrop: maxPsnrDrop, reference: file.psnr });
      } else {
        // The per-image estimates leave out the coder tables and shifts in the
        // symbol statistics of the mixed file, so the file is measured and the
        // budget tightened by the excess until the file fits.
        const stepBits = tuned.steps.map((step) => codeBitsPerImage(quantize(file.arch, step.weights, { bits, mask: step.mask })));
        const targetBytes = (options.targetPercent / 100) * rawBytes;
        // The unpruned rounding of the fp32 weights measures what the rest of the file takes.
        const unpruned = quantize(file.arch, weights, bits);
        let budget = sizeBudgetBits(file, { quantized: unpruned, targetPercent: options.targetPercent, rawBytes });
        chosen = selectSteps(tuned.steps, { kind: "size", maxBits: budget, stepBits });
        for (let attempt = 0; attempt < 8; attempt++) {
          const candidate = { ...file, encode: withCompressRecord(bits), weights: assemble(chosen) };
          const bytes = encodeRinr(candidate, { entropy: "auto" }).byteLength;
          if (bytes <= targetBytes || budget <= 0) break;
          budget -= (bytes - targetBytes) * 8;
          chosen = selectSteps(tuned.steps, { kind: "size", maxBits: Math.max(0, budget), stepBits });
        }
      }
      stepImages = sparsities.map(() => 0);
      chosen.forEach((k) => stepImages![k]++);
      quantized = assemble(chosen);
    }

    const decoder = await InrDecoder.create(gpu, { ...file, weights: quantized });
    try {
      const after = await psnrPerImage(decoder, source);
      return { before, after, quantized, stepImages, layerToleranceDb, residentBytes: decoder.residentBytes };
    } finally {
      decoder.destroy();
    }
  }).catch((error) => {
    if (!(error instanceof GpuDeviceLostError)) throw error;
    if (tunedSaved === 0) throw error.withNote("No fine-tuning batch had finished, so nothing was saved; run the same command again.");
    throw error.withNote(
      `${tunedSaved} of ${file.labels.length} images are fine-tuned and saved in ${checkpoint}; run the same command with --resume to continue.`,
    );
  });
  const { quantized, after } = result;

  // The choice is made here, not by entropy "auto" in writeRinr, so the report can state which section was written.
  const entropyCoded = options.entropy ?? encodeQans(quantized).byteLength < quantized.codes.byteLength;
  const encodeRecord = withCompressRecord(quantized.bits, result.layerToleranceDb);
  await writeRinr(options.output, { ...file, encode: encodeRecord, weights: quantized, psnr: after }, {
    overwrite: options.overwrite,
    entropy: entropyCoded ? "on" : "off",
  });
  // Only now is the finished work safe in the output, so the checkpoint can go.
  await removeCheckpoint(checkpoint);
  const storedBytes = (await Deno.stat(options.output)).size;
  const pixels = file.labels.length * file.resolution * file.resolution;
  const zeros = countZeros(quantized);
  const report: CompressReport = {
    output: options.output,
    images: file.labels.length,
    bitsPerLayer: quantized.bits,
    storedBytes,
    rawBytes,
    percentOfRaw: (100 * storedBytes) / rawBytes,
    bitsPerPixel: (8 * storedBytes) / pixels,
    entropyCoded,
    residentBytes: result.residentBytes,
    residentBytesPerImage: result.residentBytes / file.labels.length,
    meanPsnrBefore: mean(result.before),
    meanPsnr: mean(after),
    p5Psnr: percentile(after, 0.05),
    sparsity: zeros / (q * file.labels.length),
    tuneIterations,
    ...(result.layerToleranceDb !== undefined ? { layerToleranceDb: result.layerToleranceDb } : {}),
    ...(result.stepImages ? { stepImages: result.stepImages, sparsities } : {}),
  };
  if (options.targetPercent !== undefined && report.percentOfRaw > options.targetPercent) {
    log.warn(
      `The file is ${report.percentOfRaw.toFixed(2)}% of the raw size, above --target-percent ${options.targetPercent}, even with every image at its sparsest step. ` +
        "Use fewer --bits, add larger sparsities to --prune, or encode with a smaller SIREN (--layers, --width), " +
        "which usually loses less PSNR at a small size than pruning a large one.",
    );
  }
  log.result(
    `Compressed to ${storedBytes} bytes${entropyCoded ? " (rANS-coded)" : ""}, ${report.percentOfRaw.toFixed(2)}% of the raw RGB size (${rawBytes} bytes), ` +
      `${report.bitsPerPixel.toFixed(3)} bits per pixel; ${(report.residentBytesPerImage).toFixed(0)} bytes per image on the GPU; ` +
      `bits per layer ${report.bitsPerLayer.join(",")}, ${(100 * report.sparsity).toFixed(1)}% of weights zero` +
      (report.stepImages ? `, images per step ${report.stepImages.join("/")} (sparsity ${sparsities.join("/")})` : "") +
      "; " +
      `PSNR ${report.meanPsnrBefore.toFixed(2)} -> ${report.meanPsnr.toFixed(2)} dB mean, ${report.p5Psnr.toFixed(2)} dB 5th percentile; wrote ${options.output}.`,
  );
  return report;
}

// Throws when a checkpoint exists at `path`, which needs --resume or deleting.
async function rejectCompressCheckpoint(path: string): Promise<void> {
  if (!await Deno.lstat(path).then(() => true, () => false)) return;
  // A damaged checkpoint gets this message too, only without the count of finished images.
  const saved = await readCompressCheckpoint(path).catch(() => null);
  const progress = saved ? ` (${saved.imagesDone} of ${saved.job.images} images fine-tuned)` : "";
  throw new UsageError(
    `Checkpoint ${path} exists from an interrupted compress${progress}. ` +
      `Pass --resume to continue it, or delete the file to start over.`,
  );
}

// Returns the checkpoint to continue the fine-tuning from, or undefined to
// start at the first image. Rejects a checkpoint without --resume, and one
// whose job differs.
async function loadCompressResume(
  path: string,
  job: CompressCheckpoint["job"],
  options: CompressStageOptions,
  log: Log,
): Promise<CompressCheckpoint | undefined> {
  if (!options.resume) {
    await rejectCompressCheckpoint(path);
    return undefined;
  }
  const saved = await readCompressCheckpoint(path);
  if (!saved) {
    log.info(`No checkpoint ${path} found; fine-tuning from the first image.`);
    return undefined;
  }
  const differences = compressJobDifferences(saved.job, job);
  if (options.tuneBatch !== undefined && options.tuneBatch !== saved.batchSize) {
    differences.push(`--tune-batch: ${saved.batchSize} in the checkpoint, ${options.tuneBatch} now`);
  }
  if (differences.length > 0) {
    throw new UsageError(
      `Cannot resume from checkpoint ${path}: the settings differ (${differences.join("; ")}). ` +
        `Run again with the checkpoint's settings, or delete the file to start over.`,
    );
  }
  log.info(`Resuming from checkpoint ${path}: ${saved.imagesDone} of ${saved.job.images} images fine-tuned, batch size ${saved.batchSize}.`);
  return saved;
}

// Chooses per-layer widths by sensitivity on a sample of at most 64 images,
// fewer for large images so that each measurement decodes about 2^18 pixels.
// With a size target, the tolerance is tightened step by step (down to
// 0.01 dB) while the file of the rounded, unpruned weights still fits it, so
// that a target the widths alone meet is spent on wider layers.
async function autoLayerBits(
  gpu: Gpu,
  input: { file: RinrFile; weights: Float32Array; source: Dataset; toleranceDb?: number; targetBytes?: number },
  log: Log,
): Promise<{ bits: number[]; toleranceDb: number }> {
  const { file, source } = input;
  const q = sirenParamCount(file.arch);
  const pixels = file.resolution * file.resolution;
  const sample = Math.max(1, Math.min(file.labels.length, 64, Math.floor(2 ** 18 / pixels)));
  const sampleFile: RinrFile = { ...file, labels: file.labels.subarray(0, sample), psnr: Float32Array.from(file.psnr).subarray(0, sample) };
  const sampleSource = { ...source, images: source.images.subarray(0, sample * pixels * 3), labels: source.labels.subarray(0, sample) };
  const loosest = input.toleranceDb ?? 0.25;
  const ladder = input.targetBytes === undefined
    ? [loosest]
    : [loosest, ...TIGHTER_TOLERANCES_DB.filter((tolerance) => tolerance < loosest)];
  const choices = await chooseLayerBitsLadder({
    arch: file.arch,
    weights: input.weights.subarray(0, sample * q),
    measure: (weights) => psnrOnGpu(gpu, sampleFile, weights, sampleSource),
  }, ladder);
  // The tightest tolerance first: the first whose rounded file fits is kept.
  let pick = ladder.length - 1;
  while (pick > 0) {
    const rounded = { ...file, weights: quantize(file.arch, input.weights, choices[pick].bits) };
    if (encodeRinr(rounded, { entropy: "auto" }).byteLength <= input.targetBytes!) break;
    pick--;
  }
  const choice = choices[pick];
  const tightened = pick > 0 ? `; layer tolerance ${ladder[pick]} dB, the tightest whose rounded file meets --target-percent` : "";
  log.info(
    `Bits per layer ${choice.bits.join(",")} (rounding one layer alone loses ${choice.lossDb.map((d) => d.toFixed(2)).join(", ")} dB on ${sample} images${tightened}).`,
  );
  return { bits: choice.bits, toleranceDb: ladder[pick] };
}

// Layer tolerances that a size target may tighten --layer-tolerance to, in dB.
const TIGHTER_TOLERANCES_DB = [0.1, 0.05, 0.02, 0.01];

// Bits available to the codes so that the file meets `targetPercent`: the
// target minus what the rest of the file (header, labels, PSNR, ranges and
// coder tables) takes, measured on the file of the unpruned codes.
function sizeBudgetBits(
  file: RinrFile,
  input: { quantized: QuantizedInrs; targetPercent: number; rawBytes: number },
): number {
  const whole = encodeRinr({ ...file, weights: input.quantized }, { entropy: "on" }).byteLength;
  let codeBits = 0;
  for (const bits of codeBitsPerImage(input.quantized)) codeBits += bits;
  const overheadBytes = Math.max(0, whole - codeBits / 8);
  return Math.max(0, (input.targetPercent / 100) * input.rawBytes - overheadBytes) * 8;
}

export function countZeros(weights: QuantizedInrs): number {
  const values = dequantize(weights);
  let zeros = 0;
  for (const v of values) if (v === 0) zeros++;
  return zeros;
}

/**
 * Loads the source images of `file` as encode selected them. With `first`,
 * only the file's first N images are decoded, unless the source has changed
 * or skips bad images: then all are loaded, so the count check still holds.
 */
export async function sourceImages(
  file: RinrFile,
  override: string | undefined,
  log: Log,
  options: { first?: number } = {},
): Promise<Dataset> {
  const encode = file.encode ?? {};
  const path = override ?? file.source;
  if (!path) throw new UsageError(`${file.name} records no source dataset. Pass --source with the encoded image folder.`);
  const spec: DatasetSpec = {
    path,
    split: typeof encode.split === "string" ? encode.split : undefined,
    size: file.resolution,
    limitPerClass: typeof encode.limitPerClass === "number" ? encode.limitPerClass : undefined,
    limit: typeof encode.limit === "number" ? encode.limit : undefined,
    maxBadFraction: typeof encode.maxBadFraction === "number" && encode.maxBadFraction >= 0 && encode.maxBadFraction <= 1 ? encode.maxBadFraction : undefined,
  };
  try {
    if (options.first !== undefined && options.first < file.labels.length) {
      // A bad image among the first N shifts the file's order, and the bad-image limit applies to all images.
      const part = await loadSpec({ ...spec, first: options.first }, log).catch((error) => {
        if (error instanceof DataError) return undefined;
        throw error;
      });
      if (part && part.skipped?.length === 0 && part.selectedCount === file.labels.length) return part;
    }
    const dataset = await loadSpec(spec, log);
    if (dataset.labels.length !== file.labels.length) {
      throw new UsageError(`Source ${path} has ${dataset.labels.length} images but ${file.name} has ${file.labels.length}. Pass --source with the dataset that was encoded.`);
    }
    return dataset;
  } catch (error) {
    if (error instanceof DataError || error instanceof Deno.errors.NotFound) {
      throw new UsageError(`Source images of ${file.name} could not be loaded from ${path}: ${(error as Error).message} Pass --source with the encoded image folder.`);
    }
    throw error;
  }
}

/** Returns the PSNR in dB of each image that `weights` decode to, against the source pixels. */
export async function psnrOnGpu(
  gpu: Gpu,
  file: RinrDataset,
  weights: Float32Array,
  source: Pick<Dataset, "side" | "images">,
): Promise<Float32Array> {
  const decoder = await InrDecoder.create(gpu, { ...file, weights });
  try {
    return await psnrPerImage(decoder, source);
  } finally {
    decoder.destroy();
  }
}

/** PSNR in dB of each decoded 8-bit image against the source pixels. */
export async function psnrPerImage(decoder: InrDecoder, source: Pick<Dataset, "side" | "images">): Promise<Float32Array> {
  const decoded = await decoder.decodeImages({});
  const pixels = source.side * source.side * 3;
  const psnr = new Float32Array(decoder.count);
  for (let n = 0; n < decoder.count; n++) {
    let sum = 0;
    for (let i = n * pixels; i < (n + 1) * pixels; i++) {
      const d = (decoded[i] - source.images[i]) / 255;
      sum += d * d;
    }
    psnr[n] = sum === 0 ? Infinity : 10 * Math.log10(pixels / sum);
  }
  return psnr;
}

// ---------------------------------------------------------------- decode

/** Settings of the decode stage. */
export interface DecodeStageOptions {
  input: string;
  outputDir: string;
  size?: number;
  source?: string;
  limit?: number;
  overwrite: boolean;
}

/** Images decoded on the GPU and then written as PNGs in one step, and reported in one --verbose line. */
const DECODE_CHUNK = 256;

/** Decodes a .rinr file to PNGs under `<outputDir>/<class>/`. */
export async function decodeStage(options: DecodeStageOptions, log: Log) {
  const file = await readRinr(options.input);
  const count = Math.min(options.limit ?? file.labels.length, file.labels.length);
  const size = options.size ?? file.resolution;
  if (options.source !== undefined && size !== file.resolution) {
    throw new UsageError(`PSNR needs the encoded size ${file.resolution}; drop --size or --source.`);
  }
  const paths = Array.from({ length: count }, (_, n) =>
    join(options.outputDir, safeName(file.classNames[file.labels[n]] ?? String(file.labels[n])), `${String(n).padStart(6, "0")}.png`));
  // Checked before the GPU work and the source images, which can take minutes.
  if (!options.overwrite) await rejectExistingFiles(options.outputDir, paths);

  const startedAt = performance.now();
  let decodeSeconds = 0;
  const psnr = await withGpu(log, async (gpu) => {
    const decoder = await InrDecoder.create(gpu, file);
    try {
      let imagePsnr: Float32Array | undefined;
      if (options.source !== undefined) {
        const source = await sourceImages(file, options.source || undefined, log);
        imagePsnr = await psnrPerImage(decoder, source);
      }
      const bytes = size * size * 3;
      for (let first = 0; first < count; first += DECODE_CHUNK) {
        const chunk = Math.min(DECODE_CHUNK, count - first);
        const decodeStart = performance.now();
        const pixels = await decoder.decodeImages({ first, count: chunk, size });
        const writeStart = performance.now();
        decodeSeconds += (writeStart - decodeStart) / 1000;
        for (let i = 0; i < chunk; i++) {
          const path = paths[first + i];
          await Deno.mkdir(join(path, ".."), { recursive: true });
          const png = await encodePng({ rgb: pixels.subarray(i * bytes, (i + 1) * bytes), width: size, height: size });
          await atomicWrite(path, png);
          log.progress("decode", { done: first + i + 1, total: count, startedAt, unit: "images" });
        }
        const chunkPsnr = imagePsnr ? `, mean PSNR ${mean(imagePsnr.subarray(first, first + chunk)).toFixed(2)} dB` : "";
        log.detail(
          `decode chunk: images ${first + 1}-${first + chunk} of ${count}, ` +
            `${((writeStart - decodeStart) / 1000).toFixed(2)} s on the GPU, ` +
            `${((performance.now() - writeStart) / 1000).toFixed(2)} s writing PNGs${chunkPsnr}`,
        );
      }
      return imagePsnr ? mean(imagePsnr.subarray(0, count)) : undefined;
    } finally {
      decoder.destroy();
    }
  });
  log.result(`Decoded ${count} image${count === 1 ? "" : "s"} at ${size}x${size} px into ${options.outputDir}${psnr !== undefined ? `, mean PSNR ${psnr.toFixed(2)} dB` : ""}.`);
  return { outputDir: options.outputDir, images: count, size, meanPsnr: psnr ?? null, decodeSeconds };
}

// Rejects the first of `paths` that exists. Skips the listing when `folder` does not exist yet.
async function rejectExistingFiles(folder: string, paths: string[]): Promise<void> {
  if (!await Deno.lstat(folder).then(() => true, () => false)) return;
  for (const path of paths) await refuseOverwrite(path, false);
}

function safeName(name: string): string {
  return name.replace(/[\/\\\0]/g, "_") || "_";
}

/** Writes `bytes` to a temporary file beside `path`, then renames it into place. */
export async function atomicWrite(path: string, bytes: Uint8Array): Promise<void> {
  const temporary = join(path, "..", `.${basename(path)}.${crypto.randomUUID().slice(0, 8)}.tmp`);
  try {
    await Deno.writeFile(temporary, bytes);
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

// ---------------------------------------------------------------- train

/** Settings of the train stage. */
export interface TrainStageOptions {
  input: InputKind;
  /** .rinr file for the inr pipeline. */
  rinr?: string;
  /** Training dataset for raw and files (default for inr: the file's source, only for its test split). */
  dataset?: DatasetSpec;
  test: DatasetSpec;
  epochs: number;
  batch: number;
  learningRate: number;
  momentum: number;
  weightDecay: number;
  width: number;
  seed: number;
  /** Classifier input side; default the training resolution. */
  size?: number;
  output?: string;
  overwrite: boolean;
  /** Checkpoint file written after each epoch. Default: see `defaultCheckpointPath`. */
  checkpoint?: string;
  /** Continue from the checkpoint if it exists (else start at epoch 1). Default: false, and an existing checkpoint is an error. */
  resume?: boolean;
}

/** Default checkpoint file used when no checkpoint path is given. */
export const DEFAULT_CHECKPOINT = "rapid-inr-train.ckpt.safetensors";

/**
 * Returns the checkpoint path for `output`: `model.safetensors` gives
 * `model.ckpt.safetensors` beside it; without an output, DEFAULT_CHECKPOINT in
 * the current folder.
 */
export function defaultCheckpointPath(output: string | undefined): string {
  if (!output) return DEFAULT_CHECKPOINT;
  return `${output.replace(/\.safetensors$/, "")}.ckpt.safetensors`;
}

/**
 * Rejects an existing `output` without `overwrite`, and an existing training
 * checkpoint without `resume`, before any data is loaded.
 */
export async function checkTrainOutputs(
  options: Pick<TrainStageOptions, "output" | "overwrite" | "checkpoint" | "resume">,
): Promise<void> {
  if (options.output) await refuseOverwrite(options.output, options.overwrite);
  if (options.resume) return;
  const checkpoint = options.checkpoint ?? defaultCheckpointPath(options.output);
  if (await Deno.lstat(checkpoint).then(() => true, () => false)) {
    throw new UsageError(`Checkpoint ${checkpoint} already exists. Pass --resume to continue that run, or delete the file to start over.`);
  }
}

/** String metadata of a classifier safetensors file, as `train -o` and `export` write it. */
export function classifierMetadata(
  info: { width: number; inputSize: number; classNames: string[]; seed: number },
): Record<string, string> {
  return {
    format: "pt",
    architecture: "resnet18",
    width: String(info.width),
    inputSize: String(info.inputSize),
    classes: JSON.stringify(info.classNames),
    stem: info.inputSize <= 64 ? "3x3 stride 1, no max pool" : "7x7 stride 2 with max pool",
    seed: String(info.seed),
  };
}

/** Trains the classifier with the chosen input pipeline and saves its weights. */
export async function trainStage(options: TrainStageOptions, log: Log) {
  await checkTrainOutputs(options);
  let input: TrainInput;
  let classNames: string[];
  let resolution: number;
  if (options.input === "inr") {
    if (!options.rinr) throw new UsageError("--input inr needs a .rinr file: pass it as --data.");
    const file = await readRinr(options.rinr);
    input = { kind: "inr", source: file, count: file.labels.length };
    classNames = file.classNames;
    resolution = file.resolution;
    log.info(`Training from ${file.labels.length} INRs of ${options.rinr}.`);
  } else {
    if (!options.dataset) throw new UsageError(`--input ${options.input} needs a training dataset: pass it as --data.`);
    const dataset = await loadSpec(options.dataset, log);
    if (options.input === "files" && dataset.paths.some((p) => p.includes("#"))) {
      throw new UsageError("--input files needs an image-folder dataset (one file per image); this dataset is a binary batch file.");
    }
    input = options.input === "raw"
      ? { kind: "raw", images: dataset.images, labels: dataset.labels, resolution: dataset.side }
      : { kind: "files", paths: dataset.paths, labels: dataset.labels, resolution: dataset.side };
    classNames = dataset.classNames;
    resolution = dataset.side;
  }
  const trainCount = input.kind === "inr" ? input.count : input.labels.length;
  if (trainCount < options.batch) {
    throw new UsageError(`The training set has ${trainCount} images, fewer than one batch of ${options.batch}. Use a smaller --batch.`);
  }
  const test = await loadSpec({ ...options.test, size: options.size ?? resolution }, log);
  if (test.classNames.join("\n") !== classNames.join("\n")) {
    throw new UsageError(`The test split's classes (${test.classNames.join(", ")}) differ from the training classes (${classNames.join(", ")}).`);
  }

  const size = options.size ?? resolution;
  const checkpointFile = options.checkpoint ?? defaultCheckpointPath(options.output);
  // Keys are the CLI options that set each value, so a mismatch error names the option to fix.
  const fingerprint: TrainFingerprint = {
    ...trainSettingsFingerprint(options, {
      data: options.input === "inr" ? options.rinr! : options.dataset!.path,
      inputSize: size,
    }),
    "training images": trainCount,
    "test images": test.labels.length,
    "classes": classNames.join(","),
  };
  const resume = await openTrainCheckpoint(checkpointFile, fingerprint, options.resume ?? false);
  if (resume) {
    log.info(`Resuming from ${checkpointFile} after epoch ${resume.records.length} of ${options.epochs}.`);
  } else if (options.resume) {
    log.info(`No checkpoint at ${checkpointFile}; starting at epoch 1.`);
  }
  log.info(`Training ResNet-18 (width ${options.width}) at ${size}x${size} px for ${options.epochs} epoch${options.epochs === 1 ? "" : "s"}, batch ${options.batch}, learning rate ${options.learningRate}, input ${options.input}, seed ${options.seed}.`);
  const stepsPerEpoch = Math.floor(trainCount / options.batch);
  let epochStartedAt = performance.now();
  return await withGpu(log, async (gpu) => {
    const result = await train(gpu, {
      input,
      test: { images: test.images, labels: test.labels, resolution: test.side },
      classes: classNames.length,
    }, {
      epochs: options.epochs,
      batch: options.batch,
      learningRate: options.learningRate,
      momentum: options.momentum,
      weightDecay: options.weightDecay,
      width: options.width,
      size,
      seed: options.seed,
      resume,
      onProgress: (p) => {
        epochStartedAt = p.startedAt;
        log.progress(`epoch ${p.epoch + 1}/${options.epochs}`, {
          done: p.step,
          total: p.stepsPerEpoch,
          startedAt: p.startedAt,
          unit: "steps",
          status: `loss ${p.loss.toFixed(4)}`,
        });
      },
      onEpoch: async (r, state) => {
        const evaluatedAt = performance.now();
        // Saved before the log line, so a caller that stops at an epoch's message keeps that epoch.
        await atomicWrite(checkpointFile, await encodeTrainCheckpoint(state.net, { fingerprint, records: state.records }));
        const savedAt = performance.now();
        log.info(`epoch ${r.epoch}: train loss ${r.trainLoss.toFixed(4)}, train accuracy ${(100 * r.trainAccuracy).toFixed(1)}%, test accuracy ${(100 * r.testAccuracy).toFixed(1)}%, ${r.imagesPerSecond.toFixed(1)} images/s`);
        // The record gives the training rate, so the rest of the epoch's time up to onEpoch is the test evaluation.
        const trainSeconds = (stepsPerEpoch * options.batch) / r.imagesPerSecond;
        const evaluateSeconds = Math.max(0, (evaluatedAt - epochStartedAt) / 1000 - trainSeconds);
        const firstRate = cosineLearningRate(options.learningRate, (r.epoch - 1) * stepsPerEpoch, stepsPerEpoch * options.epochs);
        log.detail(
          `epoch ${r.epoch} detail: learning rate ${significant(firstRate)} to ${significant(r.lastLearningRate)} (cosine), ` +
            `${trainSeconds.toFixed(2)} s training, ${evaluateSeconds.toFixed(2)} s test evaluation, ` +
            `${((savedAt - evaluatedAt) / 1000).toFixed(2)} s saving ${checkpointFile}`,
        );
      },
    });
    try {
      if (options.output) {
        const tensors = await result.net.readTensors();
        const metadata = classifierMetadata({ width: options.width, inputSize: size, classNames, seed: options.seed });
        await atomicWrite(options.output, encodeSafetensors(tensors, metadata));
        log.info(`Saved the classifier weights to ${options.output}.`);
      }
      await Deno.remove(checkpointFile).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
      const last = result.epochs[result.epochs.length - 1];
      log.result(`Trained ${result.epochs.length} epoch${result.epochs.length === 1 ? "" : "s"} at ${result.imagesPerSecond.toFixed(1)} images/s (input ${options.input}); test accuracy ${(100 * result.testAccuracy).toFixed(2)}% on ${test.labels.length} images, final train loss ${last.trainLoss.toFixed(4)}.`);
      return {
        input: options.input,
        epochs: result.epochs,
        testAccuracy: result.testAccuracy,
        imagesPerSecond: result.imagesPerSecond,
        testImages: test.labels.length,
        seed: options.seed,
        output: options.output ?? null,
      };
    } finally {
      result.net.destroy();
    }
  });
}

// Formats `value` with 3 significant digits and no trailing zeros.
function significant(value: number): string {
  return String(Number(value.toPrecision(3)));
}

/**
 * Returns the part of a training checkpoint's fingerprint that the command
 * line sets alone, without loading data. Keys are the options that set each
 * value, so a mismatch error names the option to fix.
 */
export function trainSettingsFingerprint(
  options: Pick<TrainStageOptions, "input" | "width" | "batch" | "learningRate" | "momentum" | "weightDecay" | "epochs" | "seed">,
  facts: { data: string; inputSize: number },
): TrainFingerprint {
  return {
    "--input": options.input,
    "--data": resolve(facts.data),
    "--resnet-width": options.width,
    "--batch": options.batch,
    "--train-lr": options.learningRate,
    "--momentum": options.momentum,
    "--weight-decay": options.weightDecay,
    "--epochs": options.epochs,
    "--input-size": facts.inputSize,
    "--seed": options.seed,
  };
}

// Returns the state to resume from, or undefined to start at epoch 1.
// `checkTrainOutputs` has already rejected an existing checkpoint without
// `resume`, so a run never silently discards another run's progress.
async function openTrainCheckpoint(path: string, fingerprint: TrainFingerprint, resume: boolean): Promise<TrainCheckpoint | undefined> {
  if (!resume) return undefined;
  const checkpoint = await readTrainCheckpoint(path);
  if (checkpoint) checkTrainFingerprint(checkpoint.fingerprint, fingerprint, path);
  return checkpoint;
}

// ---------------------------------------------------------------- reuse for run --resume

/**
 * Returns the report of a finished encode from its .rinr file, after checking
 * that the file was made with `expected`'s architecture, iterations, learning
 * rate and seed. Used by `run --resume` to skip a finished stage.
 */
export async function reuseEncoded(path: string, expected: EncodeStageOptions): Promise<EncodeReport> {
  const file = await readRinr(path);
  const preset = encodePreset(expected.preset);
  const arch: SirenArch = { ...preset.arch, ...expected.arch };
  const record = file.encode ?? {};
  const wanted: Record<string, unknown> = {
    "--layers": [arch.sineLayers, file.arch.sineLayers],
    "--width": [arch.width, file.arch.width],
    "--w0": [arch.w0, file.arch.w0],
    "--iterations": [expected.iterations ?? preset.iterations, record.iterations],
    "--lr": [expected.learningRate ?? preset.learningRate, record.learningRate],
    "--seed": [expected.seed, record.seed],
  };
  const differences = Object.entries(wanted)
    .filter(([, pair]) => (pair as unknown[])[0] !== (pair as unknown[])[1])
    .map(([name, pair]) => `${name} is ${(pair as unknown[])[0]}, ${path} has ${(pair as unknown[])[1]}`);
  if (differences.length > 0) {
    throw new UsageError(`Cannot reuse ${path}: ${differences.join("; ")}. Pass --force to encode again.`);
  }
  return {
    output: path,
    images: file.labels.length,
    resolution: file.resolution,
    arch: file.arch,
    iterations: record.iterations as number,
    meanPsnr: mean(file.psnr),
    minPsnr: Math.min(...file.psnr),
    imagesPerSecond: NaN,
    seconds: NaN,
    seed: record.seed as number,
    skippedImages: 0,
    reused: true,
  };
}

/** Returns the report of a finished compression from its output file; see `reuseEncoded`. */
export async function reuseCompressed(
  path: string,
  encoded: EncodeReport,
  settings: Pick<CompressStageOptions, "bits" | "tuneIterations">,
): Promise<CompressReport> {
  const file = await readRinr(path);
  const header = file.header.weights;
  const layerBits = header.encoding === "uniform" ? header.bits : [];
  const bits = settings.bits;
  // With "auto" any widths are accepted: the search chose the recorded ones.
  let expectedBits: number[] = layerBits;
  if (typeof bits === "number") expectedBits = layerBits.map(() => bits);
  else if (Array.isArray(bits)) expectedBits = bits;
  const record = (file.encode?.compress ?? {}) as Record<string, unknown>;
  const tuneIterations = settings.tuneIterations ?? 100;
  const matches = header.encoding === "uniform" && layerBits.join(",") === expectedBits.join(",") &&
    file.labels.length === encoded.images && record.tuneIterations === tuneIterations;
  if (!matches) {
    throw new UsageError(
      `Cannot reuse ${path}: it does not hold ${encoded.images} images compressed with --bits ${bits} and --tune-iterations ${tuneIterations}. Pass --force to compress again.`,
    );
  }
  const storedBytes = (await Deno.stat(path)).size;
  const rawBytes = file.labels.length * file.resolution * file.resolution * 3;
  const pixels = file.labels.length * file.resolution * file.resolution;
  const resident = residentDatasetBytes({ arch: file.arch, count: file.labels.length, bits: layerBits });
  return {
    output: path,
    images: file.labels.length,
    bitsPerLayer: layerBits,
    storedBytes,
    rawBytes,
    percentOfRaw: (100 * storedBytes) / rawBytes,
    bitsPerPixel: (8 * storedBytes) / pixels,
    entropyCoded: file.sections.some((s) => s.tag === "QANS"),
    residentBytes: resident,
    residentBytesPerImage: resident / file.labels.length,
    meanPsnrBefore: encoded.meanPsnr,
    meanPsnr: mean(file.psnr),
    p5Psnr: percentile(file.psnr, 0.05),
    sparsity: file.weights instanceof Float32Array ? 0 : countZeros(file.weights) / (file.labels.length * sirenParamCount(file.arch)),
    tuneIterations,
    // The file records these settings, but not how many images took each step.
    ...(typeof record.layerToleranceDb === "number" ? { layerToleranceDb: record.layerToleranceDb } : {}),
    ...(Array.isArray(record.sparsities) ? { sparsities: record.sparsities as number[] } : {}),
    reused: true,
  };
}
