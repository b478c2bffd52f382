// PNG and JPEG decoding to 8-bit RGB, and PNG encoding.
//
// Codec choice: bench/codecs_bench.ts measures the candidates and
// bench/RESULTS.md records the figures. The WebAssembly builds of the Squoosh
// codecs decode fastest among those without a native addon: `@jsquash/png`
// wraps the Rust `png` crate and `@jsquash/jpeg` wraps MozJPEG. MozJPEG rejects
// CMYK and YCCK JPEGs ("Unsupported color conversion request"), so those go to
// the pure-JavaScript `jpeg-js`, which converts them to RGB.
//
// The format comes from the magic bytes, never from the file extension.
// Alpha is dropped, not composited: RGBA and grayscale+alpha pixels keep their
// color values, as PIL's `Image.convert("RGB")` does. EXIF orientation is
// ignored, as PIL and torchvision do unless asked.

import {
  decode as decodePngRgba8,
  decode_rgba16 as decodePngRgba16,
} from "@jsquash/png/codec/pkg/squoosh_png.js";
import jpegJs from "jpeg-js";
import { type Codecs, loadCodecs, replaceMozjpeg } from "./codecs.ts";
import { DataError } from "./errors.ts";
import { chunkType, crc32, diagnosePng, findPngDamage } from "./png_chunks.ts";

export { crc32, diagnosePng };

/** An 8-bit RGB image in row-major HWC order: `rgb[(y * width + x) * 3 + c]`. */
export interface RgbImage {
  width: number;
  height: number;
  rgb: Uint8Array;
}

/** Image file formats that {@linkcode decodeImage} reads. */
export type ImageFormat = "png" | "jpeg";

/**
 * Maximum pixel count of one decoded image (2^27, 128 Mi pixels). The decoders
 * work on RGBA inside a 32-bit WebAssembly heap of at most 2 GiB, so a larger
 * declared size either fails there or is a decompression bomb.
 */
export const MAX_IMAGE_PIXELS = 1 << 27;

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Returns the image format given by the magic bytes, or undefined for anything else. */
export function detectImageFormat(bytes: Uint8Array): ImageFormat | undefined {
  if (bytes.length >= 8 && PNG_SIGNATURE.every((value, i) => bytes[i] === value)) return "png";
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
    return "jpeg";
  }
  return undefined;
}

/**
 * Decodes a PNG or JPEG file to 8-bit RGB. `name` is the file name used in
 * error messages. Grayscale becomes R = G = B, palettes are expanded, 16-bit
 * samples are scaled to 8 bits with rounding (v * 255 / 65535), alpha is dropped.
 * Throws `DataError` naming the file for unknown formats and corrupt files.
 */
export async function decodeImage(bytes: Uint8Array, name: string): Promise<RgbImage> {
  const format = detectImageFormat(bytes);
  if (format === "png") {
    const header = readPngHeader(bytes, name);
    const damage = findPngDamage(bytes);
    if (damage) throw new DataError(name, `corrupt PNG file: ${damage}`);
    return decodePng(await loadCodecs(), bytes, header, name);
  }
  if (format === "jpeg") {
    const header = readJpegHeader(bytes, name);
    if (header.components === 4) return decodeJpegWithJpegJs(bytes, name);
    const codecs = await loadCodecs();
    return await decodeJpegWithMozjpeg(codecs, bytes, name);
  }
  const start = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join(" ");
  throw new DataError(
    name,
    `not a PNG or JPEG file (the file starts with bytes ${start || "(empty file)"}). ` +
      "Convert it to PNG or JPEG, or remove it from the dataset.",
  );
}

// ---------------------------------------------------------------------------
// PNG

interface PngHeader {
  width: number;
  height: number;
  bitDepth: number;
  colorType: number;
}

/** Valid bit depths per PNG color type (PNG specification, table 11.1). */
const PNG_BIT_DEPTHS: Record<number, number[]> = {
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
};

function readPngHeader(bytes: Uint8Array, name: string): PngHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 33 || view.getUint32(8) !== 13 || chunkType(bytes, 12) !== "IHDR") {
    throw new DataError(name, "invalid PNG file: the IHDR header chunk is missing or truncated.");
  }
  const header = {
    width: view.getUint32(16),
    height: view.getUint32(20),
    bitDepth: bytes[24],
    colorType: bytes[25],
  };
  if (header.width === 0 || header.height === 0) {
    throw new DataError(name, `invalid PNG file: size ${header.width}x${header.height} is empty.`);
  }
  if (!PNG_BIT_DEPTHS[header.colorType]?.includes(header.bitDepth)) {
    throw new DataError(
      name,
      `invalid PNG file: color type ${header.colorType} with bit depth ${header.bitDepth} is not a valid combination.`,
    );
  }
  checkPixelCount(header.width, header.height, name);
  return header;
}

