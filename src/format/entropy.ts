// Section QANS of a .rinr file: the packed codes of section QCOD, entropy
// coded layer by layer with the static rANS coder of rans.ts. Only the file
// is coded. Readers rebuild the packed u32 form that the GPU decoder reads.
//
// Payload, integers u32 little-endian:
//   layer count L
//   per layer l: method, byte length B, then B bytes
//     method 0 (packed): the layer's packed words of every image, image by
//       image, as in QCOD. Used for f32 layers and where coding would not
//       make the layer smaller.
//     method 1 (rANS): one rANS block over the layer's codes of all images,
//       image-major, then in the value order of the packed layout.
//     method 2 (centred rANS): as method 1, but each code is first shifted
//       by the zero point of its image and layer: symbol = (code - z) mod 2^b,
//       with z = round(-offset / scale) from the ranges (QRNG or QR16). Every image's
//       zero then becomes symbol 0, so one table fits the pruned weights and
//       the peak of the weight distribution in every image.
// One frequency table per layer serves all images, because a layer's codes
// share one distribution across images (per-image ranges already remove
// the scale).

import { FLOAT_BITS, type QuantizedInrs, readCode, zeroCode } from "../inr/quantize.ts";
import { type SirenArch, sirenLayers } from "../inr/siren.ts";
import { decodeRans, encodeRans } from "./rans.ts";
import { FormatError } from "./rinr.ts";

const METHOD_PACKED = 0;
const METHOD_RANS = 1;
const METHOD_CENTRED = 2;
const MAX_BLOCK_BYTES = 2 ** 32 - 1;

/** Layout of the packed codes that a QANS payload decodes to. */
export interface QansLayout {
  arch: SirenArch;
  /** N, the number of images. */
  count: number;
  /** Bit width per layer: 1..16, or 32 for raw f32 values. */
  bits: readonly number[];
  wordsPerImage: number;
  layerWordOffsets: readonly number[];
  /** (scale, offset) per image and layer, f32 [N][L][2]; needed by centred layers (method 2). */
  ranges?: Float32Array;
  /** File name for error messages. Default: "QANS payload". */
  file?: string;
}

/** Entropy codes the packed codes of `weights` into a QANS payload. */
export function encodeQans(weights: QuantizedInrs): Uint8Array {
  const layers = sirenLayers(weights.arch);
  const blocks: Uint8Array[] = [u32(layers.length)];
  for (let l = 0; l < layers.length; l++) {
    const valueCount = layers[l].outputs * (layers[l].inputs + 1);
    const packed = layerWords(weights, l);
    let method = METHOD_PACKED;
    let block = new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength);
    if (weights.bits[l] !== FLOAT_BITS) {
      const codes = layerCodes(weights, l, valueCount);
      const coded = encodeRans(codes, { bits: weights.bits[l] });
      if (coded.byteLength < block.byteLength) {
        method = METHOD_RANS;
        block = coded;
      }
      shiftByZeroPoints(codes, { ranges: weights.ranges, layer: l, layers: layers.length, bits: weights.bits[l], sign: -1 });
      const centred = encodeRans(codes, { bits: weights.bits[l] });
      if (centred.byteLength < block.byteLength) {
        method = METHOD_CENTRED;
        block = centred;
      }
    }
    if (block.byteLength > MAX_BLOCK_BYTES) {
      throw new RangeError(
        `Layer ${l} needs ${block.byteLength} bytes, more than the 4 GiB a QANS block can hold. Store fewer images per file.`,
      );
    }
    blocks.push(u32(method), u32(block.byteLength), block);
  }
  return concat(blocks);
}

/**
 * Estimates the coded size of each image's codes in bits, [N]. Each image
 * costs the entropy of its centred symbols (as method 2 codes them) under
 * each layer's symbol frequencies over all images. A static rANS coder spends
 * that plus its table and a few bytes of state. Layers stored as f32 cost 32
 * bits per value. Ranges and the rest of the file are not included.
 */
export function codeBitsPerImage(weights: QuantizedInrs): Float64Array {
  const layers = sirenLayers(weights.arch);
  const bits = new Float64Array(weights.count);
  for (let l = 0; l < layers.length; l++) {
    const valueCount = layers[l].outputs * (layers[l].inputs + 1);
    if (weights.bits[l] === FLOAT_BITS) {
      for (let n = 0; n < weights.count; n++) bits[n] += 32 * valueCount;
      continue;
    }
    const symbols = layerCodes(weights, l, valueCount);
    shiftByZeroPoints(symbols, { ranges: weights.ranges, layer: l, layers: layers.length, bits: weights.bits[l], sign: -1 });
    const frequency = new Float64Array(2 ** weights.bits[l]);
    for (const symbol of symbols) frequency[symbol]++;
    const cost = frequency.map((f) => f > 0 ? -Math.log2(f / symbols.length) : 0);
    for (let n = 0; n < weights.count; n++) {
      for (let k = n * valueCount; k < (n + 1) * valueCount; k++) bits[n] += cost[symbols[k]];
    }
  }
  return bits;
}

/**
 * Decodes a QANS payload back to packed codes u32 [N][wordsPerImage].
 * Throws a `FormatError` naming the layer when the payload is invalid.
 */
