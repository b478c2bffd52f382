// Reading and validating the bytes of a .rinr file; the layout is described
// in rinr.ts.

import { crc32 } from "node:zlib";
import { packedLayout, type QuantizedInrs, resolveLayerBits } from "../inr/quantize.ts";
import { sirenParamCount } from "../inr/siren.ts";
import { decodeQans } from "./entropy.ts";
import { unpackRanges16 } from "./ranges.ts";
import {
  FormatError,
  KNOWN_TAGS,
  RINR_MAGIC,
  RINR_VERSION,
  type RinrFile,
  type RinrHeader,
  type RinrSectionInfo,
  SECTION_REQUIRED,
} from "./rinr.ts";

const PREAMBLE_BYTES = 16;
const SECTION_HEADER_BYTES = 24;
const ALIGNMENT = 8;
const MAX_SECTIONS = 1024;
const MAX_HEADER_BYTES = 256 * 1024 * 1024;

/**
 * Parses and validates the bytes of a .rinr file. `name` identifies the file
 * in error messages. Throws a `FormatError` naming the file and the field.
 * The returned arrays may share memory with `bytes`.
 */
export function parseRinr(bytes: Uint8Array, name: string): RinrFile {
  const fail = (field: string, detail: string): never => {
    throw new FormatError(name, field, detail);
  };
  if (bytes.byteLength < PREAMBLE_BYTES) {
    fail(
      "file size",
      `${bytes.byteLength} bytes is shorter than the 16-byte preamble, so the file is truncated or not a .rinr file.`,
    );
  }
  if (!RINR_MAGIC.every((b, i) => bytes[i] === b)) {
    fail(
      "magic bytes",
      `expected ${hex(RINR_MAGIC)}, found ${hex(bytes.subarray(0, 8))}. This is not a .rinr file.`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const formatVersion = view.getUint32(8, true);
  if (formatVersion === 0) fail("format version", "0 is invalid, so the file is damaged.");
  if (formatVersion > RINR_VERSION) {
    fail(
      "format version",
      `${formatVersion} is newer than this rapid-inr reads (up to ${RINR_VERSION}). Upgrade rapid-inr to read this file.`,
    );
  }
  const sectionCount = view.getUint32(12, true);
  if (sectionCount < 1 || sectionCount > MAX_SECTIONS) {
    fail("section count", `${sectionCount} is outside 1..${MAX_SECTIONS}, so the file is damaged.`);
  }

  const sections = readSections(bytes, view, sectionCount, fail);
  const byTag = new Map<string, RinrSectionInfo>();
  const unknownSections: RinrSectionInfo[] = [];
  for (const section of sections) {
    if (byTag.has(section.tag)) fail(`section ${section.tag}`, "appears twice.");
    byTag.set(section.tag, section);
    if (KNOWN_TAGS.has(section.tag)) continue;
    if (section.required) {
      fail(
        `section ${section.tag}`,
        `is required to read this file, but this version of rapid-inr does not know it. Upgrade rapid-inr.`,
      );
    }
    unknownSections.push(section);
  }
  const payload = (tag: string): Uint8Array => {
    const section = byTag.get(tag) ?? fail(`section ${tag}`, "is missing.");
    return bytes.subarray(section.offset, section.offset + section.bytes);
  };

  const headBytes = payload("HEAD");
  if (headBytes.byteLength > MAX_HEADER_BYTES) {
    fail(
      "section HEAD",
      `is ${headBytes.byteLength} bytes, more than the ${MAX_HEADER_BYTES}-byte limit.`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headBytes));
  } catch (error) {
    fail(
      "header",
      `is not valid UTF-8 JSON: ${shorten((error as Error).message, QUOTED_MESSAGE_CHARS)}`,
    );
  }
  const header = validateHeader(json, fail);

  const n = header.imageCount;
  const labelWidth = header.labelType === "u16" ? 2 : 4;
  const labelPayload = payload("LABL");
  expectBytes(
    "section LABL",
    labelPayload,
    n * labelWidth,
    `${n} ${header.labelType} labels`,
    fail,
  );
  const labels = header.labelType === "u16"
    ? Uint32Array.from(typedView(Uint16Array, labelPayload))
    : typedView(Uint32Array, labelPayload);
  const badLabel = labels.findIndex((label) => label >= header.classNames.length);
  if (badLabel >= 0) {
    fail(
      "section LABL",
      `label of image ${badLabel} is ${
        labels[badLabel]
      }, but the header lists ${header.classNames.length} classes.`,
    );
  }

  const weights = readWeights(header, payload, byTag, fail, name);
  const psnr = Float32Array.from(header.psnr, (value) => value === null ? Infinity : value);
  return {
    name,
    formatVersion,
    header,
    sections,
    unknownSections,
    fileBytes: bytes.byteLength,
    arch: header.arch,
    resolution: header.resolution,
    classNames: header.classNames,
    labels,
    psnr,
    weights,
    source: header.source,
    encode: header.encode,
  };
}

type Fail = (field: string, detail: string) => never;

function readSections(
  bytes: Uint8Array,
  view: DataView,
  count: number,
  fail: Fail,
): RinrSectionInfo[] {
  const sections: RinrSectionInfo[] = [];
  let position = PREAMBLE_BYTES;
  for (let s = 0; s < count; s++) {
    const where = `section ${s + 1} of ${count}`;
    if (position + SECTION_HEADER_BYTES > bytes.byteLength) {
      fail(
        where,
        `its header at byte ${position} runs past the end of the file (${bytes.byteLength} bytes). The file is truncated.`,
      );
    }
    const tag = String.fromCharCode(...bytes.subarray(position, position + 4));
    if (!/^[A-Z0-9]{4}$/.test(tag)) {
      fail(
        where,
        `tag ${JSON.stringify(tag)} is not 4 characters A-Z or 0-9, so the file is damaged.`,
      );
    }
    const flags = view.getUint32(position + 4, true);
    const length = view.getBigUint64(position + 8, true);
    const storedCrc = view.getUint32(position + 16, true);
    const offset = position + SECTION_HEADER_BYTES;
    const remaining = bytes.byteLength - offset;
    if (length > BigInt(remaining)) {
      fail(
        `section ${tag}`,
        `declares ${length} bytes, but only ${remaining} remain in the file. The file is truncated.`,
      );
    }
    const size = Number(length);
    const padded = Math.ceil(size / ALIGNMENT) * ALIGNMENT;
    if (padded > remaining) {
      fail(`section ${tag}`, `its padding runs past the end of the file. The file is truncated.`);
    }
    const crc = crc32(
      bytes.subarray(offset, offset + size),
      crc32(bytes.subarray(position, position + 16)),
    );
    if (crc !== storedCrc) {
      fail(
        `section ${tag}`,
        `checksum mismatch (stored CRC-32 ${hex32(storedCrc)}, computed ${
          hex32(crc)
        }). The file is damaged.`,
      );
    }
    sections.push({ tag, required: (flags & SECTION_REQUIRED) !== 0, offset, bytes: size });
    position = offset + padded;
  }
  if (position !== bytes.byteLength) {
    fail(
      "file size",
      `${bytes.byteLength - position} unexpected bytes follow the last of ${count} sections.`,
    );
  }
  return sections;
}

function validateHeader(json: unknown, fail: Fail): RinrHeader {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    fail("header", "is not a JSON object.");
  }
  const h = json as Record<string, any>;
  const integer = (field: string, value: unknown, min: number, max: number): number => {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      fail(
        `header.${field}`,
        `must be an integer in ${min}..${max}, got ${preview(value)}.`,
      );
    }
    return value as number;
  };

  const arch = h.arch ?? fail("header.arch", "is missing.");
  integer("arch.sineLayers", arch.sineLayers, 1, 64);
  integer("arch.width", arch.width, 1, 256);
  if (typeof arch.w0 !== "number" || !Number.isFinite(arch.w0) || arch.w0 <= 0) {
    fail("header.arch.w0", `must be a positive number, got ${preview(arch.w0)}.`);
  }
  integer("resolution", h.resolution, 1, 65535);
  integer("channels", h.channels, 3, 3);
  const imageCount = integer("imageCount", h.imageCount, 0, 2 ** 32 - 1);
  const paramCount = sirenParamCount(arch);
  if (h.paramCount !== paramCount) {
    fail(
      "header.paramCount",
      `is ${preview(h.paramCount)}, but the architecture has Q = ${paramCount}.`,
    );
  }
  const names = h.classNames;
  if (!Array.isArray(names) || names.length === 0 || !names.every((c) => typeof c === "string")) {
    fail("header.classNames", "must be a non-empty array of strings.");
  }
  if (h.labelType !== "u16" && h.labelType !== "u32") {
    fail("header.labelType", `must be "u16" or "u32", got ${preview(h.labelType)}.`);
  }
  if (typeof h.source !== "string") fail("header.source", "must be a string.");
  if (typeof h.encode !== "object" || h.encode === null || Array.isArray(h.encode)) {
    fail("header.encode", "must be a JSON object.");
  }
  if (h.encode.seed !== undefined) {
    integer("encode.seed", h.encode.seed, 0, Number.MAX_SAFE_INTEGER);
  }
  if (!Array.isArray(h.psnr) || h.psnr.length !== imageCount) {
    fail("header.psnr", `must be an array of ${imageCount} numbers (one per image).`);
  }
  const badPsnr = (h.psnr as unknown[]).findIndex((p) => p !== null && typeof p !== "number");
  if (badPsnr >= 0) {
    fail("header.psnr", `entry ${badPsnr} is ${preview(h.psnr[badPsnr])}, not a number.`);
  }

  const w = h.weights;
  if (w?.encoding === "uniform") {
    let bits: number[] = [];
    try {
      bits = resolveLayerBits(arch, w.bits);
    } catch (error) {
      fail("header.weights.bits", shorten((error as Error).message, QUOTED_MESSAGE_CHARS));
    }
    const layout = packedLayout(arch, bits);
    if (w.wordsPerImage !== layout.wordsPerImage) {
      fail(
        "header.weights.wordsPerImage",
        `is ${preview(w.wordsPerImage)}, but bits [${bits}] need ${layout.wordsPerImage}.`,
      );
    }
  } else if (w?.encoding !== "f32") {
    fail(
      "header.weights.encoding",
      `must be "f32" or "uniform", got ${preview(w?.encoding)}.`,
    );
  }
  return h as RinrHeader;
}

