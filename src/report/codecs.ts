// JPEG and WebP reference points for rate-distortion reports: each image is
// encoded with a real codec library, decoded back with the same library and
// compared with the original.
//
// Codecs: MozJPEG 3.3.1 through @jsquash/jpeg and libwebp through
// @jsquash/webp, both with the packages' default settings except the quality.
// MozJPEG then writes progressive files with optimized Huffman tables, and its
// automatic chroma subsampling gives 4:2:0 below quality 80, 4:2:2 from 80 and
// 4:4:4 from 90 (read from the files' frame headers). WebP is lossy, method 4.
// JPEG decoding goes through the project's loader, which uses the same MozJPEG
// build. bpp counts whole files, headers included.
//
// Matching a target rate is done per image by default: each image gets the
// integer quality whose bpp is closest to the target, and the point averages
// bpp and PSNR over the images. The alternative, `match: "set"`, gives all
// images one quality, chosen so that the mean bpp is closest to the target.

import mozjpegEncoderFactory, {
  type MozJPEGModule as MozjpegEncoder,
} from "@jsquash/jpeg/codec/enc/mozjpeg_enc.js";
import { defaultOptions as jpegDefaults } from "@jsquash/jpeg/meta.js";
import webpEncoderFactory, {
  type WebPModule as WebpEncoder,
} from "@jsquash/webp/codec/enc/webp_enc.js";
import webpSimdEncoderFactory from "@jsquash/webp/codec/enc/webp_enc_simd.js";
import webpDecoderFactory, {
  type WebPModule as WebpDecoder,
} from "@jsquash/webp/codec/dec/webp_dec.js";
import { defaultOptions as webpDefaults } from "@jsquash/webp/meta.js";
import { decodeImage, type RgbImage } from "../data/image.ts";
import { psnr, type RdCurve, summarizeImages } from "./rd.ts";

/** The reference codecs. */
export type CodecName = "jpeg" | "webp";

/** All reference codecs, in report order. */
export const CODEC_NAMES: readonly CodecName[] = ["jpeg", "webp"];

/** Method names of the codecs in reports. */
export const CODEC_LABELS: Record<CodecName, string> = {
  jpeg: "JPEG (MozJPEG)",
  webp: "WebP (libwebp)",
};

/**
 * Integer qualities each codec accepts. MozJPEG treats quality 0 as 1, so
 * its range starts at 1.
 */
export const QUALITY_RANGE: Record<CodecName, readonly [number, number]> = {
  jpeg: [1, 100],
  webp: [0, 100],
};

/** Largest width or height each codec encodes (libwebp: 16383, JPEG: 65500 in libjpeg). */
const MAX_SIDE: Record<CodecName, number> = { jpeg: 65500, webp: 16383 };

/** A codec and its quality. */
export interface CodecSetting {
  codec: CodecName;
  /** Integer quality within {@linkcode QUALITY_RANGE}; higher means larger files and higher PSNR. */
  quality: number;
}

/** One image encoded and decoded at one setting. */
export interface CodecMeasurement {
  /** File size in bytes. */
  bytes: number;
  /** bytes * 8 / (width * height). */
  bpp: number;
  /** PSNR of the decoded image against the original in dB, over all RGB samples. */
  psnr: number;
}

/** A codec point averaged over images. */
export interface CodecPoint {
  codec: CodecName;
  /** The quality used; for points matched per image, the median of `qualities`. */
  quality: number;
  /** The quality used for each image, in image order. */
  qualities: number[];
  /** Mean bits per pixel over the images. */
  bpp: number;
  /** Mean PSNR over the images in dB. */
  psnr: number;
  /** 5th percentile of the per-image PSNR in dB. */
  psnr5: number;
  /** The requested bpp, for points from {@linkcode matchRates}. */
  targetBpp?: number;
  /** Matching mode of points from {@linkcode matchRates}: a quality per image or one for the set. */
  match?: "image" | "set";
}

/**
 * Measurements already made, per image and setting. Passing one cache to
 * several calls skips repeated encodes, so the images must not change meanwhile.
 */
export type CodecCache = WeakMap<RgbImage, Map<string, CodecMeasurement>>;

/** Creates an empty {@linkcode CodecCache}. */
export function createCodecCache(): CodecCache {
  return new WeakMap();
}

/** Options of {@linkcode matchRates}. */
export interface MatchRatesOptions {
  /** Target rates in bits per pixel, each > 0. */
  targetBpp: number[];
  /** Codecs to run. Default: {@linkcode CODEC_NAMES}. */
  codecs?: readonly CodecName[];
  /** "image": a quality per image (default). "set": one quality for all images, matching the mean bpp. */
  match?: "image" | "set";
  /** Measurements to reuse and extend. Default: a cache private to the call. */
  cache?: CodecCache;
}

