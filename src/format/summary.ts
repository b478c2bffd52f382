// The figures that `rapid-inr info` prints about a .rinr file.

import { dequantize, residentDatasetBytes } from "../inr/quantize.ts";
import type { SirenArch } from "../inr/siren.ts";
import { percentile } from "../report/rd.ts";
import type { RinrFile } from "./rinr.ts";
import { readRinr } from "./rinr_file.ts";

/** Counts, sizes and quality of one .rinr file. */
export interface RinrSummary {
  file: string;
  formatVersion: number;
  /** Total file size in bytes. */
  fileBytes: number;
  imageCount: number;
  classNames: string[];
  /** Images per class, indexed by label. */
  imagesPerClass: number[];
  /** Image side R in pixels. */
  resolution: number;
  arch: SirenArch;
  /** Q, parameters per image. */
  paramCount: number;
  weightEncoding: "f32" | "uniform";
  /** Bit width per layer, 32 for f32 layers. */
  bitsPerLayer: number[];
  /** Payload bytes of the weight sections: codes (packed or rANS-coded) and ranges, or fp32 values. */
  weightBytes: number;
  /** Whether the codes are stored rANS-coded (section QANS) instead of packed (QCOD). */
  entropyCoded: boolean;
  /** `weightBytes` times 8, per parameter. */
  bitsPerWeight: number;
  /** Whole file in bits per pixel (bpp), the usual image-compression rate. */
  bitsPerPixel: number;
  /** File bytes as a percentage of the raw RGB size N * R * R * 3 bytes. */
  percentOfRaw: number;
  /** Bytes the decoder keeps resident on the GPU during training: packed codes, ranges, labels and the layer table. */
  residentBytes: number;
  /** `residentBytes` per image; 0 for a file without images. */
  residentBytesPerImage: number;
  /**
   * PSNR in dB: mean, minimum and maximum over images with a finite PSNR, and
   * the 5th percentile over all images, where exact fits count as infinite.
   * Undefined when no image has a finite PSNR.
   */
  psnr?: { mean: number; p5: number; min: number; max: number };
  /** Images fitted exactly (infinite PSNR). */
  exactImages: number;
  /** Payload bytes per section, in file order. */
  sections: { tag: string; bytes: number }[];
  /** Tags of optional sections this version does not read. */
  ignoredSections: string[];
  source: string;
  seed?: number;
  /** Fraction of all weights that decode to exactly zero (pruned ones among them); 0 for fp32 files. */
  zeroFraction: number;
  /** Settings of the compress run that wrote the file, as it recorded them; undefined for other files. */
  compress?: Record<string, unknown>;
}

/** Reads a .rinr file and summarizes it. Throws a `FormatError` for an invalid file. */
export async function summarizeRinr(path: string): Promise<RinrSummary> {
  return summarizeRinrFile(await readRinr(path));
}

/** Summarizes an already parsed .rinr file. */
export function summarizeRinrFile(file: RinrFile): RinrSummary {
  const n = file.labels.length;
  const r = file.resolution;
  const paramCount = file.header.paramCount;
  const weightTags = new Set(["WF32", "QRNG", "QR16", "QCOD", "QANS"]);
  const weightBytes = file.sections.filter((s) => weightTags.has(s.tag)).reduce(
    (sum, s) => sum + s.bytes,
    0,
  );
  const bitsPerLayer = file.header.weights.encoding === "uniform"
    ? file.header.weights.bits
    : new Array(file.arch.sineLayers + 1).fill(32);

  const imagesPerClass = new Array(file.classNames.length).fill(0);
  for (const label of file.labels) imagesPerClass[label]++;

  let sum = 0;
  let finite = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const value of file.psnr) {
    if (!Number.isFinite(value)) continue;
    sum += value;
    finite++;
    min = Math.min(min, value);
    max = Math.max(max, value);
  }

  let zeros = 0;
  if (!(file.weights instanceof Float32Array)) {
    for (const value of dequantize(file.weights)) if (value === 0) zeros++;
  }
  const compress = file.encode?.compress;

  const pixels = n * r * r;
  const residentBytes = residentDatasetBytes({
    arch: file.arch,
    count: n,
    bits: file.weights instanceof Float32Array ? "f32" : file.weights.bits,
  });
  return {
    file: file.name,
    formatVersion: file.formatVersion,
    fileBytes: file.fileBytes,
    imageCount: n,
    classNames: file.classNames,
    imagesPerClass,
    resolution: r,
    arch: file.arch,
    paramCount,
    weightEncoding: file.header.weights.encoding,
    bitsPerLayer,
    weightBytes,
    entropyCoded: file.sections.some((s) => s.tag === "QANS"),
    bitsPerWeight: n > 0 ? (weightBytes * 8) / (n * paramCount) : 0,
    bitsPerPixel: pixels > 0 ? (file.fileBytes * 8) / pixels : 0,
    percentOfRaw: pixels > 0 ? (100 * file.fileBytes) / (pixels * 3) : 0,
    residentBytes,
    residentBytesPerImage: n > 0 ? residentBytes / n : 0,
    psnr: finite > 0
      ? { mean: sum / finite, p5: percentile(file.psnr, 0.05), min, max }
      : undefined,
    exactImages: n - finite,
    sections: file.sections.map((s) => ({ tag: s.tag, bytes: s.bytes })),
    ignoredSections: file.unknownSections.map((s) => s.tag),
    source: file.source ?? "",
    seed: typeof file.encode?.seed === "number" ? file.encode.seed : undefined,
    zeroFraction: n > 0 ? zeros / (n * paramCount) : 0,
    compress: compress && typeof compress === "object"
      ? compress as Record<string, unknown>
      : undefined,
  };
}

