// `rapid-inr compress`: layer-wise uniform quantization of a .rinr file.

import type { Command } from "./mod.ts";
import { UsageError } from "./options.ts";
import { compressStage } from "./stages.ts";

export const compressCommand: Command = {
  spec: {
    name: "compress",
    summary: "quantize the INR weights of a .rinr file layer by layer",
    usage: "rapid-inr compress <input.rinr> --output <output.rinr> [--bits 8] [--entropy | --no-entropy]",
    example: "rapid-inr compress cifar.rinr --bits 8 --output cifar-q8.rinr",
    positionals: [{ name: "<input.rinr>", help: "fp32 .rinr file written by encode" }],
    options: [
      { name: "output", alias: "o", type: "string", help: "path of the compressed .rinr file" },
      { name: "bits", type: "list", default: "8", min: 1, max: 16, help: "bit width for every layer, or one per layer separated by commas" },
      { name: "source", type: "string", help: "dataset to measure PSNR against (default: the source recorded in the file)" },
      { name: "entropy", type: "boolean", help: "store the codes rANS-coded, which is lossless; --no-entropy keeps them packed (default: whichever file is smaller)" },
      { name: "force", type: "boolean", default: false, help: "replace an existing output file" },
    ],
  },
  async execute({ positionals, values }, log) {
    if (positionals.length !== 1) throw new UsageError("compress takes one .rinr file. Run \"rapid-inr compress --help\".");
    if (typeof values.output !== "string") throw new UsageError("Missing --output: the compressed .rinr file to write.");
    const bits = values.bits as number[];
    return await compressStage({
      input: positionals[0],
      output: values.output,
      bits: bits.length === 1 ? bits[0] : bits,
      source: values.source as string | undefined,
      overwrite: values.force as boolean,
      entropy: values.entropy as boolean | undefined,
    }, log);
  },
};