/** Options of {@linkcode codecSweep}. */
export interface CodecSweepOptions {
  /** Qualities to measure, each an integer within {@linkcode QUALITY_RANGE}. Default: 5, 10, ..., 95. */
  qualities?: number[];
  /** Codecs to run. Default: {@linkcode CODEC_NAMES}. */
  codecs?: readonly CodecName[];
  /** Measurements to reuse and extend. Default: a cache private to the call. */
  cache?: CodecCache;
}

/**
 * Encodes each image at the quality that best matches each target rate and
 * returns one point per codec and target, in codec then target order. A
 * target below the rate of the lowest quality, or above that of the highest,
 * gets that quality, so compare `bpp` with `targetBpp` before trusting a match.
 */
export async function matchRates(
  images: RgbImage[],
  options: MatchRatesOptions,
): Promise<CodecPoint[]> {
  validateImages(images);
  const targets = options.targetBpp;
  if (targets.length === 0 || targets.some((target) => !(Number.isFinite(target) && target > 0))) {
    throw new Error(
      `Target rates [${targets.join(", ")}] are invalid: pass one or more bpp values > 0.`,
    );
  }
  const match = options.match ?? "image";
  if (match !== "image" && match !== "set") {
    throw new Error(`Match mode "${match}" is invalid: pass "image" or "set".`);
  }
  const cache = options.cache ?? createCodecCache();
  const points: CodecPoint[] = [];
  for (const codec of validateCodecs(options.codecs)) {
    for (const target of targets) {
      const qualities = match === "image"
        ? await matchEachImage(images, codec, target, cache)
        : await matchWholeSet(images, codec, target, cache);
      points.push({
        ...await summarize(images, codec, qualities, cache),
        targetBpp: target,
        match,
      });
    }
  }
  return points;
}

/**
 * Measures every image at each quality and returns one point per codec and
 * quality, in codec then quality order, for plotting whole curves.
 */
export async function codecSweep(
  images: RgbImage[],
  options: CodecSweepOptions = {},
): Promise<CodecPoint[]> {
  validateImages(images);
  const qualities = options.qualities ?? Array.from({ length: 19 }, (_, i) => 5 * (i + 1));
  const cache = options.cache ?? createCodecCache();
  const points: CodecPoint[] = [];
  for (const codec of validateCodecs(options.codecs)) {
    for (const quality of qualities) {
      checkQuality(codec, quality);
      points.push(await summarize(images, codec, images.map(() => quality), cache));
    }
  }
  return points;
}

/**
 * Groups codec points into one curve per codec, in codec order, named by
 * {@linkcode CODEC_LABELS} plus `suffix` (default none). The setting names
 * the quality and, for matched points, the target.
 */
export function codecCurves(points: CodecPoint[], options: { suffix?: string } = {}): RdCurve[] {
  const curves: RdCurve[] = [];
  for (const codec of CODEC_NAMES) {
    const own = points.filter((point) => point.codec === codec);
    if (own.length === 0) continue;
    const method = CODEC_LABELS[codec] + (options.suffix ?? "");
    curves.push({
      method,
      points: own.map((point) => ({
        method,
        setting: describeSetting(point),
        bpp: point.bpp,
        psnr: point.psnr,
        psnr5: point.psnr5,
      })),
    });
  }
  return curves;
}

function describeSetting(point: CodecPoint): string {
  const low = Math.min(...point.qualities);
  const high = Math.max(...point.qualities);
  const quality = low === high ? `q=${low}` : `q=${low}..${high} (median ${point.quality})`;
  if (point.targetBpp === undefined) return quality;
  return `target ${point.targetBpp} bpp, ${quality}`;
}

/** Encodes an 8-bit RGB image and returns the file bytes. */
export async function encodeImage(image: RgbImage, setting: CodecSetting): Promise<Uint8Array> {
  validateImage(image, 0);
  checkQuality(setting.codec, setting.quality);
  const { width, height } = image;
  if (width > MAX_SIDE[setting.codec] || height > MAX_SIDE[setting.codec]) {
    throw new Error(
      `Image size ${width}x${height} exceeds the ${setting.codec} limit of ${
        MAX_SIDE[setting.codec]
      } ` +
        "pixels per side. Downscale or crop the image.",
    );
  }
  const codecs = await loadReferenceCodecs();
  const rgba = toRgba(image);
  if (setting.codec === "jpeg") {
    const options = { ...jpegDefaults, quality: setting.quality };
    return codecs.jpegEncoder.encode(rgba, width, height, options).slice();
  }
  const encoded = codecs.webpEncoder.encode(rgba, width, height, {
    ...webpDefaults,
    quality: setting.quality,
  });
  if (!encoded) {
    throw new Error(
      `WebP encoding of a ${width}x${height} image at quality ${setting.quality} failed.`,
    );
  }
  return encoded.slice();
}

