// Layer-wise uniform quantization of SIREN weights and the packed code layout.
//
// Each layer of each image gets its own range: offset = min and
// scale = (max - min) / (2^b - 1) over that layer's weights and biases, and
// every value becomes code = round((v - offset) / scale) in [0, 2^b - 1].
// A layer stored with b = 32 keeps its raw f32 bit patterns instead.
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

/**
 * Quantizes fp32 weights [N][Q] layer by layer and packs the codes.
 * `bitsPerLayer` is one width for all layers or one per layer (default 8);
 * a width of 32 keeps that layer's raw f32 values.
 */
export function quantize(
  arch: SirenArch,
  weights: Float32Array,
  bitsPerLayer: number | readonly number[] = DEFAULT_BITS,
): QuantizedInrs {
  const q = sirenParamCount(arch);
  if (weights.length % q !== 0) {
    throw new RangeError(
      `Weights have ${weights.length} values, not a multiple of Q = ${q} for this SIREN.`,
    );
  }
  const bits = resolveLayerBits(arch, bitsPerLayer);
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

      let min = Infinity;
      let max = -Infinity;
      for (let i = start; i < end; i++) {
        const v = weights[i];
        if (!Number.isFinite(v)) {
          throw new RangeError(
            `Weight ${
              i - image * q
            } of image ${image} is ${v}, but quantization needs finite weights. Re-encode that image.`,
          );
        }
        if (v < min) min = v;
        if (v > max) max = v;
      }
      const levels = 2 ** bits[l] - 1;
      // Codes are computed from the stored f32 scale and offset, so the decoder
      // reproduces exactly the values that the half-step bound refers to.
      const scale = Math.fround((max - min) / levels);
      const offset = Math.fround(min);
      ranges[rangeIndex] = scale;
      ranges[rangeIndex + 1] = offset;
      for (let k = 0; k < end - start; k++) {
        const code = scale > 0
          ? Math.min(levels, Math.max(0, Math.round((weights[start + k] - offset) / scale)))
          : 0;
        writeCode(codes, firstWord, k * bits[l], bits[l], code);
      }
    }
  }
  return { arch, count, bits, wordsPerImage, layerWordOffsets, codes, ranges };
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
