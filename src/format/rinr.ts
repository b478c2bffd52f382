// The .rinr container: one file per encoded dataset.
//
// Byte layout, all integers little-endian:
//   preamble (16 bytes): magic 89 52 49 4E 52 0D 0A 1A ("\x89RINR\r\n\x1A"),
//     format version u32, section count u32
//   per section: a 24-byte header, then the payload, then zero padding to a
//     multiple of 8 bytes, so every payload starts 8-byte aligned and typed
//     arrays can view it without a copy. The header is: tag (4 ASCII bytes),
//     flags u32 (bit 0: required), payload length u64, CRC-32 u32 of the
//     first 16 header bytes followed by the payload, and a reserved u32 (0).
// Sections of format version 1:
//   HEAD  UTF-8 JSON `RinrHeader`
//   LABL  labels [N], u16 or u32 as header.labelType specifies
//   WF32  fp32 weights [N][Q] (weights.encoding "f32")
//   QRNG  f32 [N][L][2] scale and offset (weights.encoding "uniform")
//   QR16  the same ranges in u16 [N][L][2], in place of QRNG; see ranges.ts.
//         Required, like QANS.
//   QCOD  u32 [N][wordsPerImage] packed codes, layout in src/inr/quantize.ts
//   QANS  the same codes entropy coded (rANS), in place of QCOD; see
//         entropy.ts. It is marked required, so readers that predate it
//         reject the file by name instead of misreading it.
// Readers reject unknown sections that carry the required flag (a later
// pruning mask or entropy-coded weights would change how the rest reads) and
// skip unknown optional ones. A change that older readers cannot skip safely
// raises RINR_VERSION.

import { crc32 } from "node:zlib";
import { packedLayout, type QuantizedInrs, resolveLayerBits } from "../inr/quantize.ts";
import { type SirenArch, sirenLayers, sirenParamCount } from "../inr/siren.ts";
import { encodeQans } from "./entropy.ts";
import { packRanges16 } from "./ranges.ts";

/** First 8 bytes of every .rinr file. */
export const RINR_MAGIC: Uint8Array = new Uint8Array([
  0x89,
  0x52,
  0x49,
  0x4e,
  0x52,
  0x0d,
  0x0a,
  0x1a,
]);
/** Format version this module writes and the newest it reads. */
export const RINR_VERSION = 1;
/** Section flag: readers that do not know the tag must reject the file. */
export const SECTION_REQUIRED = 1;

/** Section tags of format version 1. */
export const KNOWN_TAGS: ReadonlySet<string> = new Set([
  "HEAD",
  "LABL",
  "WF32",
  "QRNG",
  "QR16",
  "QCOD",
  "QANS",
]);

const PREAMBLE_BYTES = 16;
const SECTION_HEADER_BYTES = 24;
const ALIGNMENT = 8;

/** Error for an invalid .rinr file. The message names the file and the field. */
export class FormatError extends Error {
  override name = "FormatError";
  readonly file: string;
  readonly field: string;

  constructor(file: string, field: string, detail: string) {
    super(`${file}: ${field}: ${detail}`);
    this.file = file;
    this.field = field;
  }
}

/** Encode settings stored with the weights; free-form JSON besides the seed. */
export interface EncodeRecord {
  /** Seed of the weight initialization. */
  seed?: number;
  [setting: string]: unknown;
}

/** An encoded dataset: what a .rinr file stores. */
export interface RinrDataset {
  arch: SirenArch;
  /** Side R in pixels of the images the INRs were fitted to. */
  resolution: number;
  /** Class names, indexed by label. */
  classNames: string[];
  /** Class index per image, [N]. */
  labels: Uint32Array;
  /** Fit quality per image in dB, [N], Infinity for an exact fit. Stored rounded to 0.01 dB. */
  psnr: ArrayLike<number>;
  /** fp32 weights [N][Q], or packed quantized weights. */
  weights: Float32Array | QuantizedInrs;
  /** Path of the image folder that was encoded. Default: "". */
  source?: string;
  /** Encode settings. Default: {}. */
  encode?: EncodeRecord;
}