function decodePng(codecs: Codecs, bytes: Uint8Array, header: PngHeader, name: string): RgbImage {
  const stackPointer = codecs.pngStackPointer(0);
  try {
    if (header.bitDepth === 16) {
      const decoded = decodePngRgba16(bytes);
      try {
        return rgba16ToRgb8(decoded.data, decoded.width, decoded.height);
      } finally {
        decoded.free();
      }
    }
    const decoded = decodePngRgba8(bytes);
    return rgbaToRgb(decoded.data, decoded.width, decoded.height);
  } catch (error) {
    // A Rust panic traps out of the decoder without popping its frames off the
    // shadow stack, and after a few hundred such failures every decode failed.
    // NOTE: the heap the failed decode allocated stays allocated.
    codecs.pngStackPointer(stackPointer - codecs.pngStackPointer(0));
    if (error instanceof DataError) throw error;
    throw new DataError(name, `corrupt PNG file: ${diagnosePng(bytes)}`);
  }
}

// ---------------------------------------------------------------------------
// JPEG

interface JpegHeader {
  width: number;
  height: number;
  components: number;
}

/** Tells whether a marker starts a frame: SOF0-SOF15 are C0-CF, minus C4 (DHT), C8 (JPG) and CC (DAC) in that range. */
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

/** Reads the frame header (size, component count) by walking the marker segments. */
function readJpegHeader(bytes: Uint8Array, name: string): JpegHeader {
  let offset = 2;
  while (offset + 4 <= bytes.length) {
    if (bytes[offset] !== 0xff) {
      throw new DataError(name, `corrupt JPEG file: expected a marker at byte ${offset}.`);
    }
    const marker = bytes[offset + 1];
    if (marker === 0xff) { // fill byte before a marker
      offset += 1;
      continue;
    }
    const length = (bytes[offset + 2] << 8) | bytes[offset + 3];
    if (isStartOfFrame(marker)) {
      if (offset + 10 > bytes.length) break;
      const height = (bytes[offset + 5] << 8) | bytes[offset + 6];
      const width = (bytes[offset + 7] << 8) | bytes[offset + 8];
      const components = bytes[offset + 9];
      if (width === 0 || height === 0) {
        throw new DataError(
          name,
          `unsupported JPEG file: the frame header gives size ${width}x${height}.`,
        );
      }
      checkPixelCount(width, height, name);
      return { width, height, components };
    }
    if (marker === 0xda || marker === 0xd9) break; // scan data or end of image before any frame
    offset += 2 + length;
  }
  throw new DataError(
    name,
    "corrupt JPEG file: no frame header (SOF marker) before the image data.",
  );
}

async function decodeJpegWithMozjpeg(
  codecs: Codecs,
  bytes: Uint8Array,
  name: string,
): Promise<RgbImage> {
  const mozjpeg = await codecs.mozjpeg;
  codecs.jpegMessages.length = 0;
  let decoded: ImageData | null = null;
  let thrown: unknown;
  try {
    decoded = mozjpeg.decode(bytes as Uint8Array<ArrayBuffer>, false);
  } catch (error) {
    // MozJPEG's fatal error handler calls exit(1), which Emscripten throws as an ExitStatus.
    thrown = error;
    replaceMozjpeg(codecs);
  }
  const messages = codecs.jpegMessages.splice(0);
  if (!decoded) {
    const reason = messages.join("; ") || String((thrown as Error | undefined)?.message ?? thrown);
    throw new DataError(name, `corrupt or unsupported JPEG file: ${reason}.`);
  }
  // libjpeg reports a truncated file only as a warning and fills the rest with gray.
  const truncated = messages.find((message) => message.startsWith("Premature end of JPEG file"));
  if (truncated) {
    throw new DataError(name, `corrupt JPEG file: ${truncated} (the file is truncated).`);
  }
  return rgbaToRgb(decoded.data, decoded.width, decoded.height);
}

function decodeJpegWithJpegJs(bytes: Uint8Array, name: string): RgbImage {
  try {
    const decoded = jpegJs.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      maxResolutionInMP: MAX_IMAGE_PIXELS / 1e6,
      maxMemoryUsageInMB: 4096,
    });
    return { width: decoded.width, height: decoded.height, rgb: decoded.data };
  } catch (error) {
    throw new DataError(
      name,
      `corrupt or unsupported CMYK JPEG file: ${(error as Error).message}.`,
    );
  }
}

// ---------------------------------------------------------------------------
// Pixel conversion and shared checks

