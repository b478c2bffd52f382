// `rapid-inr encode`: fit one SIREN per image of a dataset.

import type { Command } from "./mod.ts";
import type { OptionSpec, OptionValues } from "./options.ts";
import { UsageError } from "./options.ts";
import { type DatasetSpec, encodeStage, type EncodeStageOptions } from "./stages.ts";

/** Dataset selection options shared by encode, train and run. */
export const DATASET_OPTIONS: OptionSpec[] = [
  { name: "split", type: "string", help: "split folder (or IDX/CIFAR split name) to read (default: train, or the folder itself when it has no train subfolder)" },
  { name: "size", type: "integer", min: 1, max: 4096, help: "image side in pixels after resizing (default: the preset's side for encode and run, the images' own side for train)" },
  { name: "per-class", type: "integer", min: 1, help: "keep the first N images of each class, sorted by path (default: all)" },
  { name: "limit", type: "integer", min: 1, help: "keep at most N images in total, balanced over classes (default: all)" },
  { name: "strict", type: "boolean", default: false, help: "fail on the first unreadable or corrupt image instead of skipping it with a warning" },
  { name: "max-bad-fraction", type: "number", default: 0.01, min: 0, max: 1, help: "largest fraction (0..1) of the requested images that may be skipped as unreadable or corrupt; one more fails with exit code 3" },
];

/** Encode options shared by encode and run. */
export const ENCODE_OPTIONS: OptionSpec[] = [
  { name: "preset", type: "string", default: "cifar", choices: ["cifar", "flowers", "imagenet"], help: "SIREN shape and schedule: cifar 32 px 5x13, flowers 224 px 10x32, imagenet 224 px 10x40" },
  { name: "iterations", type: "integer", min: 1, help: "Adam iterations per image (default: the preset's, 5000)" },
  { name: "lr", type: "number", min: 0, help: "initial Adam learning rate, cosine-decayed to 0 (default: the preset's, 5e-4)" },
  { name: "layers", type: "integer", min: 1, max: 64, help: "sine layers (default: the preset's)" },
  { name: "width", type: "integer", min: 1, max: 64, help: "SIREN hidden width (default: the preset's)" },
  { name: "w0", type: "number", min: 0, help: "sine frequency factor (default 30)" },
  { name: "encode-batch", type: "integer", min: 1, help: "images fitted per dispatch (default: as many as fit the GPU)" },
  { name: "seed", type: "integer", default: 0, min: 0, help: "seed of the weight initialization (also shuffling and augmentation in train)" },
  { name: "force", type: "boolean", default: false, help: "replace existing output files" },
  { name: "resume", type: "boolean", default: false, help: "continue an interrupted run from its checkpoint (encode saves <output>.partial after every batch); the settings must match the interrupted run" },
];

export function datasetSpec(path: string, values: OptionValues): DatasetSpec {
  return {
    path,
    split: values.split as string | undefined,
    size: values.size as number | undefined,
    limitPerClass: values["per-class"] as number | undefined,
    limit: values.limit as number | undefined,
    strict: values.strict as boolean | undefined,
    maxBadFraction: values["max-bad-fraction"] as number | undefined,
  };
}

export function encodeOptions(path: string, output: string, values: OptionValues): EncodeStageOptions {
  const arch: Record<string, number> = {};
  if (values.layers !== undefined) arch.sineLayers = values.layers as number;
  if (values.width !== undefined) arch.width = values.width as number;
  if (values.w0 !== undefined) arch.w0 = values.w0 as number;
  return {
    dataset: datasetSpec(path, values),
    output,
    preset: values.preset as string,
    arch,
    iterations: values.iterations as number | undefined,
    learningRate: values.lr as number | undefined,
    batchSize: values["encode-batch"] as number | undefined,
    seed: values.seed as number,
    overwrite: values.force as boolean,
    resume: values.resume as boolean,
  };
}

export const encodeCommand: Command = {
  spec: {
    name: "encode",
    summary: "fit one SIREN per image on the GPU and write a .rinr file",
    usage: "rapid-inr encode <dataset> --output <file.rinr> [options]",
    example: "rapid-inr encode ../data/cifar10 --per-class 100 --iterations 1000 --output cifar.rinr",
    positionals: [{ name: "<dataset>", help: "image folder (<split>/<class>/<image>), CIFAR-10 binary batches or an IDX file" }],
    options: [
      { name: "output", alias: "o", type: "string", help: "path of the .rinr file to write" },
      ...DATASET_OPTIONS,
      ...ENCODE_OPTIONS,
    ],
  },
  async execute({ positionals, values }, log) {
    if (positionals.length !== 1) throw new UsageError("encode takes one dataset path. Run \"rapid-inr encode --help\".");
    if (typeof values.output !== "string") throw new UsageError("Missing --output: the .rinr file to write.");
    return await encodeStage(encodeOptions(positionals[0], values.output, values), log);
  },
};
