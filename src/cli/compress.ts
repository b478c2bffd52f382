// `rapid-inr compress`: per-layer quantization, pruning with quantization-aware
// fine-tuning, and entropy coding of a .rinr file.

import type { Command } from "./mod.ts";
import { type OptionSpec, type OptionValues, UsageError } from "./options.ts";
import { type CompressStageOptions, compressStage } from "./stages.ts";

/** Options shared by `compress` and `run`. */
export const COMPRESS_OPTIONS: OptionSpec[] = [
  { name: "bits", type: "string", default: "auto", help: "bit width per layer: auto (chosen by sensitivity), one width 1..16 for every layer, or one per layer separated by commas" },
  { name: "layer-tolerance", type: "number", min: 0, default: 0.25, help: "with --bits auto: PSNR loss in dB that rounding one layer alone may cause" },
  { name: "tune-iterations", type: "integer", min: 0, default: 100, help: "quantization-aware fine-tuning iterations per pruning step; 0 only rounds the weights" },
  { name: "tune-lr", type: "number", min: 0, default: 3e-4, help: "initial fine-tuning learning rate, cosine-decayed to 0 in each step" },
  { name: "prune", type: "string", default: "0,0.05,0.1,0.2,0.3,0.5", help: "sparsity schedule: fractions of each prunable layer's weights removed by the steps, non-decreasing, each in [0, 1)" },
  { name: "max-psnr-drop", type: "number", min: 0, default: 1, help: "largest PSNR loss per image against its fp32 fit, in dB; each image keeps its sparsest step within it" },
  { name: "target-percent", type: "number", min: 0, help: "file size target in percent of the raw RGB size; replaces --max-psnr-drop and picks each image's step to meet it at the least PSNR loss" },
];

/** Reads the compress settings of `values` (from COMPRESS_OPTIONS) into stage options. */
export function compressOptions(
  values: OptionValues,
): Pick<CompressStageOptions, "bits" | "layerToleranceDb" | "tuneIterations" | "tuneLearningRate" | "sparsities" | "maxPsnrDrop" | "targetPercent"> {
  return {
    bits: parseBits(String(values.bits)),
    layerToleranceDb: values["layer-tolerance"] as number,
    tuneIterations: values["tune-iterations"] as number,
    tuneLearningRate: values["tune-lr"] as number,
    sparsities: parseSparsities(String(values.prune)),
    maxPsnrDrop: values["max-psnr-drop"] as number,
    targetPercent: values["target-percent"] as number | undefined,
  };
}

/** Parses --bits: "auto", one width or one per layer. Throws a UsageError naming the value. */
export function parseBits(text: string): "auto" | number | number[] {
  if (text === "auto") return "auto";
  const widths = text.split(",").map((part) => {
    const value = Number(part);
    if (part.trim() === "" || !Number.isInteger(value) || value < 1 || value > 16) {
      throw new UsageError(`--bits must be auto or integers in 1..16 separated by commas, got "${text}".`);
    }
    return value;
  });
  return widths.length === 1 ? widths[0] : widths;
}

function parseSparsities(text: string): number[] {
  const values = text.split(",").map((part) => {
    const value = Number(part);
    if (part.trim() === "" || !(value >= 0 && value < 1)) {
      throw new UsageError(`--prune must be fractions in [0, 1) separated by commas, got "${text}".`);
    }
    return value;
  });
  values.forEach((value, k) => {
    if (k > 0 && value < values[k - 1]) {
      throw new UsageError(`--prune must not decrease, but ${value} follows ${values[k - 1]} in "${text}".`);
    }
  });
  return values;
}

export const compressCommand: Command = {
  spec: {
    name: "compress",
    summary: "quantize, prune and fine-tune the INRs of a .rinr file, and entropy-code them",
    usage: "rapid-inr compress <input.rinr> --output <output.rinr> [--bits auto] [--max-psnr-drop 1 | --target-percent P]",
    example: "rapid-inr compress cifar.rinr --max-psnr-drop 1 --output cifar-small.rinr",
    positionals: [{ name: "<input.rinr>", help: "fp32 .rinr file written by encode" }],
    options: [
      { name: "output", alias: "o", type: "string", help: "path of the compressed .rinr file" },
      ...COMPRESS_OPTIONS,
      { name: "source", type: "string", help: "dataset to fine-tune and measure PSNR against (default: the source recorded in the file)" },
      { name: "entropy", type: "boolean", help: "store the codes rANS-coded, which is lossless; --no-entropy keeps them packed (default: whichever file is smaller)" },
      { name: "force", type: "boolean", default: false, help: "replace an existing output file" },
    ],
  },
  async execute({ positionals, values }, log) {
    if (positionals.length !== 1) throw new UsageError("compress takes one .rinr file. Run \"rapid-inr compress --help\".");
    if (typeof values.output !== "string") throw new UsageError("Missing --output: the compressed .rinr file to write.");
    return await compressStage({
      input: positionals[0],
      output: values.output,
      ...compressOptions(values),
      source: values.source as string | undefined,
      overwrite: values.force as boolean,
      entropy: values.entropy as boolean | undefined,
    }, log);
  },
};
