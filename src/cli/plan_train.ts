// --dry-run of training: the train command and the train stage of run.

import { readRinr, type RinrFile } from "../format/mod.ts";
import type { SirenArch } from "../inr/siren.ts";
import type { InputKind } from "../train/trainer.ts";
import { datasetSpec } from "./encode.ts";
import type { Log } from "./log.ts";
import { type ParsedCommand, UsageError } from "./options.ts";
import {
  addOutput,
  checkBinding,
  type DryRunPlan,
  inputPlan,
  quantizedBits,
  readAdapter,
  sirenPlan,
} from "./plan_common.ts";
import { type DatasetPlan, planDataset } from "./plan_dataset.ts";
import {
  decodeBatchBytes,
  packedCodeBytes,
  rawImagesBytes,
  residentDatasetBytes,
  resnetMemory,
} from "./plan_memory.ts";
import { checkTrainFingerprint, readTrainCheckpoint } from "../train/checkpoint.ts";
import { type DatasetSpec, defaultCheckpointPath, trainSettingsFingerprint } from "./stages.ts";
import { testSpec, trainOptions } from "./train.ts";

export async function planTrain(
  plan: DryRunPlan,
  { positionals, values }: ParsedCommand,
  log: Log,
): Promise<void> {
  if (positionals.length > 0) {
    throw new UsageError(
      `train takes no positional arguments, got "${positionals[0]}". Pass the data with --data.`,
    );
  }
  const data = values.data;
  if (typeof data !== "string") {
    throw new UsageError(
      "Missing --data: a .rinr file for --input inr, or a dataset for raw and files.",
    );
  }
  const input = values.input as InputKind;
  if (input === "inr") {
    const file = await readRinr(data);
    if (!values.test && !file.source) {
      throw new UsageError(
        `${data} records no source dataset. Pass --test with the dataset holding the test split.`,
      );
    }
    plan.input = inputPlan(data, file);
    plan.siren = sirenPlan(file.arch);
    const test = await testSpec(values, file.source ?? "");
    await planTrainStage(plan, {
      images: file.labels.length,
      classNames: file.classNames,
      resolution: file.resolution,
      file,
      test,
      values,
    }, log);
  } else {
    const dataset = await planDataset(datasetSpec(data, values), log);
    plan.dataset = dataset;
    const test = await testSpec(values, data);
    await planTrainStage(plan, {
      images: dataset.images,
      classNames: dataset.classNames,
      resolution: dataset.side,
      dataset,
      test,
      values,
    }, log);
  }
  if (typeof values.output === "string") await addOutput(plan, values.output);
  if (values.resume === true) await planTrainResume(plan, values, data);
}

// Reads the checkpoint that --resume continues and checks the settings that
// the command line sets, as the run does. Only the run checks image counts.
async function planTrainResume(
  plan: DryRunPlan,
  values: ParsedCommand["values"],
  data: string,
): Promise<void> {
  const options = trainOptions(values);
  const path = (values.checkpoint as string | undefined) ??
    defaultCheckpointPath(values.output as string | undefined);
  const checkpoint = await readTrainCheckpoint(path);
  if (!checkpoint) {
    plan.notes.push(`No checkpoint at ${path}; training would start at epoch 1.`);
    return;
  }
  const current = trainSettingsFingerprint(options, { data, inputSize: plan.train!.inputSize });
  const stored = Object.fromEntries(
    Object.keys(current).map((key) => [key, checkpoint.fingerprint[key]]),
  );
  checkTrainFingerprint(stored, current, path);
  plan.notes.push(
    `Training resumes from ${path} after epoch ${checkpoint.records.length} of ${options.epochs}.`,
  );
}

export async function planTrainStage(
  plan: DryRunPlan,
  source: {
    images: number;
    classNames: string[];
    resolution: number;
    file?: RinrFile;
    /** Image dataset of raw and files training. */
    dataset?: DatasetPlan;
    /** Quantization bits of the INR input when it is planned but not written yet. */
    plannedBits?: number[];
    arch?: SirenArch;
    test: DatasetSpec;
    values: ParsedCommand["values"];
  },
  log: Log,
): Promise<void> {
  const options = trainOptions(source.values);
  if (options.input === "files" && source.dataset && source.dataset.kind !== "image-folder") {
    throw new UsageError(
      "--input files needs an image-folder dataset (one file per image); this dataset is a binary batch file.",
    );
  }
  const size = options.size ?? source.resolution;
  const test = await planDataset({ ...source.test, size }, log);
  test.sideFrom = "classifier input";
  plan.testDataset = test;
  if (test.classNames.join("\n") !== source.classNames.join("\n")) {
    throw new UsageError(
      `The test split's classes (${test.classNames.join(", ")}) differ from the training classes (${
        source.classNames.join(", ")
      }).`,
    );
  }
  if (source.classNames.length < 2) {
    throw new UsageError(`A classifier needs at least 2 classes, got ${source.classNames.length}.`);
  }
  if (size < 8) {
    throw new UsageError(
      `The classifier input side would be ${size} px; ResNet-18 needs at least 8. Pass --input-size 8 or more.`,
    );
  }
  const stepsPerEpoch = Math.floor(source.images / options.batch);
  if (stepsPerEpoch < 1) {
    throw new UsageError(
      `The training set has ${source.images} images, fewer than one batch of ${options.batch}. Use a smaller --batch.`,
    );
  }

  const classes = source.classNames.length;
  const resnet = resnetMemory({
    classes,
    inputSize: size,
    width: options.width,
    batch: options.batch,
  });
  plan.train = {
    input: options.input,
    images: source.images,
    classes,
    inputSize: size,
    epochs: options.epochs,
    batch: options.batch,
    stepsPerEpoch,
    droppedPerEpoch: source.images - stepsPerEpoch * options.batch,
    resnetWidth: options.width,
    parameters: resnet.parameters,
    testImages: test.images,
    seed: options.seed,
  };
  plan.adapter ??= (await readAdapter()).plan;

  const memory = (item: string, bytes: number) =>
    plan.gpuMemory.push({ stage: "train", item, bytes });
  if (options.input === "inr") {
    const arch = source.file?.arch ?? source.arch!;
    const bits = source.file ? quantizedBits(source.file) : source.plannedBits!;
    const codes = packedCodeBytes({ arch, count: source.images, bits });
    checkBinding(
      plan,
      `The packed weights of ${source.images} images`,
      codes,
      "Quantize to fewer bits.",
    );
    memory("resident packed INRs", residentDatasetBytes({ arch, count: source.images, bits }));
    memory("batch decode buffers", decodeBatchBytes({ arch, batch: options.batch }));
  } else if (options.input === "raw") {
    const pixels = source.images * source.resolution * source.resolution * 3;
    checkBinding(plan, "The raw pixels", pixels, "Use --input inr or fewer images.");
    memory(
      "resident 8-bit pixels",
      rawImagesBytes({ count: source.images, side: source.resolution }),
    );
  }
  const testPixels = test.images * size * size * 3;
  checkBinding(plan, "The test images", testPixels, "Use --test-limit or --test-per-class.");
  checkBinding(
    plan,
    "The largest classifier buffer",
    resnet.largestBufferBytes,
    "Use a smaller --batch.",
  );
  memory("test images, 8-bit pixels", rawImagesBytes({ count: test.images, side: size }));
  memory("classifier parameters", resnet.parameterBytes);
  memory("classifier activations", resnet.activationBytes);
  memory("epoch permutation", source.images * 4);
}