function readRanges(
  n: number,
  bits: readonly number[],
  payload: (tag: string) => Uint8Array,
  byTag: Map<string, RinrSectionInfo>,
  fail: Fail,
): Float32Array {
  const layerCount = bits.length;
  if (byTag.has("QR16")) {
    if (byTag.has("QRNG")) {
      fail("section QRNG", "and section QR16 both store the ranges. Keep one.");
    }
    const bytes = payload("QR16");
    expectBytes(
      "section QR16",
      bytes,
      n * layerCount * 4,
      `${n} images x ${layerCount} layers x (scale, zero point) u16`,
      fail,
    );
    const unpacked = unpackRanges16(typedView(Uint16Array, bytes), bits);
    if ("error" in unpacked) fail("section QR16", unpacked.error);
    return unpacked.ranges;
  }
  const bytes = payload("QRNG");
  expectBytes(
    "section QRNG",
    bytes,
    n * layerCount * 8,
    `${n} images x ${layerCount} layers x (scale, offset) f32`,
    fail,
  );
  const ranges = typedView(Float32Array, bytes);
  const badRange = ranges.findIndex((value, i) =>
    !Number.isFinite(value) || (i % 2 === 0 && value < 0)
  );
  if (badRange >= 0) {
    fail(
      "section QRNG",
      `value ${badRange} is ${
        ranges[badRange]
      }, but scales must be finite and >= 0 and offsets finite.`,
    );
  }
  return ranges;
}

