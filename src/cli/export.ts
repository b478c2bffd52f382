// `rapid-inr export`: the INR weights of a .rinr file, or the weights of a
// trained classifier, as a safetensors file, so that other tools (PyTorch,
// NumPy) can use them without rapid-inr. Each INR layer becomes one tensor
// over all images:
//   layers.<l>.weight  F32 [N][out][in]
//   layers.<l>.bias    F32 [N][out]
//   labels             I32 [N]
// Quantized files are dequantized to the values the GPU decoder uses. A
// classifier (a `train -o` file or a training checkpoint) keeps its
// torchvision tensor names; a checkpoint's optimizer state is left out.

import {
  decodeSafetensors,
  encodeSafetensors,
  FormatError,
  type NamedTensor,
  readRinr,
  RINR_MAGIC,
  type RinrFile,
} from "../format/mod.ts";
import { dequantize } from "../inr/quantize.ts";
import { sirenLayers, sirenParamCount } from "../inr/siren.ts";
import { decodeTrainCheckpoint } from "../train/checkpoint.ts";
import type { Log } from "./log.ts";
import type { Command } from "./mod.ts";
import { UsageError } from "./options.ts";
import { atomicWrite, classifierMetadata } from "./stages.ts";

/** Settings of {@linkcode exportStage}. */
export interface ExportOptions {
  /** .rinr file, classifier safetensors file from `train -o`, or training checkpoint to read. */
  input: string;
  /** safetensors file to write. */
  output: string;
  /** Replace an existing output file. Default: false. */
  overwrite?: boolean;
}

/** Kind of file that `export` read: INRs, a `train -o` classifier, or a training checkpoint. */
export type ExportInputKind = "rinr" | "classifier" | "checkpoint";

/** Figures of a finished export. */
export interface ExportReport {
  output: string;
  inputKind: ExportInputKind;
  /** INRs written; absent for a classifier. */
  images?: number;
  /** Name and shape of every tensor, in file order. */
  tensors: { name: string; shape: number[] }[];
  /** Size of the written file in bytes. */
  bytes: number;
  /** Bit width per layer of the input .rinr file; 32 for fp32 weights. Absent for a classifier. */
  bitsPerLayer?: number[];
  /** Finished epochs of the exported training checkpoint; absent for other inputs. */
  epochs?: number;
}

/** Tensors and string metadata of a safetensors export. */
export interface InrExport {
  tensors: NamedTensor[];
  metadata: Record<string, string>;
}

/** Returns the bit width of each layer of `file`: its quantization bits, or 32 for fp32 weights. */
export function layerBits(file: RinrFile): number[] {
  if (file.weights instanceof Float32Array) return sirenLayers(file.arch).map(() => 32);
  return [...file.weights.bits];
}

/**
 * Builds the per-layer tensors and the metadata of `file`. The metadata
 * values are strings, as safetensors requires; structured values are JSON.
 */
export function inrTensors(file: RinrFile): InrExport {
  const weights = file.weights instanceof Float32Array ? file.weights : dequantize(file.weights);
  const count = file.labels.length;
  const q = sirenParamCount(file.arch);
  const tensors: NamedTensor[] = [];
  for (const layer of sirenLayers(file.arch)) {
    const weight = new Float32Array(count * layer.outputs * layer.inputs);
    const bias = new Float32Array(count * layer.outputs);
    for (let n = 0; n < count; n++) {
      const base = n * q;
      weight.set(
        weights.subarray(
          base + layer.weightOffset,
          base + layer.weightOffset + layer.outputs * layer.inputs,
        ),
        n * layer.outputs * layer.inputs,
      );
      bias.set(
        weights.subarray(base + layer.biasOffset, base + layer.biasOffset + layer.outputs),
        n * layer.outputs,
      );
    }
    tensors.push({
      name: `layers.${layer.index}.weight`,
      shape: [count, layer.outputs, layer.inputs],
      data: weight,
    });
    tensors.push({ name: `layers.${layer.index}.bias`, shape: [count, layer.outputs], data: bias });
  }
  tensors.push({ name: "labels", shape: [count], data: Int32Array.from(file.labels) });

  const psnr = Array.from(
    file.psnr,
    (value) => Number.isFinite(value) ? Math.round(value * 100) / 100 : null,
  );
  const metadata: Record<string, string> = {
    format: "pt",
    content: "rapid-inr SIREN weights, one network per image",
    arch: JSON.stringify({
      sineLayers: file.arch.sineLayers,
      width: file.arch.width,
      w0: file.arch.w0,
    }),
    w0: String(file.arch.w0),
    resolution: String(file.resolution),
    coordinates:
      "x = -1 + 2 * column / (resolution - 1), y = -1 + 2 * row / (resolution - 1); 0 when resolution is 1",
    evaluation:
      "h = sin(w0 * (W h + b)) for every layer but the last, which is linear and gives RGB in [0, 1]",
    classNames: JSON.stringify(file.classNames),
    source: file.source ?? "",
    psnr: JSON.stringify(psnr),
    bits: JSON.stringify(layerBits(file)),
    encode: JSON.stringify(file.encode ?? {}),
  };
  return { tensors, metadata };
}

