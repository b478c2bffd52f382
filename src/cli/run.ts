// `rapid-inr run`: encode, compress and train in one command.

import { join } from "@std/path";
import type { Command } from "./mod.ts";
import { UsageError } from "./options.ts";
import { COMPRESS_OPTIONS, compressOptions } from "./compress.ts";
import { DATASET_OPTIONS, datasetSpec, ENCODE_OPTIONS, encodeOptions } from "./encode.ts";
import { checkTrainOutputs, compressStage, encodeStage, reuseCompressed, reuseEncoded, trainStage } from "./stages.ts";
import { testSpec, TRAIN_OPTIONS, trainOptions } from "./train.ts";

export const runCommand: Command = {
  spec: {
    name: "run",
    summary: "encode, compress and train in one command",
    usage: "rapid-inr run <dataset> [--out-dir DIR] [options]",
    example: "rapid-inr run ../data/cifar10 --per-class 100 --iterations 1000 --max-psnr-drop 1 --epochs 10 --resnet-width 16 --json",
    positionals: [{ name: "<dataset>", help: "image folder (<split>/<class>/<image>), CIFAR-10 binary batches or an IDX file" }],
    options: [
      { name: "out-dir", type: "string", default: "rapid-inr-out", help: "folder for encoded.rinr, compressed.rinr and classifier.safetensors" },
      ...DATASET_OPTIONS,
      ...ENCODE_OPTIONS,
      ...COMPRESS_OPTIONS,
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
    // The train stage would reject these too, but only after encode and compress.
    await checkTrainOutputs({ output: modelPath, overwrite: values.force === true, resume: values.resume === true });

    // With --resume, a stage whose output is complete is reused, not redone:
    // a finished .rinr has no checkpoint file beside it.
    const resume = values.resume === true && values.force !== true;
    const compressSettings = compressOptions(values);
    const encodeSettings = encodeOptions(dataset, encodedPath, values);
    let encode;
    if (resume && await isFile(encodedPath) && !await isFile(`${encodedPath}.partial`)) {
      log.info(`[1/3] encode: reusing the finished ${encodedPath} (--resume)`);
      encode = await reuseEncoded(encodedPath, encodeSettings);
    } else {
      log.info(`[1/3] encode ${dataset}`);
      encode = await encodeStage(encodeSettings, log);
    }
    let compress;
    if (resume && await isFile(compressedPath)) {
      log.info(`[2/3] compress: reusing the finished ${compressedPath} (--resume)`);
      compress = await reuseCompressed(compressedPath, encode, compressSettings);
    } else {
      log.info(`[2/3] compress ${encodedPath}`);
      compress = await compressStage({
        input: encodedPath,
        output: compressedPath,
        ...compressSettings,
        overwrite: values.force as boolean,
        resume: values.resume === true,
      }, log);
    }
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

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}