function readWeights(
  header: RinrHeader,
  payload: (tag: string) => Uint8Array,
  byTag: Map<string, RinrSectionInfo>,
  fail: Fail,
  fileName: string,
): Float32Array | QuantizedInrs {
  const n = header.imageCount;
  const q = header.paramCount;
  const arch = header.arch;
  if (header.weights.encoding === "f32") {
    for (const tag of ["QRNG", "QR16", "QCOD", "QANS"]) {
      if (byTag.has(tag)) {
        fail(`section ${tag}`, `does not belong in a file with weights.encoding "f32".`);
      }
    }
    const bytes = payload("WF32");
    expectBytes("section WF32", bytes, n * q * 4, `${n} images x ${q} f32 weights`, fail);
    return typedView(Float32Array, bytes);
  }

  if (byTag.has("WF32")) {
    fail("section WF32", `does not belong in a file with weights.encoding "uniform".`);
  }
  const { bits, wordsPerImage } = header.weights;
  const ranges = readRanges(n, bits, payload, byTag, fail);
  const { layerWordOffsets } = packedLayout(arch, bits);
  let codes: Uint32Array;
  if (byTag.has("QANS")) {
    if (byTag.has("QCOD")) fail("section QCOD", "and section QANS both store the codes. Keep one.");
    codes = decodeQans(payload("QANS"), {
      arch,
      count: n,
      bits,
      wordsPerImage,
      layerWordOffsets,
      ranges,
      file: fileName,
    });
  } else {
    const codeBytes = payload("QCOD");
    expectBytes(
      "section QCOD",
      codeBytes,
      n * wordsPerImage * 4,
      `${n} images x ${wordsPerImage} u32 words`,
      fail,
    );
    codes = typedView(Uint32Array, codeBytes);
  }
  const packed: QuantizedInrs = {
    arch,
    count: n,
    bits,
    wordsPerImage,
    layerWordOffsets,
    codes,
    ranges,
  };
  return packed;
}

