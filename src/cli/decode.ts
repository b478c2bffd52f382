// `rapid-inr decode`: write the images of a .rinr file as PNGs.

import type { Command } from "./mod.ts";
import { UsageError } from "./options.ts";
import { decodeStage } from "./stages.ts";

export const decodeCommand: Command = {
  spec: {
    name: "decode",
    summary: "decode a .rinr file to PNG images, with PSNR against the source",
    usage: "rapid-inr decode <file.rinr> --output <folder> [--size S] [--psnr]",
    example: "rapid-inr decode cifar-q8.rinr --output decoded --psnr",
    positionals: [{ name: "<file.rinr>", help: "encoded or compressed dataset" }],
    options: [
      { name: "output", alias: "o", type: "string", help: "folder to write <class>/<index>.png into" },
      { name: "size", type: "integer", min: 1, max: 8192, help: "output side in pixels (default: the encoded size)" },
      { name: "limit", type: "integer", min: 1, help: "decode only the first N images" },
      { name: "psnr", type: "boolean", default: false, help: "report PSNR against the source images recorded in the file" },
      { name: "source", type: "string", help: "dataset to measure PSNR against instead of the recorded source (implies --psnr)" },
      { name: "force", type: "boolean", default: false, help: "replace existing PNG files" },
    ],
  },
  async execute({ positionals, values }, log) {
    if (positionals.length !== 1) throw new UsageError("decode takes one .rinr file. Run \"rapid-inr decode --help\".");
    if (typeof values.output !== "string") throw new UsageError("Missing --output: the folder to write PNGs into.");
    // An empty source means "the dataset recorded in the file".
    let source: string | undefined;
    if (typeof values.source === "string") source = values.source;
    else if (values.psnr) source = "";
    return await decodeStage({
      input: positionals[0],
      outputDir: values.output,
      size: values.size as number | undefined,
      limit: values.limit as number | undefined,
      source,
      overwrite: values.force as boolean,
    }, log);
  },
};