function checkPixelCount(width: number, height: number, name: string): void {
  if (width * height > MAX_IMAGE_PIXELS) {
    throw new DataError(
      name,
      `image size ${width}x${height} exceeds the maximum of ${MAX_IMAGE_PIXELS} pixels; ` +
        "downscale the file before loading it.",
    );
  }
}

function rgbaToRgb(rgba: ArrayLike<number>, width: number, height: number): RgbImage {
  const count = width * height;
  const rgb = new Uint8Array(count * 3);
  for (let i = 0; i < count; i++) {
    rgb[i * 3] = rgba[i * 4];
    rgb[i * 3 + 1] = rgba[i * 4 + 1];
    rgb[i * 3 + 2] = rgba[i * 4 + 2];
  }
  return { width, height, rgb };
}

function rgba16ToRgb8(rgba: Uint16Array, width: number, height: number): RgbImage {
  const count = width * height;
  const rgb = new Uint8Array(count * 3);
  for (let i = 0; i < count; i++) {
    for (let c = 0; c < 3; c++) {
      // round(v * 255 / 65535) = round(v / 257), exact for every 16-bit value.
      rgb[i * 3 + c] = Math.round(rgba[i * 4 + c] / 257);
    }
  }
  return { width, height, rgb };
}

// ---------------------------------------------------------------------------
// PNG encoding

/**
 * Encodes an 8-bit RGB image as a PNG (color type 2, not interlaced). Each
 * row gets the filter with the smallest sum of absolute filtered bytes (as
 * signed values), a common heuristic for photos. Throws `RangeError` if `rgb` does not hold
 * width * height * 3 bytes.
 */
export async function encodePng(image: RgbImage): Promise<Uint8Array> {
  const { width, height, rgb } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(
      `encodePng: invalid image size ${width}x${height}; both must be positive integers.`,
    );
  }
  if (rgb.length !== width * height * 3) {
    throw new RangeError(
      `encodePng: rgb has ${rgb.length} bytes, expected ${
        width * height * 3
      } for ${width}x${height} RGB.`,
    );
  }
  const filtered = filterRows(rgb, width, height);
  const compressed = new Uint8Array(
    await new Response(new Blob([filtered]).stream().pipeThrough(new CompressionStream("deflate")))
      .arrayBuffer(),
  );

  const ihdr = new Uint8Array(13);
  const ihdrView = new DataView(ihdr.buffer);
  ihdrView.setUint32(0, width);
  ihdrView.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // color type: RGB
  const chunks = [
    pngChunk("IHDR", ihdr),
    pngChunk("IDAT", compressed),
    pngChunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(8 + chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  out.set(PNG_SIGNATURE, 0);
  let offset = 8;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const chunk = new Uint8Array(12 + data.length);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) chunk[4 + i] = type.charCodeAt(i);
  chunk.set(data, 8);
  view.setUint32(8 + data.length, crc32(chunk.subarray(4, 8 + data.length)));
  return chunk;
}

/** Prefixes each row with its PNG filter type and filters it (3 bytes per pixel). */
function filterRows(rgb: Uint8Array, width: number, height: number): Uint8Array<ArrayBuffer> {
  const stride = width * 3;
  const out = new Uint8Array(height * (stride + 1));
  const candidate = new Uint8Array(stride);
  const zeroRow = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const row = rgb.subarray(y * stride, (y + 1) * stride);
    const above = y > 0 ? rgb.subarray((y - 1) * stride, y * stride) : zeroRow;
    const target = out.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    let bestCost = Infinity;
    for (let filter = 0; filter <= 4; filter++) {
      let cost = 0;
      for (let i = 0; i < stride; i++) {
        const left = i >= 3 ? row[i - 3] : 0;
        const up = above[i];
        const upLeft = i >= 3 ? above[i - 3] : 0;
        let predicted = 0;
        if (filter === 1) predicted = left;
        else if (filter === 2) predicted = up;
        else if (filter === 3) predicted = (left + up) >> 1;
        else if (filter === 4) predicted = paeth(left, up, upLeft);
        const value = (row[i] - predicted) & 0xff;
        candidate[i] = value;
        cost += value < 128 ? value : 256 - value;
      }
      if (cost < bestCost) {
        bestCost = cost;
        out[y * (stride + 1)] = filter;
        target.set(candidate);
      }
    }
  }
  return out;
}

function paeth(left: number, up: number, upLeft: number): number {
  const estimate = left + up - upLeft;
  const distanceLeft = Math.abs(estimate - left);
  const distanceUp = Math.abs(estimate - up);
  const distanceUpLeft = Math.abs(estimate - upLeft);
  if (distanceLeft <= distanceUp && distanceLeft <= distanceUpLeft) return left;
  return distanceUp <= distanceUpLeft ? up : upLeft;
}