function expectBytes(
  field: string,
  bytes: Uint8Array,
  expected: number,
  what: string,
  fail: Fail,
): void {
  if (bytes.byteLength !== expected) {
    fail(
      field,
      `has ${bytes.byteLength} bytes, but the header describes ${what} = ${expected} bytes.`,
    );
  }
}

type TypedArrayConstructor<T> = {
  new (buffer: ArrayBuffer, offset: number, length: number): T;
  BYTES_PER_ELEMENT: number;
};

/** Views `bytes` as a typed array without a copy when aligned, else copies them. */
function typedView<T>(type: TypedArrayConstructor<T>, bytes: Uint8Array): T {
  const length = bytes.byteLength / type.BYTES_PER_ELEMENT;
  if (bytes.byteOffset % type.BYTES_PER_ELEMENT === 0) {
    return new type(bytes.buffer as ArrayBuffer, bytes.byteOffset, length);
  }
  return new type(bytes.slice().buffer, 0, length);
}

/** Maximum length of a header value quoted in an error message. */
const PREVIEW_CHARS = 60;
/** Maximum length of a library error message quoted in an error message. */
const QUOTED_MESSAGE_CHARS = 240;

/** Formats a header value for an error message, cut short so that a damaged header is not echoed in full. */
function preview(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return shorten(text);
}

function shorten(text: string, maxChars = PREVIEW_CHARS): string {
  if (text.length <= maxChars) return text;
  return `${text.slice(0, maxChars)}... (${text.length} characters)`;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).toUpperCase().padStart(2, "0")).join(" ");
}

function hex32(value: number): string {
  return "0x" + (value >>> 0).toString(16).toUpperCase().padStart(8, "0");
}