export function decodeQans(bytes: Uint8Array, layout: QansLayout): Uint32Array {
  const file = layout.file ?? "QANS payload";
  const fail = (field: string, detail: string): never => {
    throw new FormatError(file, `section QANS ${field}`, detail);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let position = 0;
  const readU32 = (field: string): number => {
    if (position + 4 > bytes.byteLength) {
      fail(field, `ends at byte ${bytes.byteLength}. The section is truncated.`);
    }
    const value = view.getUint32(position, true);
    position += 4;
    return value;
  };

  const layers = sirenLayers(layout.arch);
  const layerCount = readU32("layer count");
  if (layerCount !== layers.length) {
    fail("layer count", `is ${layerCount}, but the architecture has ${layers.length} layers.`);
  }

  const codes = new Uint32Array(layout.count * layout.wordsPerImage);
  for (let l = 0; l < layers.length; l++) {
    const where = `layer ${l}`;
    const method = readU32(`${where} method`);
    const length = readU32(`${where} length`);
    if (position + length > bytes.byteLength) {
      fail(
        where,
        `declares ${length} bytes, but only ${
          bytes.byteLength - position
        } remain. The section is truncated.`,
      );
    }
    const block = bytes.subarray(position, position + length);
    position += length;
    const layerWordCount = layerWordCountOf(layout, l);
    const valueCount = layers[l].outputs * (layers[l].inputs + 1);

    if (method === METHOD_PACKED) {
      const expected = layout.count * layerWordCount * 4;
      if (length !== expected) {
        fail(
          where,
          `has ${length} bytes of packed words, but ${layout.count} images x ${layerWordCount} words need ${expected}.`,
        );
      }
      const blockView = new DataView(block.buffer, block.byteOffset, block.byteLength);
      for (let image = 0; image < layout.count; image++) {
        const first = image * layout.wordsPerImage + layout.layerWordOffsets[l];
        for (let w = 0; w < layerWordCount; w++) {
          codes[first + w] = blockView.getUint32((image * layerWordCount + w) * 4, true);
        }
      }
    } else if (method === METHOD_RANS || method === METHOD_CENTRED) {
      const bits = layout.bits[l];
      if (bits === FLOAT_BITS) {
        fail(
          `${where} method`,
          "is rANS, but the layer holds f32 values, which QANS stores packed.",
        );
      }
      const symbols = decodeRans(block, {
        count: layout.count * valueCount,
        bits,
        file,
        field: `section QANS ${where}`,
      });
      if (method === METHOD_CENTRED) {
        if (!layout.ranges) fail(`${where} method`, "is centred rANS, but no ranges were given to find the zero points.");
        shiftByZeroPoints(symbols, { ranges: layout.ranges!, layer: l, layers: layers.length, bits, sign: 1 });
      }
      for (let image = 0; image < layout.count; image++) {
        const first = image * layout.wordsPerImage + layout.layerWordOffsets[l];
        for (let k = 0; k < valueCount; k++) {
          writeCode(codes, first, k * bits, bits, symbols[image * valueCount + k]);
        }
      }
    } else {
      fail(`${where} method`, `is ${method}, but only 0 (packed), 1 (rANS) and 2 (centred rANS) exist.`);
    }
  }
  if (position !== bytes.byteLength) {
    fail(
      "length",
      `${bytes.byteLength - position} bytes follow the last layer, so the section is damaged.`,
    );
  }
  return codes;
}

function layerWordCountOf(
  layout: { wordsPerImage: number; layerWordOffsets: readonly number[] },
  l: number,
): number {
  const end = l + 1 < layout.layerWordOffsets.length
    ? layout.layerWordOffsets[l + 1]
    : layout.wordsPerImage;
  return end - layout.layerWordOffsets[l];
}

/** Copies layer `l` of every image out of the packed codes, image by image. */
function layerWords(weights: QuantizedInrs, l: number): Uint32Array {
  const wordCount = layerWordCountOf(weights, l);
  const out = new Uint32Array(weights.count * wordCount);
  for (let image = 0; image < weights.count; image++) {
    const first = image * weights.wordsPerImage + weights.layerWordOffsets[l];
    out.set(weights.codes.subarray(first, first + wordCount), image * wordCount);
  }
  return out;
}

/** Unpacks the codes of layer `l` of every image, image-major. */
function layerCodes(weights: QuantizedInrs, l: number, valueCount: number): Uint16Array {
  const bits = weights.bits[l];
  const out = new Uint16Array(weights.count * valueCount);
  for (let image = 0; image < weights.count; image++) {
    const first = image * weights.wordsPerImage + weights.layerWordOffsets[l];
    for (let k = 0; k < valueCount; k++) {
      out[image * valueCount + k] = readCode(weights.codes, first, k * bits, bits);
    }
  }
  return out;
}

/**
 * Adds (sign 1) or subtracts (sign -1) each image's zero point of layer
 * `layer` to or from its codes, [N][values] image-major, modulo 2^bits.
 */
function shiftByZeroPoints(
  codes: Uint16Array,
  options: { ranges: Float32Array; layer: number; layers: number; bits: number; sign: 1 | -1 },
): void {
  const count = options.ranges.length / (2 * options.layers);
  const valueCount = codes.length / count;
  const modulus = 2 ** options.bits;
  for (let image = 0; image < count; image++) {
    const range = 2 * (image * options.layers + options.layer);
    const zero = zeroCode(options.ranges[range], options.ranges[range + 1], options.bits);
    for (let k = image * valueCount; k < (image + 1) * valueCount; k++) {
      codes[k] = (codes[k] + options.sign * zero + modulus) % modulus;
    }
  }
}

/** Writes a code into zeroed words in the packed layout of src/inr/quantize.ts, lowest bit first. */
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

function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, true);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
  let position = 0;
  for (const part of parts) {
    out.set(part, position);
    position += part.byteLength;
  }
  return out;
}
