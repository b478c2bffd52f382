// Layer-wise uniform quantization of SIREN weights and the packed code layout.
//
// Each layer of each image gets its own grid over its weights and biases.
// The grid always contains zero exactly, so that pruned weights decode to 0:
// - lo = min(0, kept values), hi = max(0, kept values), where a kept value is
//   one whose mask entry is not 0 (every value when there is no mask);
// - scale = (hi - lo) / (2^b - 1) in f32, rounded up to 8 significant bits
//   (SCALE_SIGNIFICANT_BITS), so that the scale is the top half of its f32
//   bit pattern and a file can store it in 16 bits;
// - the zero point z = round(-lo / scale), and offset = f32(0 - z * scale);
// - a kept value v becomes code = clamp(round((v - offset) / scale), 0,
//   2^b - 1), a pruned one becomes z, and a code decodes to offset + code * scale.
// Putting zero on the grid moves it by at most half a step, so every kept
// value, the clamped ends of the range included, stays within half a step of
// its decoded value.
// A layer stored with b = 32 keeps its raw f32 bit patterns instead.
// wgsl/siren_quant.wgsl applies the same rule on the GPU during
// quantization-aware fine-tuning.
//
// Packed layout, per image, in u32 words (wgsl/inr_decode.wgsl reads it on
// the GPU and restates it):
// - each image owns `wordsPerImage` consecutive words;
// - layer l starts at word `layerWordOffsets[l]` of the image, so every layer
//   starts on a word boundary;
// - the layer's values, W [out][in] row-major then b [out], form one bit
//   stream: value k occupies stream bits k*b .. k*b + b - 1, lowest bit first,
//   and stream bit j is bit (j % 32) of layer word floor(j / 32). A code may
//   straddle two words: its low bits sit in the top of the first word.

import { type SirenArch, sirenLayers, sirenParamCount } from "./siren.ts";

/** Largest bit width of a uniform code. */
export const MAX_CODE_BITS = 16;
/** Bit width that marks a layer stored as raw f32 values. */
export const FLOAT_BITS = 32;
/** Bit width used when none is given. */
export const DEFAULT_BITS = 8;
/**
 * Significant bits of every grid scale. With codes of at most 16 bits, each
 * code * scale then needs at most 24 significant bits and is exact in f32.
 */
export const SCALE_SIGNIFICANT_BITS = 8;

/** SIREN weights of N images in the packed form the GPU decoder reads. */
export interface QuantizedInrs {
  arch: SirenArch;
  /** N, the number of images. */
  count: number;
  /** Bit width per layer (L entries): 1..16, or 32 for raw f32 values. */
  bits: number[];
  /** Words of `codes` per image. */
  wordsPerImage: number;
  /** First word of each layer inside an image's words (L entries). */
  layerWordOffsets: number[];
  /** Packed codes, u32 [N][wordsPerImage]. */
  codes: Uint32Array;
  /** Per image and layer (scale, offset), f32 [N][L][2]. Layers stored as f32 have (1, 0). */
  ranges: Float32Array;
}

/** Word offsets of the packed layout for `arch` and per-layer bit widths. */
export interface PackedLayout {
  layerWordOffsets: number[];
  wordsPerImage: number;
}

/**
 * Expands `bitsPerLayer` (one width for every layer, or one per layer) to one
 * width per layer and validates it. Throws a RangeError naming the bad value.
 */
export function resolveLayerBits(
  arch: SirenArch,
  bitsPerLayer: number | readonly number[],
): number[] {
  const layerCount = sirenLayers(arch).length;
  const bits = typeof bitsPerLayer === "number"
    ? new Array(layerCount).fill(bitsPerLayer)
    : [...bitsPerLayer];
  if (bits.length !== layerCount) {
    throw new RangeError(
      `Expected ${layerCount} bit widths (one per layer of a ${arch.sineLayers}x${arch.width} SIREN), ` +
        `got ${bits.length}: [${bits.join(", ")}].`,
    );
  }
  bits.forEach((b, layer) => {
    const valid = Number.isInteger(b) && ((b >= 1 && b <= MAX_CODE_BITS) || b === FLOAT_BITS);
    if (!valid) {
      throw new RangeError(
        `Bit width of layer ${layer} must be an integer in 1..16, or 32 for f32, got ${b}.`,
      );
    }
  });
  return bits;
}

/** Computes where each layer starts in an image's packed words. */
export function packedLayout(arch: SirenArch, bits: readonly number[]): PackedLayout {
  const layers = sirenLayers(arch);
  const layerWordOffsets: number[] = [];
  let words = 0;
  layers.forEach((layer, l) => {
    layerWordOffsets.push(words);
    const values = layer.outputs * (layer.inputs + 1);
    words += Math.ceil((values * bits[l]) / 32);
  });
  return { layerWordOffsets, wordsPerImage: words };
}