/** Weight encoding recorded in the header. */
export type WeightEncoding =
  | { encoding: "f32" }
  | { encoding: "uniform"; bits: number[]; wordsPerImage: number };

/** The JSON header (section HEAD). */
export interface RinrHeader {
  arch: SirenArch;
  resolution: number;
  /** Colour channels per pixel; always 3 (RGB) in version 1. */
  channels: number;
  imageCount: number;
  /** Q, parameters per image. */
  paramCount: number;
  classNames: string[];
  labelType: "u16" | "u32";
  source: string;
  encode: EncodeRecord;
  /** PSNR per image in dB, rounded to 0.01; null for an exact fit (infinite PSNR). */
  psnr: (number | null)[];
  weights: WeightEncoding;
}

/** Position and size of one section in a file. */
export interface RinrSectionInfo {
  tag: string;
  required: boolean;
  /** Byte offset of the payload from the start of the file. */
  offset: number;
  /** Payload length in bytes, padding excluded. */
  bytes: number;
}

/** A parsed .rinr file. */
export interface RinrFile extends RinrDataset {
  /** File name used in error messages. */
  name: string;
  formatVersion: number;
  header: RinrHeader;
  /** Every section in file order, unknown ones included. */
  sections: RinrSectionInfo[];
  /** Optional sections that this version does not know and skipped. */
  unknownSections: RinrSectionInfo[];
  /** Total file size in bytes. */
  fileBytes: number;
  /** Fit quality per image in dB, [N], Infinity for an exact fit. */
  psnr: Float32Array;
}

/** A section to store besides the standard ones, for tools that extend the format. */
export interface ExtraSection {
  tag: string;
  required: boolean;
  payload: Uint8Array;
}

/** Options for {@linkcode encodeRinr}. */
export interface EncodeRinrOptions {
  /** Sections written after the standard ones. Default: none. */
  extraSections?: ExtraSection[];
  /**
   * Storage of quantized codes: "off" writes packed codes (QCOD), "on" writes
   * rANS-coded codes (QANS), "auto" writes whichever section is smaller.
   * fp32 weights ignore it. Default: "off".
   */
  entropy?: "off" | "on" | "auto";
}

/** Serializes `data` into the parts of a .rinr file, in order. Their concatenation is the file. */
export function encodeRinrParts(data: RinrDataset, options: EncodeRinrOptions = {}): Uint8Array[] {
  const header = buildHeader(data);
  const sections: ExtraSection[] = [
    { tag: "HEAD", required: true, payload: new TextEncoder().encode(JSON.stringify(header)) },
    { tag: "LABL", required: true, payload: labelBytes(data.labels, header.labelType) },
  ];
  if (data.weights instanceof Float32Array) {
    sections.push({ tag: "WF32", required: true, payload: bytesOf(data.weights) });
  } else {
    const compact = packRanges16(data.weights.ranges, data.weights.bits);
    sections.push(
      compact
        ? { tag: "QR16", required: true, payload: bytesOf(compact) }
        : { tag: "QRNG", required: true, payload: bytesOf(data.weights.ranges) },
    );
    sections.push(codeSection(data.weights, options.entropy ?? "off"));
  }
  for (const extra of options.extraSections ?? []) {
    if (!/^[A-Z0-9]{4}$/.test(extra.tag) || KNOWN_TAGS.has(extra.tag)) {
      throw new RangeError(
        `Extra section tag "${extra.tag}" must be 4 characters A-Z or 0-9 and not a standard tag.`,
      );
    }
    sections.push(extra);
  }

  const preamble = new Uint8Array(PREAMBLE_BYTES);
  preamble.set(RINR_MAGIC);
  const view = new DataView(preamble.buffer);
  view.setUint32(8, RINR_VERSION, true);
  view.setUint32(12, sections.length, true);
  const parts: Uint8Array[] = [preamble];
  for (const section of sections) {
    const sectionHeader = new Uint8Array(SECTION_HEADER_BYTES);
    const headerView = new DataView(sectionHeader.buffer);
    sectionHeader.set(new TextEncoder().encode(section.tag));
    headerView.setUint32(4, section.required ? SECTION_REQUIRED : 0, true);
    headerView.setBigUint64(8, BigInt(section.payload.byteLength), true);
    headerView.setUint32(16, crc32(section.payload, crc32(sectionHeader.subarray(0, 16))), true);
    parts.push(sectionHeader, section.payload);
    const padding = (ALIGNMENT - (section.payload.byteLength % ALIGNMENT)) % ALIGNMENT;
    if (padding > 0) parts.push(new Uint8Array(padding));
  }
  return parts;
}