/** Decodes a file made by {@linkcode encodeImage} with the same codec library. */
export async function decodeEncoded(bytes: Uint8Array, codec: CodecName): Promise<RgbImage> {
  if (codec === "jpeg") return await decodeImage(bytes, "encoded JPEG");
  const codecs = await loadReferenceCodecs();
  const decoded = codecs.webpDecoder.decode(bytes as Uint8Array<ArrayBuffer>);
  if (!decoded) {
    throw new Error(
      `WebP decoding of ${bytes.length} bytes failed: the data is not a valid WebP file.`,
    );
  }
  const count = decoded.width * decoded.height;
  const rgb = new Uint8Array(count * 3);
  for (let i = 0; i < count; i++) {
    rgb[i * 3] = decoded.data[i * 4];
    rgb[i * 3 + 1] = decoded.data[i * 4 + 1];
    rgb[i * 3 + 2] = decoded.data[i * 4 + 2];
  }
  return { width: decoded.width, height: decoded.height, rgb };
}

/** Encodes, decodes and compares one image at one setting. */
export async function measureCodec(
  image: RgbImage,
  setting: CodecSetting,
): Promise<CodecMeasurement> {
  const encoded = await encodeImage(image, setting);
  const decoded = await decodeEncoded(encoded, setting.codec);
  if (decoded.width !== image.width || decoded.height !== image.height) {
    throw new Error(
      `The ${setting.codec} decoder returned ${decoded.width}x${decoded.height} for a ` +
        `${image.width}x${image.height} image.`,
    );
  }
  return {
    bytes: encoded.length,
    bpp: (encoded.length * 8) / (image.width * image.height),
    psnr: psnr(decoded.rgb, image.rgb),
  };
}

async function measureCached(
  image: RgbImage,
  setting: CodecSetting,
  cache: CodecCache,
): Promise<CodecMeasurement> {
  let entries = cache.get(image);
  if (!entries) {
    entries = new Map();
    cache.set(image, entries);
  }
  const key = `${setting.codec}:${setting.quality}`;
  let measurement = entries.get(key);
  if (!measurement) {
    measurement = await measureCodec(image, setting);
    entries.set(key, measurement);
  }
  return measurement;
}

async function summarize(
  images: RgbImage[],
  codec: CodecName,
  qualities: number[],
  cache: CodecCache,
): Promise<CodecPoint> {
  const results: CodecMeasurement[] = [];
  for (let i = 0; i < images.length; i++) {
    results.push(await measureCached(images[i], { codec, quality: qualities[i] }, cache));
  }
  const sorted = [...qualities].sort((a, b) => a - b);
  const middle = sorted.length / 2;
  const median = sorted.length % 2 === 1
    ? sorted[Math.floor(middle)]
    : (sorted[middle - 1] + sorted[middle]) / 2;
  return { codec, quality: median, qualities, ...summarizeImages(results) };
}

async function matchEachImage(
  images: RgbImage[],
  codec: CodecName,
  target: number,
  cache: CodecCache,
): Promise<number[]> {
  const qualities: number[] = [];
  for (const image of images) {
    const bppAt = async (quality: number) =>
      (await measureCached(image, { codec, quality }, cache)).bpp;
    qualities.push(await searchQuality(bppAt, target, QUALITY_RANGE[codec]));
  }
  return qualities;
}

async function matchWholeSet(
  images: RgbImage[],
  codec: CodecName,
  target: number,
  cache: CodecCache,
): Promise<number[]> {
  const bppAt = async (quality: number) => {
    let sum = 0;
    for (const image of images) sum += (await measureCached(image, { codec, quality }, cache)).bpp;
    return sum / images.length;
  };
  const quality = await searchQuality(bppAt, target, QUALITY_RANGE[codec]);
  return images.map(() => quality);
}

/**
 * Finds the integer quality in [low, high] whose bpp is closest to `target`
 * by bisecting for the two qualities around it. A tie goes to the higher
 * quality. NOTE: bisection assumes that bpp grows with quality. Where it does
 * not, the result can miss the closest quality.
 */
async function searchQuality(
  bppAt: (quality: number) => Promise<number>,
  target: number,
  [low, high]: readonly [number, number],
): Promise<number> {
  if (await bppAt(high) <= target) return high;
  if (await bppAt(low) >= target) return low;
  // Invariant: bpp(below) < target <= bpp(above).
  let below = low;
  let above = high;
  while (above - below > 1) {
    const middle = Math.floor((below + above) / 2);
    if (await bppAt(middle) < target) below = middle;
    else above = middle;
  }
  const shortfall = target - await bppAt(below);
  const excess = await bppAt(above) - target;
  return shortfall < excess ? below : above;
}