/** Returns the bytes of the packed codes of `count` images, one storage binding in InrDecoder. */
export function packedCodeBytes(
  options: { arch: SirenArch; count: number; bits: number | number[] | "f32" },
): number {
  const layerCount = sirenLayers(options.arch).length;
  const bits = options.bits === "f32"
    ? new Array(layerCount).fill(32)
    : resolveLayerBits(options.arch, options.bits);
  return options.count * packedLayout(options.arch, bits).wordsPerImage * 4;
}

/**
 * Returns the bytes that InrDecoder keeps resident for `count` images: packed codes,
 * ranges, the layer table and labels. `bits` is one width per layer, or
 * "f32" for unquantized weights (stored as 32-bit layers).
 */
export function residentDatasetBytes(
  options: { arch: SirenArch; count: number; bits: number | number[] | "f32" },
): number {
  const layerCount = sirenLayers(options.arch).length;
  const ranges = options.count * layerCount * 2 * 4;
  const layerTable = layerCount * 2 * 4;
  const labels = options.count * 4;
  return packedCodeBytes(options) + ranges + layerTable + labels;
}

/** Settings of {@linkcode quantize}. */
export interface QuantizeOptions {
  /** One bit width for all layers or one per layer: 1..16, or 32 for raw f32. Default 8. */
  bits?: number | readonly number[];
  /**
   * Pruning mask [N][Q]: 0 stores the weight as exactly zero, anything else
   * keeps it. Default: every weight kept. Ignored in layers stored as f32.
   */
  mask?: Uint8Array;
}

/**
 * Quantizes fp32 weights [N][Q] layer by layer and packs the codes.
 * The third argument is the bit widths (one for all layers or one per layer,
 * default 8) or a {@linkcode QuantizeOptions}; a width of 32 keeps that
 * layer's raw f32 values.
 */
