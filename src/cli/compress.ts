// `rapid-inr compress`: per-layer quantization, pruning with quantization-aware
// fine-tuning, and entropy coding of a .rinr file.

import type { Command } from "./mod.ts";
import { type OptionSpec, type OptionValues, UsageError } from "./options.ts";
import { rdReportPaths } from "../report/rd.ts";
import { rdReportStage } from "./rd_report.ts";
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
  { name: "tune-batch", type: "integer", min: 1, help: "images fine-tuned per batch; a checkpoint is saved after each (default: as many as fit the GPU)" },
];

/** Reads the compress settings of `values` (from COMPRESS_OPTIONS) into stage options. */
export function compressOptions(
  values: OptionValues,
): Pick<
  CompressStageOptions,
  "bits" | "layerToleranceDb" | "tuneIterations" | "tuneLearningRate" | "sparsities" | "maxPsnrDrop" | "targetPercent" | "tuneBatch"
> {
  return {
    bits: parseBits(String(values.bits)),
    layerToleranceDb: values["layer-tolerance"] as number,
    tuneIterations: values["tune-iterations"] as number,
    tuneLearningRate: values["tune-lr"] as number,
    sparsities: parseSparsities(String(values.prune)),
    maxPsnrDrop: values["max-psnr-drop"] as number,
    targetPercent: values["target-percent"] as number | undefined,
    tuneBatch: values["tune-batch"] as number | undefined,
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
    usage: "rapid-inr compress <input.rinr> [--output <output.rinr>] [--bits auto] [--max-psnr-drop 1 | --target-percent P] [--rd-report FILE.md]",
    example: "rapid-inr compress cifar.rinr --max-psnr-drop 1 --output cifar-small.rinr",
    positionals: [{ name: "<input.rinr>", help: "fp32 .rinr file written by encode" }],
    options: [
      { name: "output", alias: "o", type: "string", help: "path of the compressed .rinr file" },
      ...COMPRESS_OPTIONS,
      { name: "source", type: "string", help: "dataset to fine-tune and measure PSNR against (default: the source recorded in the file)" },
      { name: "entropy", type: "boolean", help: "store the codes rANS-coded, which is lossless; --no-entropy keeps them packed (default: whichever file is smaller)" },
      { name: "rd-report", type: "string", help: "also sweep bit widths and sparsities and write a rate-distortion table FILE.md, with FILE.json and a plot FILE.svg, next to JPEG and WebP on the same images" },
      { name: "rd-bits", type: "string", default: "3,4,5,6,8", help: "with --rd-report: bit widths of every layer but the first (which keeps 12)" },
      { name: "rd-images", type: "integer", min: 1, help: "with --rd-report: sweep only the first N images (default: all)" },
      { name: "rd-coin", type: "boolean", default: false, help: "with --rd-report: add the published COIN curve, which was measured on the Kodak images" },
      { name: "force", type: "boolean", default: false, help: "replace existing output files" },
      { name: "resume", type: "boolean", default: false, help: "continue an interrupted compress from its checkpoint <output>.partial, saved after every fine-tuning batch; the settings must match the interrupted run" },
    ],
  },
  async execute({ positionals, values }, log) {
    if (positionals.length !== 1) throw new UsageError("compress takes one .rinr file. Run \"rapid-inr compress --help\".");
    const report = values["rd-report"];
    if (typeof values.output !== "string" && typeof report !== "string") {
      throw new UsageError("Missing --output: the compressed .rinr file to write (or --rd-report for a rate-distortion report only).");
    }
    const settings = compressOptions(values);
    // Existing report files fail the command now, not after a long compression.
    if (typeof report === "string" && values.force !== true) {
      for (const path of Object.values(rdReportPaths(report))) {
        if (await Deno.lstat(path).then(() => true, () => false)) {
          throw new UsageError(`Output ${path} already exists. Choose another --rd-report path or pass --force to replace it.`);
        }
      }
    }
    const compress = typeof values.output === "string"
      ? await compressStage({
        input: positionals[0],
        output: values.output,
        ...settings,
        source: values.source as string | undefined,
        overwrite: values.force as boolean,
        entropy: values.entropy as boolean | undefined,
        resume: values.resume as boolean,
      }, log)
      : undefined;
    if (typeof report !== "string") return compress;
    const rdBits = String(values["rd-bits"]).split(",").map((part) => {
      const value = Number(part);
      if (!Number.isInteger(value) || value < 1 || value > 16) {
        throw new UsageError(`--rd-bits must be integers in 1..16 separated by commas, got "${values["rd-bits"]}".`);
      }
      return value;
    });
    const rd = await rdReportStage({
      input: positionals[0],
      output: report,
      bitWidths: rdBits,
      sparsities: settings.sparsities!,
      tuneIterations: settings.tuneIterations!,
      tuneLearningRate: settings.tuneLearningRate!,
      images: values["rd-images"] as number | undefined,
      coin: values["rd-coin"] as boolean,
      source: values.source as string | undefined,
      overwrite: values.force as boolean,
    }, log);
    return { ...(compress ? { compress } : {}), rdReport: rd };
  },
};