/** Serializes `data` into the bytes of a .rinr file. */
export function encodeRinr(data: RinrDataset, options: EncodeRinrOptions = {}): Uint8Array {
  const parts = encodeRinrParts(data, options);
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
  let position = 0;
  for (const part of parts) {
    out.set(part, position);
    position += part.byteLength;
  }
  return out;
}

function buildHeader(data: RinrDataset): RinrHeader {
  const imageCount = data.labels.length;
  const paramCount = sirenParamCount(data.arch);
  if (!Number.isInteger(data.resolution) || data.resolution < 1 || data.resolution > 65535) {
    throw new RangeError(
      `Resolution must be an integer in 1..65535 pixels, got ${data.resolution}.`,
    );
  }
  if (data.classNames.length === 0) throw new RangeError("At least one class name is needed.");
  const badLabel = data.labels.findIndex((label) => label >= data.classNames.length);
  if (badLabel >= 0) {
    throw new RangeError(
      `Label of image ${badLabel} is ${
        data.labels[badLabel]
      }, but there are ${data.classNames.length} classes.`,
    );
  }
  if (data.psnr.length !== imageCount) {
    throw new RangeError(
      `PSNR has ${data.psnr.length} entries for ${imageCount} images (one label per image).`,
    );
  }

  let weights: WeightEncoding;
  if (data.weights instanceof Float32Array) {
    if (data.weights.length !== imageCount * paramCount) {
      throw new RangeError(
        `fp32 weights have ${data.weights.length} values, expected ${imageCount} images x Q = ${paramCount}.`,
      );
    }
    weights = { encoding: "f32" };
  } else {
    const q = data.weights;
    const layout = packedLayout(data.arch, resolveLayerBits(data.arch, q.bits));
    const layerCount = sirenLayers(data.arch).length;
    const consistent = q.count === imageCount &&
      JSON.stringify(q.arch) === JSON.stringify(data.arch) &&
      q.wordsPerImage === layout.wordsPerImage &&
      q.codes.length === imageCount * layout.wordsPerImage &&
      q.ranges.length === imageCount * layerCount * 2;
    if (!consistent) {
      throw new RangeError(
        `Quantized weights (${q.count} images, ${q.codes.length} code words, ${q.ranges.length} range values) ` +
          `do not match ${imageCount} labels and the architecture ${JSON.stringify(data.arch)}.`,
      );
    }
    weights = { encoding: "uniform", bits: [...q.bits], wordsPerImage: q.wordsPerImage };
  }

  const psnr = Array.from(
    data.psnr,
    (value) => Number.isFinite(value) ? Math.round(value * 100) / 100 : null,
  );
  return {
    arch: { sineLayers: data.arch.sineLayers, width: data.arch.width, w0: data.arch.w0 },
    resolution: data.resolution,
    channels: 3,
    imageCount,
    paramCount,
    classNames: [...data.classNames],
    labelType: data.classNames.length <= 65536 ? "u16" : "u32",
    source: data.source ?? "",
    encode: data.encode ?? {},
    psnr,
    weights,
  };
}

function codeSection(weights: QuantizedInrs, entropy: "off" | "on" | "auto"): ExtraSection {
  const packed: ExtraSection = { tag: "QCOD", required: true, payload: bytesOf(weights.codes) };
  if (entropy === "off") return packed;
  const coded: ExtraSection = { tag: "QANS", required: true, payload: encodeQans(weights) };
  if (entropy === "on" || coded.payload.byteLength < packed.payload.byteLength) return coded;
  return packed;
}

function labelBytes(labels: Uint32Array, type: "u16" | "u32"): Uint8Array {
  return type === "u16" ? bytesOf(Uint16Array.from(labels)) : bytesOf(labels);
}

function bytesOf(array: ArrayBufferView): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}
