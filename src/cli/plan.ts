// --dry-run: checks what a command would read and write and prints the plan
// without running it. The plan derives its settings from the same option
// helpers as the commands, lists datasets without decoding every image (see
// plan_dataset.ts) and estimates GPU memory from shapes (plan_memory.ts). The
// GPU is only asked for its adapter limits. Without an adapter the plan
// reports that and leaves out what needs the limits.

import { join } from "@std/path";
import type { Gpu } from "../gpu/device.ts";
import { DEFAULT_MEMORY_BYTES } from "../inr/encode.ts";
import { encodePreset } from "../inr/presets.ts";
import { packedLayout } from "../inr/quantize.ts";
import type { SirenArch } from "../inr/siren.ts";
import { maxBatchImages } from "../inr/siren_batch.ts";
import { encodeOptions } from "./encode.ts";
import { checkTrainOutputs, defaultCheckpointPath, reuseCompressed, reuseEncoded } from "./stages.ts";
import { compressOptions } from "./compress.ts";
import type { Log } from "./log.ts";
import { type ParsedCommand, UsageError } from "./options.ts";
import {
  addCompressMemory,
  addOutput,
  type DryRunPlan,
  emptyPlan,
  estimatedRinrBytes,
  readAdapter,
  resolveBits,
  sirenPlan,
} from "./plan_common.ts";
import { type DatasetPlan, planDataset } from "./plan_dataset.ts";
import { formatBytes, formatPlan } from "./plan_format.ts";
import { encodeBatchBytes } from "./plan_memory.ts";
import { planCompress, planDecode, planExport } from "./plan_rinr.ts";
import { planTrain, planTrainStage } from "./plan_train.ts";
import { testSpec } from "./train.ts";

export type { DryRunPlan } from "./plan_common.ts";

/** Checks the inputs of `command` and returns its plan; prints it as text unless --json is given. */
export async function planCommand(
  command: string,
  parsed: ParsedCommand,
  log: Log,
): Promise<DryRunPlan> {
  // The run checks checkpoints before it reads any data, so the dry run does too.
  await rejectLeftoverCheckpoints(command, parsed);
  const plan = emptyPlan(command);
  switch (command) {
    case "encode":
      await planEncode(plan, parsed, log);
      break;
    case "compress":
      await planCompress(plan, parsed, log);
      break;
    case "decode":
      await planDecode(plan, parsed, log);
      break;
    case "train":
      await planTrain(plan, parsed, log);
      break;
    case "run":
      await planRun(plan, parsed, log);
      break;
    case "export":
      await planExport(plan, parsed);
      break;
    default:
      throw new UsageError(`--dry-run is not available for "${command}".`);
  }
  finish(plan, parsed.values.force === true);
  log.result(formatPlan(plan));
  return plan;
}

// Fails as the real run does when an interrupted encode, compress or train
// left its checkpoint and --resume is not given.
async function rejectLeftoverCheckpoints(command: string, parsed: ParsedCommand): Promise<void> {
  if (parsed.values.resume === true) return;
  const values = parsed.values;
  if (command === "train" || command === "run") {
    const output = command === "train"
      ? values.output as string | undefined
      : join(values["out-dir"] as string, "classifier.safetensors");
    const checkpoint = (values.checkpoint as string | undefined) ?? defaultCheckpointPath(output);
    await checkTrainOutputs({ output: undefined, overwrite: true, checkpoint, resume: false });
  }
  const outputs: [string, string][] = [];
  if (command === "encode" || command === "compress") {
    if (typeof parsed.values.output === "string") outputs.push([command, parsed.values.output]);
  } else if (command === "run" && parsed.values.force !== true) {
    const outDir = parsed.values["out-dir"] as string;
    outputs.push(["encode", join(outDir, "encoded.rinr")], [
      "compress",
      join(outDir, "compressed.rinr"),
    ]);
  }
  for (const [stage, output] of outputs) {
    const checkpoint = `${output}.partial`;
    if (await Deno.lstat(checkpoint).then(() => true, () => false)) {
      throw new UsageError(
        `Checkpoint ${checkpoint} exists from an interrupted ${stage}. Pass --resume to continue it, or delete the file to start over.`,
      );
    }
  }
}

// Fails on the first output that exists without --force, as the run would, and sums the peak.
function finish(plan: DryRunPlan, force: boolean): void {
  const existing = plan.outputs.find((o) => o.exists && !o.reused);
  if (existing && !force) {
    throw new UsageError(
      `Output ${existing.path} already exists. Choose another path or pass --force to replace it.`,
    );
  }
  const perStage = new Map<string, number>();
  for (const m of plan.gpuMemory) perStage.set(m.stage, (perStage.get(m.stage) ?? 0) + m.bytes);
  plan.peakGpuBytes = Math.max(0, ...perStage.values());
  if (plan.dataset?.sideFrom === "first image" || plan.testDataset?.sideFrom === "first image") {
    plan.notes.push(
      "Image sizes are from the first image of each split; the other images are not decoded.",
    );
  }
  if (
    plan.dataset?.countedBy === "listing files" || plan.testDataset?.countedBy === "listing files"
  ) {
    plan.notes.push(
      "Counts are from listing files, and only the images up to the first readable one of each split were decoded, " +
        "so the real run may find more unreadable or corrupt images; it skips them, or fails if they exceed --max-bad-fraction.",
    );
  }
  if (plan.gpuMemory.length > 0) {
    plan.notes.push(
      "GPU memory figures are estimates from the buffer shapes; kernels, pipelines and the convolution scratch buffer add to them.",
    );
  }
}

// ---------------------------------------------------------------- encode and run