export function quantize(
  arch: SirenArch,
  weights: Float32Array,
  settings: number | readonly number[] | QuantizeOptions = DEFAULT_BITS,
): QuantizedInrs {
  const q = sirenParamCount(arch);
  if (weights.length % q !== 0) {
    throw new RangeError(
      `Weights have ${weights.length} values, not a multiple of Q = ${q} for this SIREN.`,
    );
  }
  const options: QuantizeOptions = typeof settings === "number" || Array.isArray(settings)
    ? { bits: settings as number | readonly number[] }
    : settings as QuantizeOptions;
  const mask = options.mask;
  if (mask && mask.length !== weights.length) {
    throw new RangeError(
      `The pruning mask has ${mask.length} entries, but there are ${weights.length} weights.`,
    );
  }
  const bits = resolveLayerBits(arch, options.bits ?? DEFAULT_BITS);
  const layers = sirenLayers(arch);
  const { layerWordOffsets, wordsPerImage } = packedLayout(arch, bits);
  const count = weights.length / q;
  const codes = new Uint32Array(count * wordsPerImage);
  const ranges = new Float32Array(count * layers.length * 2);
  const floatBits = new Uint32Array(weights.buffer, weights.byteOffset, weights.length);

  for (let image = 0; image < count; image++) {
    for (let l = 0; l < layers.length; l++) {
      const start = image * q + layers[l].weightOffset;
      const end = image * q + layers[l].biasOffset + layers[l].outputs;
      const firstWord = image * wordsPerImage + layerWordOffsets[l];
      const rangeIndex = (image * layers.length + l) * 2;
      if (bits[l] === FLOAT_BITS) {
        codes.set(floatBits.subarray(start, end), firstWord);
        ranges[rangeIndex] = 1;
        continue;
      }

      let lo = 0;
      let hi = 0;
      for (let i = start; i < end; i++) {
        const v = weights[i];
        if (!Number.isFinite(v)) {
          throw new RangeError(
            `Weight ${
              i - image * q
            } of image ${image} is ${v}, but quantization needs finite weights. Re-encode that image.`,
          );
        }
        if (mask && mask[i] === 0) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const grid = zeroPointGrid(lo, hi, bits[l]);
      ranges[rangeIndex] = grid.scale;
      ranges[rangeIndex + 1] = grid.offset;
      for (let k = 0; k < end - start; k++) {
        const kept = !mask || mask[start + k] !== 0;
        const code = kept ? gridCode(grid, weights[start + k]) : grid.zero;
        writeCode(codes, firstWord, k * bits[l], bits[l], code);
      }
    }
  }
  return { arch, count, bits, wordsPerImage, layerWordOffsets, codes, ranges };
}

/** A layer's quantization grid: value = offset + code * scale, with code `zero` decoding to 0. */
export interface QuantizationGrid {
  scale: number;
  offset: number;
  /** Code of the value 0. */
  zero: number;
  /** Largest code, 2^b - 1. */
  levels: number;
}

/**
 * Returns the grid of `bits` bits over [lo, hi], which must contain 0.
 * The scale is rounded up to {@linkcode SCALE_SIGNIFICANT_BITS} significant
 * bits, so every code * scale and offset + code * scale is exact in f32. The decoder thus gets the same
 * values with or without fused multiply-add, and the zero point decodes to
 * exactly 0.
 */
export function zeroPointGrid(lo: number, hi: number, bits: number): QuantizationGrid {
  const levels = 2 ** bits - 1;
  const scale = roundUpMantissa(
    Math.fround(Math.fround(hi - lo) / levels),
    24 - SCALE_SIGNIFICANT_BITS,
  );
  if (!(scale > 0)) return { scale: 0, offset: 0, zero: 0, levels };
  const zero = Math.min(levels, Math.max(0, Math.round(-lo / scale)));
  return { scale, offset: 0 - zero * scale, zero, levels };
}

const f32View = new Float32Array(1);
const u32View = new Uint32Array(f32View.buffer);

// Rounds a positive f32 up to clear its lowest `drop` mantissa bits.
function roundUpMantissa(value: number, drop: number): number {
  if (!(value > 0) || !Number.isFinite(value)) return value;
  f32View[0] = value;
  const low = (1 << drop) - 1;
  if ((u32View[0] & low) !== 0) u32View[0] = ((u32View[0] | low) + 1) >>> 0;
  return f32View[0];
}

/** Returns the code of `value` on `grid`, clamped to 0..levels. */
export function gridCode(grid: QuantizationGrid, value: number): number {
  if (grid.scale === 0) return 0;
  return Math.min(grid.levels, Math.max(0, Math.round((value - grid.offset) / grid.scale)));
}

/** Returns the zero point of a layer stored with `scale` and `offset`: the code that decodes to 0. */
export function zeroCode(scale: number, offset: number, bits: number): number {
  if (!(scale > 0)) return 0;
  return Math.min(2 ** bits - 1, Math.max(0, Math.round(-offset / scale)));
}

/**
 * Wraps fp32 weights [N][Q] as `QuantizedInrs` with every layer at 32 bits.
 * The codes share memory with `weights`, which must start at a 4-byte offset.
 */
export function packFloat32(arch: SirenArch, weights: Float32Array): QuantizedInrs {
  const q = sirenParamCount(arch);
  if (weights.length % q !== 0) {
    throw new RangeError(
      `Weights have ${weights.length} values, not a multiple of Q = ${q} for this SIREN.`,
    );
  }
  const layerCount = sirenLayers(arch).length;
  const bits = new Array(layerCount).fill(FLOAT_BITS);
  const { layerWordOffsets, wordsPerImage } = packedLayout(arch, bits);
  const count = weights.length / q;
  const ranges = new Float32Array(count * layerCount * 2);
  for (let i = 0; i < ranges.length; i += 2) ranges[i] = 1;
  const codes = new Uint32Array(weights.buffer, weights.byteOffset, weights.length);
  return { arch, count, bits, wordsPerImage, layerWordOffsets, codes, ranges };
}

/** Expands packed weights back to fp32 [N][Q]: offset + code * scale per value. */
export function dequantize(q: QuantizedInrs): Float32Array {
  const paramCount = sirenParamCount(q.arch);
  const layers = sirenLayers(q.arch);
  const out = new Float32Array(q.count * paramCount);
  const outBits = new Uint32Array(out.buffer);
  for (let image = 0; image < q.count; image++) {
    for (let l = 0; l < layers.length; l++) {
      const start = image * paramCount + layers[l].weightOffset;
      const valueCount = layers[l].outputs * (layers[l].inputs + 1);
      const firstWord = image * q.wordsPerImage + q.layerWordOffsets[l];
      if (q.bits[l] === FLOAT_BITS) {
        outBits.set(q.codes.subarray(firstWord, firstWord + valueCount), start);
        continue;
      }
      const scale = q.ranges[(image * layers.length + l) * 2];
      const offset = q.ranges[(image * layers.length + l) * 2 + 1];
      for (let k = 0; k < valueCount; k++) {
        out[start + k] = offset + readCode(q.codes, firstWord, k * q.bits[l], q.bits[l]) * scale;
      }
    }
  }
  return out;
}

/** Reads the `bits`-wide code at stream bit `bit` of the stream starting at word `firstWord`. */
export function readCode(words: Uint32Array, firstWord: number, bit: number, bits: number): number {
  const w = firstWord + (bit >>> 5);
  const shift = bit & 31;
  let value = words[w] >>> shift;
  if (shift + bits > 32) value |= words[w + 1] << (32 - shift);
  return (value & ((1 << bits) - 1)) >>> 0;
}

function writeCode(
  words: Uint32Array,
  firstWord: number,
  bit: number,
  bits: number,
  code: number,
): void {
  const w = firstWord + (bit >>> 5);
  const shift = bit & 31;
  words[w] |= code << shift;
  if (shift + bits > 32) words[w + 1] |= code >>> (32 - shift);
}