/** Classifier tensors and metadata, as {@linkcode classifierTensors} returns them. */
export interface ClassifierExport extends InrExport {
  kind: "classifier" | "checkpoint";
  /** Finished epochs of a checkpoint; absent for a `train -o` file. */
  epochs?: number;
}

/**
 * Reads the classifier weights from the bytes of a `train -o` file or of a
 * training checkpoint. Returns them under their torchvision names with the
 * metadata that `train -o` writes. A checkpoint also gets `epochs` (finished)
 * and `plannedEpochs`. `path` names the file in errors.
 */
export function classifierTensors(bytes: Uint8Array, path: string): ClassifierExport {
  let decoded;
  try {
    decoded = decodeSafetensors(bytes, path);
  } catch (error) {
    const reason = (error as Error).message.replace(`${path}: `, "");
    throw new FormatError(
      path,
      "file",
      `is neither a .rinr file nor a readable safetensors file (${reason}). ` +
        "Pass a .rinr file, a classifier written by train -o, or a training checkpoint (*.ckpt.safetensors).",
    );
  }
  const { tensors, metadata } = decoded;
  if (metadata.architecture === "resnet18") {
    return { kind: "classifier", tensors: [...tensors.values()], metadata };
  }
  if (!metadata.format?.startsWith("rapid-inr train checkpoint")) {
    throw new FormatError(
      path,
      "metadata",
      `is a safetensors file but neither a classifier written by train -o (architecture "resnet18") nor a training checkpoint ` +
        `(format "${metadata.format ?? "missing"}"). Pass a .rinr file, a classifier or a training checkpoint.`,
    );
  }

  const checkpoint = decodeTrainCheckpoint(bytes, path);
  const fingerprint = checkpoint.fingerprint;
  const [width, inputSize, seed] = ["--resnet-width", "--input-size", "--seed"].map((key) => Number(fingerprint[key]));
  if (![width, inputSize, seed].every(Number.isInteger)) {
    throw new FormatError(
      path,
      "fingerprint",
      "lacks --resnet-width, --input-size or --seed, so the classifier's shape is unknown. Export the classifier that train -o wrote instead.",
    );
  }
  const weights: NamedTensor[] = [...checkpoint.tensors].map(([name, t]) => ({ name, shape: t.shape, data: t.data }));
  const result: Record<string, string> = {
    ...classifierMetadata({ width, inputSize, classNames: [], seed }),
    epochs: String(checkpoint.records.length),
    plannedEpochs: String(fingerprint["--epochs"]),
  };
  // The fingerprint joins the class names with commas, so they are kept only
  // when the count matches the rows of the last layer, that is, when no name contains a comma.
  const classNames = String(fingerprint.classes ?? "").split(",");
  if (checkpoint.tensors.get("fc.weight")?.shape[0] === classNames.length) {
    result.classes = JSON.stringify(classNames);
  } else {
    delete result.classes;
  }
  return { kind: "checkpoint", tensors: weights, metadata: result, epochs: checkpoint.records.length };
}

