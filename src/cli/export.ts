// `rapid-inr export`: the INR weights of a .rinr file as a safetensors file,
// so that other tools (PyTorch, NumPy) can evaluate the SIRENs without
// rapid-inr. Each layer becomes one tensor over all images:
//   layers.<l>.weight  F32 [N][out][in]
//   layers.<l>.bias    F32 [N][out]
//   labels             I32 [N]
// Quantized files are dequantized to the values the GPU decoder uses.

import { encodeSafetensors, type NamedTensor, readRinr, type RinrFile } from "../format/mod.ts";
import { dequantize } from "../inr/quantize.ts";
import { sirenLayers, sirenParamCount } from "../inr/siren.ts";
import type { Log } from "./log.ts";
import type { Command } from "./mod.ts";
import { UsageError } from "./options.ts";
import { atomicWrite } from "./stages.ts";

/** Settings of {@linkcode exportStage}. */
export interface ExportOptions {
  /** .rinr file to read. */
  input: string;
  /** safetensors file to write. */
  output: string;
  /** Replace an existing output file. Default: false. */
  overwrite?: boolean;
}

/** Figures of a finished export. */
export interface ExportReport {
  output: string;
  images: number;
  /** Name and shape of every tensor, in file order. */
  tensors: { name: string; shape: number[] }[];
  /** Size of the written file in bytes. */
  bytes: number;
  /** Bit width per layer of the input file; 32 for fp32 weights. */
  bitsPerLayer: number[];
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

/** Writes the INR weights of a .rinr file as a safetensors file, atomically. */
export async function exportStage(options: ExportOptions, log: Log): Promise<ExportReport> {
  await checkOutputFree(options.output, options.overwrite ?? false);
  const file = await readRinr(options.input);
  const { tensors, metadata } = inrTensors(file);
  const bytes = encodeSafetensors(tensors, metadata);
  // NOTE: the existence check above and the rename inside atomicWrite are two
  // steps, so a file created in between by another process is replaced.
  await atomicWrite(options.output, bytes);

  const bits = layerBits(file);
  const report: ExportReport = {
    output: options.output,
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

export const exportCommand: Command = {
  spec: {
    name: "export",
    summary: "write the INR weights of a .rinr file as a safetensors file",
    usage: "rapid-inr export <file.rinr> --output <weights.safetensors> [--force]",
    example: "rapid-inr export cifar-q8.rinr --output cifar-inrs.safetensors",
    positionals: [{ name: "<file.rinr>", help: "encoded or compressed dataset" }],
    options: [
      { name: "output", alias: "o", type: "string", help: "path of the safetensors file to write" },
      { name: "force", type: "boolean", default: false, help: "replace an existing output file" },
    ],
  },
  async execute({ positionals, values }, log) {
    if (positionals.length !== 1) {
      throw new UsageError('export takes one .rinr file. Run "rapid-inr export --help".');
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
