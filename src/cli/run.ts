// `rapid-inr run`: encode, compress and train in one command.

import { join } from "@std/path";
import type { Command } from "./mod.ts";
import { UsageError } from "./options.ts";
import { DATASET_OPTIONS, datasetSpec, ENCODE_OPTIONS, encodeOptions } from "./encode.ts";
import { compressStage, encodeStage, trainStage } from "./stages.ts";
import { testSpec, TRAIN_OPTIONS, trainOptions } from "./train.ts";

export const runCommand: Command = {
  spec: {
    name: "run",
    summary: "encode, compress and train in one command",
    usage: "rapid-inr run <dataset> [--out-dir DIR] [options]",
    example: "rapid-inr run ../data/cifar10 --per-class 100 --iterations 1000 --bits 8 --epochs 10 --resnet-width 16 --json",
    positionals: [{ name: "<dataset>", help: "image folder (<split>/<class>/<image>), CIFAR-10 binary batches or an IDX file" }],
    options: [
      { name: "out-dir", type: "string", default: "rapid-inr-out", help: "folder for encoded.rinr, compressed.rinr and classifier.safetensors" },
      ...DATASET_OPTIONS,
      ...ENCODE_OPTIONS,
      { name: "bits", type: "list", default: "8", min: 1, max: 16, help: "quantization bit width for every layer, or one per layer" },
      ...TRAIN_OPTIONS,
    ],
  },
  async execute({ positionals, values }, log) {
    if (positionals.length !== 1) throw new UsageError("run takes one dataset path. Run \"rapid-inr run --help\".");
    const dataset = positionals[0];
    const outDir = values["out-dir"] as string;
    const test = await testSpec(values, dataset);
    await Deno.mkdir(outDir, { recursive: true });
    const encodedPath = join(outDir, "encoded.rinr");
    const compressedPath = join(outDir, "compressed.rinr");
    const modelPath = join(outDir, "classifier.safetensors");

    log.info(`[1/3] encode ${dataset}`);
    const encode = await encodeStage(encodeOptions(dataset, encodedPath, values), log);
    log.info(`[2/3] compress ${encodedPath}`);
    const bits = values.bits as number[];
    const compress = await compressStage({
      input: encodedPath,
      output: compressedPath,
      bits: bits.length === 1 ? bits[0] : bits,
      overwrite: values.force as boolean,
    }, log);
    log.info(`[3/3] train from ${values.input === "inr" ? compressedPath : dataset}`);
    const options = trainOptions(values);
    const train = await trainStage({
      ...options,
      rinr: compressedPath,
      dataset: { ...datasetSpec(dataset, values), size: encode.resolution },
      test,
      output: modelPath,
    }, log);
    return { encode, compress, train };
  },
};
