// --dry-run of the commands that read a .rinr file: compress, decode and
// export (which also reads classifier files).

import { join } from "@std/path";
import { readRinr } from "../format/mod.ts";
import { packedLayout } from "../inr/quantize.ts";
import { sirenLayers, sirenParamCount } from "../inr/siren.ts";
import { classifierTensors, mayBeRinr } from "./export.ts";
import type { Log } from "./log.ts";
import { type ParsedCommand, UsageError } from "./options.ts";
import {
  addCompressMemory,
  addOutput,
  checkBinding,
  type DryRunPlan,
  estimatedRinrBytes,
  inputPlan,
  planSource,
  quantizedBits,
  readAdapter,
  resolveBits,
  sirenPlan,
} from "./plan_common.ts";
import { decodeChunkBytes, packedCodeBytes, residentDatasetBytes } from "./plan_memory.ts";

export async function planCompress(
  plan: DryRunPlan,
  { positionals, values }: ParsedCommand,
  log: Log,
): Promise<void> {
  if (positionals.length !== 1) {
    throw new UsageError('compress takes one .rinr file. Run "rapid-inr compress --help".');
  }
  if (typeof values.output !== "string") {
    throw new UsageError("Missing --output: the compressed .rinr file to write.");
  }
  const file = await readRinr(positionals[0]);
  if (!(file.weights instanceof Float32Array)) {
    throw new UsageError(
      `${positionals[0]} is already quantized. Compress the fp32 file that encode wrote.`,
    );
  }
  plan.input = inputPlan(positionals[0], file);
  plan.siren = sirenPlan(file.arch);
  const { bits, auto } = resolveBits(file.arch, values);
  const count = file.labels.length;
  const { wordsPerImage } = packedLayout(file.arch, bits);
  const rawBytes = count * file.resolution * file.resolution * 3;
  plan.compress = {
    bitsPerLayer: bits,
    autoBits: auto,
    estimatedFileBytes: estimatedRinrBytes(count, count * (wordsPerImage + bits.length * 2) * 4),
    rawBytes,
  };
  plan.dataset = await planSource(file, values.source as string | undefined, log);
  plan.adapter = (await readAdapter()).plan;
  addCompressMemory(plan, { arch: file.arch, count, side: file.resolution, bits, tuneIterations: values["tune-iterations"] as number });
  await addOutput(plan, values.output);
}

export async function planDecode(
  plan: DryRunPlan,
  { positionals, values }: ParsedCommand,
  log: Log,
): Promise<void> {
  if (positionals.length !== 1) {
    throw new UsageError('decode takes one .rinr file. Run "rapid-inr decode --help".');
  }
  if (typeof values.output !== "string") {
    throw new UsageError("Missing --output: the folder to write PNGs into.");
  }

  const file = await readRinr(positionals[0]);
  plan.input = inputPlan(positionals[0], file);
  plan.siren = sirenPlan(file.arch);

  const count = Math.min(
    (values.limit as number | undefined) ?? file.labels.length,
    file.labels.length,
  );
  const size = (values.size as number | undefined) ?? file.resolution;
  const psnr = typeof values.source === "string" || values.psnr === true;
  if (psnr) {
    if (size !== file.resolution) {
      throw new UsageError(
        `PSNR needs the encoded size ${file.resolution}; drop --size or --source.`,
      );
    }
    plan.dataset = await planSource(file, values.source as string | undefined, log);
  }
  plan.decode = { images: count, size, psnr };

  plan.adapter = (await readAdapter()).plan;
  const maxBinding = plan.adapter.maxStorageBufferBindingSize ?? undefined;
  const codes = packedCodeBytes({
    arch: file.arch,
    count: file.labels.length,
    bits: quantizedBits(file),
  });
  checkBinding(
    plan,
    `The packed weights of ${file.labels.length} images`,
    codes,
    "Quantize to fewer bits.",
  );
  plan.gpuMemory.push(
    {
      stage: "decode",
      item: "resident packed INRs",
      bytes: residentDatasetBytes({
        arch: file.arch,
        count: file.labels.length,
        bits: quantizedBits(file),
      }),
    },
    {
      stage: "decode",
      item: "per-chunk decode buffers",
      bytes: decodeChunkBytes({ arch: file.arch, count, size, maxBinding }),
    },
  );

  // The run fails on the first PNG that exists without --force, so the plan
  // lists that file; without one, it lists the output folder.
  for (let n = 0; n < count; n++) {
    const className =
      (file.classNames[file.labels[n]] ?? String(file.labels[n])).replace(/[\/\\\0]/g, "_") || "_";
    const path = join(values.output, className, `${String(n).padStart(6, "0")}.png`);
    const exists = await Deno.lstat(path).then(() => true, () => false);
    if (exists) {
      plan.outputs.push({ path, exists });
      break;
    }
  }
  if (plan.outputs.length === 0) plan.outputs.push({ path: values.output, exists: false });
}

export async function planExport(
  plan: DryRunPlan,
  { positionals, values }: ParsedCommand,
): Promise<void> {
  if (positionals.length !== 1) {
    throw new UsageError('export takes one input file. Run "rapid-inr export --help".');
  }
  if (typeof values.output !== "string") {
    throw new UsageError("Missing --output: the safetensors file to write.");
  }
  if (!await mayBeRinr(positionals[0])) {
    const bytes = await Deno.readFile(positionals[0]);
    const classifier = classifierTensors(bytes, positionals[0]);
    plan.export = {
      tensors: classifier.tensors.map((t) => ({ name: t.name, shape: t.shape })),
      // The same tensors with the checkpoint's optimizer state left out, so at most the input's size.
      estimatedFileBytes: bytes.byteLength,
    };
    await addOutput(plan, values.output);
    return;
  }
  const file = await readRinr(positionals[0]);
  plan.input = inputPlan(positionals[0], file);
  plan.siren = sirenPlan(file.arch);
  const count = file.labels.length;
  const tensors: { name: string; shape: number[] }[] = [];
  for (const layer of sirenLayers(file.arch)) {
    tensors.push({
      name: `layers.${layer.index}.weight`,
      shape: [count, layer.outputs, layer.inputs],
    });
    tensors.push({ name: `layers.${layer.index}.bias`, shape: [count, layer.outputs] });
  }
  tensors.push({ name: "labels", shape: [count] });
  // Tensor data plus a JSON header whose PSNR list takes about 8 bytes per image.
  const dataBytes = count * (sirenParamCount(file.arch) + 1) * 4;
  plan.export = { tensors, estimatedFileBytes: dataBytes + count * 8 + 2048 };
  await addOutput(plan, values.output);
}