/** Rejects an existing `path` unless `overwrite` is set. */
export async function checkOutputFree(path: string, overwrite: boolean): Promise<void> {
  if (overwrite) return;
  try {
    await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  throw new UsageError(
    `Output ${path} already exists. Choose another path or pass --force to replace it.`,
  );
}

/**
 * Writes the INR weights of a .rinr file, or the weights of a classifier file
 * or training checkpoint, as a safetensors file, atomically.
 */
export async function exportStage(options: ExportOptions, log: Log): Promise<ExportReport> {
  await checkOutputFree(options.output, options.overwrite ?? false);
  if (!await mayBeRinr(options.input)) return await exportClassifier(options, log);
  const file = await readRinr(options.input);
  const { tensors, metadata } = inrTensors(file);
  const bytes = encodeSafetensors(tensors, metadata);
  // NOTE: the existence check above and the rename inside atomicWrite are two
  // steps, so a file created in between by another process is replaced.
  await atomicWrite(options.output, bytes);

  const bits = layerBits(file);
  const report: ExportReport = {
    output: options.output,
    inputKind: "rinr",
    images: file.labels.length,
    tensors: tensors.map((t) => ({ name: t.name, shape: t.shape })),
    bytes: bytes.byteLength,
    bitsPerLayer: bits,
  };
  const quantized = file.weights instanceof Float32Array
    ? ""
    : ` (dequantized from ${bits.join("/")}-bit codes)`;
  log.result(
    `Exported the ${report.images} INRs of ${options.input}${quantized} as ${
      sirenLayers(file.arch).length
    } layers to ${options.output} (${report.bytes} bytes).`,
  );
  return report;
}

/**
 * Returns false only for a readable regular file that does not start with the
 * .rinr magic bytes. Everything else goes to `readRinr`, whose errors name the problem.
 */
export async function mayBeRinr(path: string): Promise<boolean> {
  const info = await Deno.stat(path).catch(() => undefined);
  if (!info?.isFile || info.size < RINR_MAGIC.length) return true;
  const file = await Deno.open(path).catch(() => undefined);
  if (!file) return true;
  try {
    const head = new Uint8Array(RINR_MAGIC.length);
    let filled = 0;
    while (filled < head.length) {
      const read = await file.read(head.subarray(filled));
      if (read === null) break;
      filled += read;
    }
    return RINR_MAGIC.every((byte, i) => head[i] === byte);
  } finally {
    file.close();
  }
}

async function exportClassifier(options: ExportOptions, log: Log): Promise<ExportReport> {
  const classifier = classifierTensors(await Deno.readFile(options.input), options.input);
  if (classifier.metadata.classes === undefined) {
    log.warn(`${options.input} stores the class names joined by commas and one contains a comma, so the export has no "classes" metadata.`);
  }
  const bytes = encodeSafetensors(classifier.tensors, classifier.metadata);
  await atomicWrite(options.output, bytes);
  const report: ExportReport = {
    output: options.output,
    inputKind: classifier.kind,
    tensors: classifier.tensors.map((t) => ({ name: t.name, shape: t.shape })),
    bytes: bytes.byteLength,
    ...(classifier.epochs === undefined ? {} : { epochs: classifier.epochs }),
  };
  const after = classifier.kind === "checkpoint"
    ? ` after epoch ${classifier.epochs} of ${classifier.metadata.plannedEpochs}`
    : "";
  log.result(
    `Exported the ResNet-18 classifier (width ${classifier.metadata.width})${after} of ${options.input} ` +
      `as ${report.tensors.length} tensors with torchvision names to ${options.output} (${report.bytes} bytes).`,
  );
  return report;
}

export const exportCommand: Command = {
  spec: {
    name: "export",
    summary: "write the INR weights of a .rinr file, or a trained classifier, as a safetensors file",
    usage: "rapid-inr export <file.rinr | classifier.safetensors | checkpoint.ckpt.safetensors> --output <weights.safetensors> [--force]",
    example: "rapid-inr export cifar-q8.rinr --output cifar-inrs.safetensors",
    positionals: [{
      name: "<input>",
      help: "encoded or compressed .rinr dataset, classifier written by train -o, or training checkpoint (*.ckpt.safetensors)",
    }],
    options: [
      { name: "output", alias: "o", type: "string", help: "path of the safetensors file to write" },
      { name: "force", type: "boolean", default: false, help: "replace an existing output file" },
    ],
  },
  async execute({ positionals, values }, log) {
    if (positionals.length !== 1) {
      throw new UsageError('export takes one input file. Run "rapid-inr export --help".');
    }
    if (typeof values.output !== "string") {
      throw new UsageError("Missing --output: the safetensors file to write.");
    }
    return await exportStage({
      input: positionals[0],
      output: values.output,
      overwrite: values.force as boolean,
    }, log);
  },
};
