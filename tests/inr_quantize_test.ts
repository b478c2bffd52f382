import { assertEquals, assertThrows } from "@std/assert";
import { sirenInit, sirenLayers, sirenParamCount } from "../src/inr/siren.ts";
import {
  dequantize,
  packedLayout,
  packFloat32,
  quantize,
  readCode,
  resolveLayerBits,
  zeroCode,
} from "../src/inr/quantize.ts";
import { assertClose, seededRandom } from "./_util.ts";

const arch = { sineLayers: 3, width: 7, w0: 30 };

function initWeights(count: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  const q = sirenParamCount(arch);
  const weights = new Float32Array(count * q);
  for (let i = 0; i < count; i++) weights.set(sirenInit(arch, random), i * q);
  return weights;
}

/** Packs codes one bit at a time, independently of the quantizer's word arithmetic. */
function packBitByBit(codes: number[], bits: number): Uint32Array {
  const words = new Uint32Array(Math.ceil((codes.length * bits) / 32));
  codes.forEach((code, k) => {
    for (let j = 0; j < bits; j++) {
      const bit = k * bits + j;
      if ((code >>> j) & 1) words[bit >>> 5] |= 1 << (bit & 31);
    }
  });
  return words;
}

Deno.test("quantize round trip within half a step", () => {
  const weights = initWeights(3, 11);
  const q = sirenParamCount(arch);
  const layers = sirenLayers(arch);
  for (const bits of [1, 3, 8, 12, 16, [4, 8, 2, 16]]) {
    const packed = quantize(arch, weights, bits);
    const restored = dequantize(packed);
    for (let image = 0; image < 3; image++) {
      layers.forEach((layer, l) => {
        const scale = packed.ranges[(image * layers.length + l) * 2];
        const start = image * q + layer.weightOffset;
        const end = image * q + layer.biasOffset + layer.outputs;
        for (let i = start; i < end; i++) {
          const error = Math.abs(restored[i] - weights[i]);
          const bound = scale / 2 + 1e-7 * Math.abs(weights[i]) + 1e-9;
          if (!(error <= bound)) {
            throw new Error(
              `bits ${bits}: image ${image} layer ${l} value ${i}: error ${error} > half step ${bound}`,
            );
          }
        }
      });
    }
  }
});

Deno.test("quantize puts zero on every grid and prunes masked weights to zero", () => {
  const weights = initWeights(2, 5);
  const q = sirenParamCount(arch);
  const layers = sirenLayers(arch);
  const random = seededRandom(9);
  const mask = Uint8Array.from(weights, () => random() < 0.4 ? 0 : 1);
  for (const bits of [2, 5, 8]) {
    const packed = quantize(arch, weights, { bits, mask });
    const restored = dequantize(packed);
    for (let image = 0; image < 2; image++) {
      layers.forEach((layer, l) => {
        const scale = packed.ranges[(image * layers.length + l) * 2];
        const offset = packed.ranges[(image * layers.length + l) * 2 + 1];
        const zero = zeroCode(scale, offset, bits);
        assertEquals(offset + zero * scale, 0, `bits ${bits} image ${image} layer ${l}: zero point`);
        for (let i = image * q + layer.weightOffset; i < image * q + layer.biasOffset + layer.outputs; i++) {
          if (mask[i] === 0) {
            assertEquals(restored[i], 0, `bits ${bits}: pruned weight ${i}`);
          } else if (!(Math.abs(restored[i] - weights[i]) <= scale / 2 + 1e-7 * Math.abs(weights[i]))) {
            throw new Error(`bits ${bits}: kept weight ${i} moved by more than half a step`);
          }
        }
      });
    }
  }
  assertThrows(() => quantize(arch, weights, { mask: new Uint8Array(3) }), RangeError, "pruning mask has 3 entries");
});