function validateCodecs(codecs: readonly CodecName[] | undefined): readonly CodecName[] {
  const chosen = codecs ?? CODEC_NAMES;
  for (const codec of chosen) {
    if (!CODEC_NAMES.includes(codec)) {
      throw new Error(`Codec "${codec}" is not supported. Choose from: ${CODEC_NAMES.join(", ")}.`);
    }
  }
  return chosen;
}

function checkQuality(codec: CodecName, quality: number): void {
  const [low, high] = QUALITY_RANGE[codec];
  if (!(Number.isInteger(quality) && quality >= low && quality <= high)) {
    throw new Error(`${codec} quality ${quality} is invalid: pass an integer in ${low}..${high}.`);
  }
}

function validateImages(images: RgbImage[]): void {
  if (images.length === 0) throw new Error("No images given: pass at least one RGB image.");
  images.forEach(validateImage);
}

function validateImage(image: RgbImage, index: number): void {
  const { width, height, rgb } = image;
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new Error(
      `Image ${index} has invalid size ${width}x${height}: width and height must be integers > 0.`,
    );
  }
  if (rgb.length !== width * height * 3) {
    throw new Error(
      `Image ${index} has ${rgb.length} bytes of pixels, but ${width}x${height} RGB needs ${
        width * height * 3
      }.`,
    );
  }
}

function toRgba(image: RgbImage): Uint8ClampedArray<ArrayBuffer> {
  const count = image.width * image.height;
  const rgba = new Uint8ClampedArray(count * 4);
  for (let i = 0; i < count; i++) {
    rgba[i * 4] = image.rgb[i * 3];
    rgba[i * 4 + 1] = image.rgb[i * 3 + 1];
    rgba[i * 4 + 2] = image.rgb[i * 3 + 2];
    rgba[i * 4 + 3] = 255;
  }
  return rgba;
}

// ---------------------------------------------------------------------------
// Loading the WebAssembly encoders

interface ReferenceCodecs {
  jpegEncoder: MozjpegEncoder;
  webpEncoder: WebpEncoder;
  webpDecoder: WebpDecoder;
}

let referenceCodecs: Promise<ReferenceCodecs> | undefined;

/**
 * Instantiates the MozJPEG encoder and the libwebp encoder and decoder once.
 * As in src/data/codecs.ts, the .wasm bytes are read with `Deno.readFile`
 * from the packages' file URLs, because the packages' own loaders `fetch` them.
 * The libwebp build with WebAssembly SIMD is used where the runtime compiles it.
 */
function loadReferenceCodecs(): Promise<ReferenceCodecs> {
  referenceCodecs ??= (async () => {
    try {
      const [jpegEncoder, webpDecoder] = await Promise.all([
        instantiate<MozjpegEncoder>(
          mozjpegEncoderFactory,
          "@jsquash/jpeg/codec/enc/mozjpeg_enc.wasm",
        ),
        instantiate<WebpDecoder>(webpDecoderFactory, "@jsquash/webp/codec/dec/webp_dec.wasm"),
      ]);
      let webpEncoder: WebpEncoder;
      try {
        webpEncoder = await instantiate<WebpEncoder>(
          webpSimdEncoderFactory,
          "@jsquash/webp/codec/enc/webp_enc_simd.wasm",
        );
      } catch {
        webpEncoder = await instantiate<WebpEncoder>(
          webpEncoderFactory,
          "@jsquash/webp/codec/enc/webp_enc.wasm",
        );
      }
      return { jpegEncoder, webpEncoder, webpDecoder };
    } catch (error) {
      throw new Error(
        `Failed to load the WebAssembly encoders of @jsquash/jpeg and @jsquash/webp: ${error}. ` +
          "Check that the npm packages are installed and that the process may read them (--allow-read).",
      );
    }
  })();
  referenceCodecs.catch(() => referenceCodecs = undefined);
  return referenceCodecs;
}

/**
 * Creates an Emscripten module instance from the package's .wasm file,
 * compiled here. The instance is created synchronously inside the hook, so an
 * instantiation error rejects the factory's promise instead of leaving it pending.
 */
async function instantiate<T>(
  factory: (options?: object) => Promise<T>,
  wasmSpecifier: string,
): Promise<T> {
  const url = new URL(import.meta.resolve(wasmSpecifier));
  if (url.protocol !== "file:") return await factory({ noInitialRun: true });
  const module = await WebAssembly.compile(await Deno.readFile(url));
  const instantiateWasm = (
    imports: WebAssembly.Imports,
    receiveInstance: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void,
  ) => {
    const instance = new WebAssembly.Instance(module, imports);
    receiveInstance(instance, module);
    return instance.exports;
  };
  return await factory({ noInitialRun: true, instantiateWasm });
}
