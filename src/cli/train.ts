// `rapid-inr train`: ResNet-18 from one of the three input pipelines.

import type { Command } from "./mod.ts";
import type { OptionSpec, OptionValues } from "./options.ts";
import { UsageError } from "./options.ts";
import { datasetSpec, DATASET_OPTIONS } from "./encode.ts";
import {
  checkTrainOutputs,
  type DatasetSpec,
  DEFAULT_CHECKPOINT,
  defaultCheckpointPath,
  defaultTestSplit,
  trainStage,
  type TrainStageOptions,
} from "./stages.ts";
import type { InputKind } from "../train/trainer.ts";
import { readTrainCheckpoint } from "../train/checkpoint.ts";
import { readRinr } from "../format/mod.ts";
import { GpuDeviceLostError } from "../gpu/device.ts";

/** Training options shared by train and run. */
export const TRAIN_OPTIONS: OptionSpec[] = [
  { name: "input", type: "string", default: "inr", choices: ["inr", "raw", "files"], help: "input pipeline: inr decodes INRs on the GPU, raw reads resident pixels on the GPU, files decodes image files on the CPU per batch" },
  { name: "epochs", type: "integer", default: 30, min: 1, help: "passes over the training set" },
  { name: "batch", type: "integer", default: 128, min: 1, help: "training batch size in images; each epoch drops the last partial batch" },
  { name: "train-lr", type: "number", default: 0.1, min: 0, help: "peak SGD learning rate, cosine-decayed to 0" },
  { name: "momentum", type: "number", default: 0.9, min: 0, max: 1, help: "SGD momentum" },
  { name: "weight-decay", type: "number", default: 5e-4, min: 0, help: "L2 weight decay on convolution and linear weights" },
  { name: "resnet-width", type: "integer", default: 64, min: 1, help: "channels of the first ResNet-18 stage (64 is the standard network; 8 or 16 for machines without a GPU)" },
  { name: "input-size", type: "integer", min: 8, max: 4096, help: "classifier input side in pixels (default: the training resolution)" },
  { name: "test", type: "string", help: "dataset holding the test split (default: the training dataset)" },
  { name: "test-split", type: "string", help: "test split name (default: test, else val)" },
  { name: "test-per-class", type: "integer", min: 1, help: "evaluate on the first N test images of each class (default: all)" },
  { name: "test-limit", type: "integer", min: 1, help: "evaluate on at most N test images (default: all)" },
];

/** Checkpoint options of train. `run` gets --resume from the encode options, and `trainOptions` passes it on. */
const CHECKPOINT_OPTIONS: OptionSpec[] = [
  { name: "checkpoint", type: "string", help: `training checkpoint written after each epoch and removed at the end (default: <output without .safetensors>.ckpt.safetensors, or ${DEFAULT_CHECKPOINT} in the current folder without --output)` },
  { name: "resume", type: "boolean", default: false, help: "continue from the checkpoint if it exists; the settings must match the interrupted run" },
];

/** Resolves the test set: explicit --test, else next to the training data. */
export async function testSpec(values: OptionValues, trainPath: string): Promise<DatasetSpec> {
  const path = (values.test as string | undefined) ?? trainPath;
  return {
    path,
    split: (values["test-split"] as string | undefined) ?? await defaultTestSplit(path),
    limitPerClass: values["test-per-class"] as number | undefined,
    limit: values["test-limit"] as number | undefined,
    strict: values.strict as boolean | undefined,
    maxBadFraction: values["max-bad-fraction"] as number | undefined,
  };
}

export function trainOptions(values: OptionValues): Omit<TrainStageOptions, "test" | "rinr" | "dataset" | "output"> {
  return {
    input: values.input as InputKind,
    epochs: values.epochs as number,
    batch: values.batch as number,
    learningRate: values["train-lr"] as number,
    momentum: values.momentum as number,
    weightDecay: values["weight-decay"] as number,
    width: values["resnet-width"] as number,
    size: values["input-size"] as number | undefined,
    seed: values.seed as number,
    overwrite: values.force as boolean,
    resume: values.resume === true,
  };
}

export const trainCommand: Command = {
  spec: {
    name: "train",
    summary: "train a ResNet-18 from INR-decoded, raw or file-decoded batches",
    usage: "rapid-inr train --input inr|raw|files --data <file.rinr | dataset> [options]",
    example: "rapid-inr train --input inr --data cifar-q8.rinr --epochs 10 --resnet-width 16 --output model.safetensors",
    positionals: [],
    options: [
      { name: "data", type: "string", help: "training data: a .rinr file for --input inr, a dataset for raw and files" },
      { name: "output", alias: "o", type: "string", help: "safetensors file for the trained weights (default: not saved)" },
      ...TRAIN_OPTIONS,
      ...CHECKPOINT_OPTIONS,
      ...DATASET_OPTIONS,
      { name: "seed", type: "integer", default: 0, min: 0, help: "seed of weights, shuffling and augmentation" },
      { name: "force", type: "boolean", default: false, help: "replace an existing output file" },
    ],
  },
  async execute({ positionals, values }, log) {
    if (positionals.length > 0) throw new UsageError(`train takes no positional arguments, got "${positionals[0]}". Pass the data with --data.`);
    const data = values.data;
    if (typeof data !== "string") throw new UsageError("Missing --data: a .rinr file for --input inr, or a dataset for raw and files.");
    const options = trainOptions(values);
    const output = values.output as string | undefined;
    const checkpoint = (values.checkpoint as string | undefined) ?? defaultCheckpointPath(output);
    // Before the .rinr file is read, so that an existing output fails at once.
    await checkTrainOutputs({ output, overwrite: options.overwrite, checkpoint, resume: options.resume });
    let trainPath = data;
    if (options.input === "inr") {
      const file = await readRinr(data);
      if (!values.test && !file.source) throw new UsageError(`${data} records no source dataset. Pass --test with the dataset holding the test split.`);
      trainPath = file.source ?? "";
    }
    try {
      return await trainStage({
        ...options,
        rinr: options.input === "inr" ? data : undefined,
        dataset: options.input === "inr" ? undefined : datasetSpec(data, values),
        test: await testSpec(values, trainPath),
        output,
        checkpoint,
      }, log);
    } catch (error) {
      if (!(error instanceof GpuDeviceLostError)) throw error;
      throw error.withNote(await savedEpochsNote(checkpoint));
    }
  },
};

/**
 * Returns the sentence that names what a lost device left in the training
 * checkpoint `path` and how to continue from it.
 */
export async function savedEpochsNote(path: string): Promise<string> {
  // The checkpoint is rewritten after each epoch and removed only after a
  // finished run, so its current contents are what survives.
  const resume = "run the same command with --resume to continue.";
  let epochs: number;
  try {
    epochs = (await readTrainCheckpoint(path))?.records.length ?? 0;
  } catch (error) {
    return `Reading the checkpoint ${path} failed (${(error as Error).message}); if it is intact, ${resume}`;
  }
  if (epochs === 0) return "No epoch had finished, so nothing was saved; run the same command again.";
  return `The first ${epochs} epoch${epochs === 1 ? " is" : "s are"} saved in ${path}; ${resume}`;
}