/** Formats a summary as the lines `rapid-inr info` prints. */
export function formatRinrSummary(summary: RinrSummary): string {
  const { arch } = summary;
  const codedBytes = summary.sections.find((s) => s.tag === "QANS")?.bytes;
  const codeCount = summary.imageCount * summary.paramCount;
  const bitsPerCode = codedBytes !== undefined && codeCount > 0 ? (codedBytes * 8) / codeCount : 0;
  const coding = summary.entropyCoded
    ? `, rANS-coded ${codedBytes} B (${bitsPerCode.toFixed(2)} bits per code)`
    : "";
  const bits = summary.weightEncoding === "f32"
    ? "fp32"
    : `uniform, bits per layer [${summary.bitsPerLayer.join(", ")}]${coding}`;
  const lines = [
    `file         ${summary.file} (format version ${summary.formatVersion}, ${summary.fileBytes} bytes)`,
    `images       ${summary.imageCount} at ${summary.resolution}x${summary.resolution} px, ${summary.classNames.length} classes`,
    `classes      ${formatClasses(summary.classNames, summary.imagesPerClass)}`,
    `SIREN        ${arch.sineLayers} sine layers x ${arch.width} wide, w0 ${arch.w0}, Q = ${summary.paramCount} parameters`,
    `weights      ${bits}, ${summary.bitsPerWeight.toFixed(2)} bits per weight` +
    (summary.weightEncoding === "f32" ? "" : `, ${(100 * summary.zeroFraction).toFixed(1)}% zero`),
    `size         ${summary.bitsPerPixel.toFixed(3)} bpp, ${
      summary.percentOfRaw.toFixed(1)
    }% of raw RGB`,
    `on the GPU   ${summary.residentBytes} bytes resident during training${
      summary.imageCount > 0 ? ` (${summary.residentBytesPerImage.toFixed(0)} per image)` : ""
    }`,
    `PSNR         ${formatPsnr(summary)}`,
    `sections     ${summary.sections.map((s) => `${s.tag} ${s.bytes} B`).join(", ")}`,
  ];
  if (summary.compress) lines.push(`compress     ${formatCompress(summary.compress)}`);
  if (summary.ignoredSections.length > 0) {
    lines.push(
      `ignored      ${
        summary.ignoredSections.join(", ")
      } (optional sections this version does not read)`,
    );
  }
  lines.push(
    `source       ${summary.source || "(not recorded)"}${
      summary.seed !== undefined ? `, seed ${summary.seed}` : ""
    }`,
  );
  return lines.join("\n");
}

// One line of the recorded compress settings, such as "fine-tuned 100 iterations per step
// over sparsities 0, 0.1; each image within 1 dB of its fp32 fit".
function formatCompress(record: Record<string, unknown>): string {
  const iterations = Number(record.tuneIterations ?? 0);
  const widths = record.layerToleranceDb !== undefined
    ? `; bit widths chosen at ${record.layerToleranceDb} dB per layer`
    : "";
  if (!(iterations > 0)) return `rounded without fine-tuning${widths}`;
  const sparsities = Array.isArray(record.sparsities) ? record.sparsities.join(", ") : "?";
  const choice = record.targetPercent !== undefined
    ? `steps chosen for ${record.targetPercent}% of raw`
    : `each image within ${record.maxPsnrDrop} dB of its fp32 fit`;
  return `fine-tuned ${iterations} iterations per step over sparsities ${sparsities}; ${choice}${widths}`;
}

function formatPsnr(summary: RinrSummary): string {
  const exact = summary.exactImages > 0 ? `, ${summary.exactImages} exact` : "";
  if (!summary.psnr) {
    return summary.imageCount > 0 ? `all ${summary.imageCount} images exact` : "no images";
  }
  const { mean, p5, min, max } = summary.psnr;
  return `mean ${mean.toFixed(2)} dB (5th percentile ${p5.toFixed(2)}, min ${min.toFixed(2)}, max ${
    max.toFixed(2)
  })${exact}`;
}

// Shows at most MAX_LISTED_CLASSES classes that have images, then counts the rest.
const MAX_LISTED_CLASSES = 20;

function formatClasses(names: readonly string[], counts: readonly number[]): string {
  const withImages = names.flatMap((name, i) => counts[i] > 0 ? [`${name} (${counts[i]})`] : []);
  const parts = [withImages.slice(0, MAX_LISTED_CLASSES).join(", ")];
  const unlisted = withImages.length - MAX_LISTED_CLASSES;
  if (unlisted > 0) parts.push(`${unlisted} more classes with images`);
  const empty = names.length - withImages.length;
  if (empty > 0) parts.push(`${empty} ${empty === 1 ? "class has" : "classes have"} no images`);
  return parts.filter((part) => part !== "").join("; ");
}