async function planEncode(
  plan: DryRunPlan,
  { positionals, values }: ParsedCommand,
  log: Log,
): Promise<void> {
  if (positionals.length !== 1) {
    throw new UsageError('encode takes one dataset path. Run "rapid-inr encode --help".');
  }
  if (typeof values.output !== "string") {
    throw new UsageError("Missing --output: the .rinr file to write.");
  }
  await planEncodeStage(plan, { path: positionals[0], output: values.output, values }, log);
}

async function planEncodeStage(
  plan: DryRunPlan,
  request: { path: string; output: string; values: ParsedCommand["values"] },
  log: Log,
): Promise<{ arch: SirenArch; dataset: DatasetPlan }> {
  const options = encodeOptions(request.path, request.output, request.values);
  const preset = encodePreset(options.preset);
  const arch: SirenArch = { ...preset.arch, ...options.arch };
  plan.siren = sirenPlan(arch);
  const dataset = await planDataset({
    ...options.dataset,
    size: options.dataset.size ?? preset.side,
  }, log);
  if (options.dataset.size === undefined) dataset.sideFrom = "preset";
  plan.dataset = dataset;
  const adapter = await readAdapter();
  plan.adapter = adapter.plan;

  const count = dataset.images;
  let maxImages: number | null = null;
  let batchSize: number | null = null;
  if (adapter.limits) {
    // maxBatchImages reads nothing but the device limits, which Gpu.create sets to the adapter's.
    const limitsOnly = { device: { limits: adapter.limits } } as unknown as Gpu;
    maxImages = maxBatchImages(limitsOnly, {
      arch,
      side: dataset.side,
      memoryBytes: DEFAULT_MEMORY_BYTES,
    });
    batchSize = Math.ceil(count / Math.ceil(count / maxImages));
  }
  if (options.batchSize !== undefined) {
    if (maxImages !== null && options.batchSize > maxImages) {
      throw new UsageError(
        `--encode-batch ${options.batchSize} does not fit: at most ${maxImages} image${
          maxImages === 1 ? "" : "s"
        } of this shape fit the adapter's binding limit and the ${
          formatBytes(DEFAULT_MEMORY_BYTES)
        } memory budget.`,
      );
    }
    batchSize = Math.min(count, options.batchSize);
  }
  if (batchSize === null) {
    plan.notes.push(
      "Without an adapter the encode batch size is unknown; the memory estimate is for one image.",
    );
  }
  plan.encode = {
    images: count,
    side: dataset.side,
    iterations: options.iterations ?? preset.iterations,
    learningRate: options.learningRate ?? preset.learningRate,
    seed: options.seed,
    batchSize,
    batches: batchSize === null ? null : Math.ceil(count / batchSize),
    maxBatchImages: maxImages,
  };
  plan.gpuMemory.push({
    stage: "encode",
    item: "fitting buffers",
    bytes: encodeBatchBytes({
      arch,
      side: dataset.side,
      batch: batchSize ?? 1,
      iterations: plan.encode.iterations,
    }),
  });
  await addOutput(plan, request.output);
  return { arch, dataset };
}

async function planRun(plan: DryRunPlan, parsed: ParsedCommand, log: Log): Promise<void> {
  const { positionals, values } = parsed;
  if (positionals.length !== 1) {
    throw new UsageError('run takes one dataset path. Run "rapid-inr run --help".');
  }
  const path = positionals[0];
  const outDir = values["out-dir"] as string;
  const test = await testSpec(values, path);
  const encodedPath = join(outDir, "encoded.rinr");
  const compressedPath = join(outDir, "compressed.rinr");
  const { arch, dataset } = await planEncodeStage(plan, { path, output: encodedPath, values }, log);

  const { bits, auto } = resolveBits(arch, values);
  const count = dataset.images;
  const { wordsPerImage } = packedLayout(arch, bits);
  const rawBytes = count * dataset.side * dataset.side * 3;
  plan.compress = {
    bitsPerLayer: bits,
    autoBits: auto,
    estimatedFileBytes: estimatedRinrBytes(count, count * (wordsPerImage + bits.length * 2) * 4),
    rawBytes,
  };
  addCompressMemory(plan, {
    arch,
    count,
    side: dataset.side,
    bits,
    tuneIterations: values["tune-iterations"] as number,
  });
  await addOutput(plan, compressedPath);

  await planTrainStage(plan, {
    images: count,
    classNames: dataset.classNames,
    resolution: dataset.side,
    dataset,
    plannedBits: bits,
    arch,
    test,
    values,
  }, log);
  await addOutput(plan, join(outDir, "classifier.safetensors"));
  if (values.resume === true && values.force !== true) {
    await markReused(plan, { dataset: path, encodedPath, compressedPath, values });
  }
}

// Marks what `run --resume` would reuse, after the same settings checks, so
// that those files do not fail the dry run as existing outputs.
async function markReused(
  plan: DryRunPlan,
  run: { dataset: string; encodedPath: string; compressedPath: string; values: ParsedCommand["values"] },
): Promise<void> {
  const { dataset, encodedPath, compressedPath, values } = run;
  const isFile = (file: string) => Deno.stat(file).then((info) => info.isFile, () => false);
  const mark = (file: string) => {
    const output = plan.outputs.find((o) => o.path === file);
    if (output) output.reused = true;
  };
  const compressed = await isFile(compressedPath);
  if (!await isFile(encodedPath) || await isFile(`${encodedPath}.partial`)) {
    if (compressed) {
      mark(compressedPath);
      plan.notes.push(`The run checks ${compressedPath} against the new encode before it reuses the file.`);
    }
    return;
  }
  const encoded = await reuseEncoded(encodedPath, encodeOptions(dataset, encodedPath, values));
  mark(encodedPath);
  if (!compressed) return;
  await reuseCompressed(compressedPath, encoded, compressOptions(values));
  mark(compressedPath);
}