Deno.test("bit packing exact for widths 1 to 16", () => {
  // Each layer contains the codes 0..2^b-1 in a shuffled order, so the layer's min is 0, its max is
  // 2^b - 1, the scale is exactly 1 and the codes equal the values.
  const layers = sirenLayers(arch);
  const q = sirenParamCount(arch);
  for (let bits = 1; bits <= 16; bits++) {
    const levels = 2 ** bits;
    const random = seededRandom(bits);
    const weights = new Float32Array(q);
    const expectedCodes: number[][] = [];
    for (const layer of layers) {
      const count = layer.outputs * (layer.inputs + 1);
      const codes = Array.from(
        { length: count },
        (_, k) => k < 2 ? k * (levels - 1) : Math.floor(random() * levels),
      );
      codes.forEach((code, k) => weights[layer.weightOffset + k] = code);
      expectedCodes.push(codes);
    }
    const packed = quantize(arch, weights, bits);
    layers.forEach((_, l) => {
      assertEquals(packed.ranges[2 * l], 1, `bits ${bits} layer ${l} scale`);
      assertEquals(packed.ranges[2 * l + 1], 0, `bits ${bits} layer ${l} offset`);
      const reference = packBitByBit(expectedCodes[l], bits);
      const start = packed.layerWordOffsets[l];
      const actual = packed.codes.subarray(start, start + reference.length);
      assertEquals([...actual], [...reference], `bits ${bits} layer ${l} words`);
      expectedCodes[l].forEach((code, k) => {
        if (readCode(packed.codes, start, k * bits, bits) !== code) {
          throw new Error(
            `bits ${bits} layer ${l} code ${k}: read ${
              readCode(packed.codes, start, k * bits, bits)
            }, expected ${code}`,
          );
        }
      });
    });
    assertEquals(dequantize(packed), weights, `bits ${bits} exact round trip`);
  }
});

Deno.test("packed layout starts layers on words", () => {
  // 3x7 SIREN: layer value counts 21, 56, 56, 24.
  const layout = packedLayout(arch, [3, 5, 16, 32]);
  assertEquals(layout.layerWordOffsets, [0, 2, 11, 39]);
  assertEquals(layout.wordsPerImage, 63);
});

Deno.test("constant layer decodes to its value", () => {
  // A constant layer spans [0, v], so v is the top of the grid and 0 its bottom.
  const weights = new Float32Array(sirenParamCount(arch)).fill(0.25);
  const restored = dequantize(quantize(arch, weights, 4));
  assertClose("constant layer", restored, weights, { atol: 0.25 / 15 / 2, rtol: 0 });
  assertEquals(dequantize(quantize(arch, new Float32Array(sirenParamCount(arch)), 4)), new Float32Array(sirenParamCount(arch)));
});

Deno.test("packFloat32 keeps bits exactly", () => {
  const weights = initWeights(2, 3);
  const packed = packFloat32(arch, weights);
  assertEquals(packed.bits, [32, 32, 32, 32]);
  assertEquals(packed.wordsPerImage, sirenParamCount(arch));
  assertEquals(dequantize(packed), weights);
  const mixed = quantize(arch, weights, [32, 8, 8, 32]);
  const restored = dequantize(mixed);
  const first = sirenLayers(arch)[0];
  assertEquals(
    restored.slice(0, first.biasOffset + first.outputs),
    weights.slice(0, first.biasOffset + first.outputs),
  );
});

Deno.test("quantize rejects invalid input", () => {
  assertThrows(() => resolveLayerBits(arch, 0), RangeError, "layer 0 must be an integer in 1..16");
  assertThrows(() => resolveLayerBits(arch, 17), RangeError, "got 17");
  assertThrows(() => resolveLayerBits(arch, [8, 8]), RangeError, "Expected 4 bit widths");
  assertThrows(() => quantize(arch, new Float32Array(5)), RangeError, "not a multiple of Q");
  const weights = initWeights(1, 1);
  weights[4] = NaN;
  assertThrows(() => quantize(arch, weights), RangeError, "Weight 4 of image 0 is NaN");
});
