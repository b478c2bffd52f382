// Section QR16 of a .rinr file: the per-image, per-layer quantization grids
// in 4 bytes each instead of the 8 of section QRNG.
//
// Payload: u16 little-endian [N][L][2], per image and layer the top 16 bits
// of the f32 scale, then the zero point z. The reader rebuilds
// offset = 0 - z * scale, which is exact in f32 because the scale has at most
// 8 significant bits (src/inr/quantize.ts rounds every grid so) and z at most
// 16. Layers stored as f32 hold (1, 0), which is (0x3F80, 0).
// Writers use QR16 whenever every range fits it, and QRNG otherwise: files
// quantized before scales had 8 significant bits keep QRNG.

import { FLOAT_BITS, zeroCode } from "../inr/quantize.ts";

const floatView = new Float32Array(1);
const floatBits = new Uint32Array(floatView.buffer);

/**
 * Packs ranges f32 [N][L][2] into the QR16 form, or returns undefined when a
 * scale has more than 8 significant bits or an offset is not 0 - z * scale.
 */
export function packRanges16(
  ranges: Float32Array,
  bits: readonly number[],
): Uint16Array | undefined {
  const layerCount = bits.length;
  const packed = new Uint16Array(ranges.length);
  for (let i = 0; i < ranges.length; i += 2) {
    const scale = ranges[i];
    const offset = ranges[i + 1];
    floatView[0] = scale;
    const scaleBits = floatBits[0];
    if ((scaleBits & 0xffff) !== 0 || !(scale >= 0) || !Number.isFinite(scale)) return undefined;
    const layerBits = bits[(i / 2) % layerCount];
    const codeBits = layerBits === FLOAT_BITS ? 16 : layerBits;
    const zero = zeroCode(scale, offset, codeBits);
    if (offset !== Math.fround(0 - zero * scale)) return undefined;
    if (layerBits === FLOAT_BITS && (scale !== 1 || zero !== 0)) return undefined;
    packed[i] = scaleBits >>> 16;
    packed[i + 1] = zero;
  }
  return packed;
}

/**
 * Expands a QR16 payload back to ranges f32 [N][L][2]. Returns the ranges,
 * or a message naming the first value that no writer makes.
 */
export function unpackRanges16(
  packed: Uint16Array,
  bits: readonly number[],
): { ranges: Float32Array } | { error: string } {
  const layerCount = bits.length;
  const ranges = new Float32Array(packed.length);
  for (let i = 0; i < packed.length; i += 2) {
    const entry = i / 2;
    const where = `image ${Math.floor(entry / layerCount)}, layer ${entry % layerCount}`;
    const high = packed[i];
    if (high >= 0x7f80) {
      return {
        error: `${where}: scale bits 0x${high.toString(16)} are negative, infinite or NaN.`,
      };
    }
    floatBits[0] = high << 16;
    const scale = floatView[0];
    const zero = packed[i + 1];
    const layerBits = bits[entry % layerCount];
    if (layerBits === FLOAT_BITS) {
      if (scale !== 1 || zero !== 0) {
        return { error: `${where}: an f32 layer must hold (scale 1, zero point 0).` };
      }
    } else if (zero > 2 ** layerBits - 1) {
      return { error: `${where}: zero point ${zero} does not fit in ${layerBits} bits.` };
    }
    ranges[i] = scale;
    ranges[i + 1] = Math.fround(0 - zero * scale);
  }
  return { ranges };
}
