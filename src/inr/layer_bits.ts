// Per-layer bit widths chosen by measured sensitivity.
//
// For each layer alone, the other layers kept in f32, the weights of a sample
// of images are rounded to b bits and decoded, and the PSNR loss against the
// unrounded weights is measured. A layer gets the smallest width in
// `candidates` whose mean loss stays within the tolerance, or the fallback
// width (16 bits) when none does. The loss falls as b grows, so a binary
// search over the candidates needs about log2(candidates) measurements per
// layer. Rounding alone overstates what the stored file loses, because
// quantization-aware fine-tuning recovers much of it afterwards.

import { dequantize, FLOAT_BITS, quantize } from "./quantize.ts";
import { type SirenArch, sirenLayers, sirenParamCount } from "./siren.ts";

/** Settings of {@linkcode chooseLayerBits}. */
export interface LayerBitsOptions {
  arch: SirenArch;
  /** fp32 weights of the sample images, [n][Q]. */
  weights: Float32Array;
  /**
   * Returns the PSNR in dB of each sample image decoded from the given fp32
   * weights [n][Q]; the caller decodes on the GPU.
   */
  measure: (weights: Float32Array) => Promise<Float32Array>;
  /** Largest mean PSNR loss one layer may cause alone, dB. Default 0.25. */
  toleranceDb?: number;
  /** Widths to choose from, increasing. Default 2..8, 10 and 12. */
  candidates?: readonly number[];
  /** Width of a layer that no candidate keeps within the tolerance. Default 16. */
  fallback?: number;
}

/** Chosen widths and the measurements behind them. */
export interface LayerBitsChoice {
  /** Bit width per layer. */
  bits: number[];
  /** Mean PSNR loss in dB per layer at its chosen width, rounding that layer alone. */
  lossDb: number[];
}

/** Chooses a bit width per layer; see the file comment. */
export async function chooseLayerBits(options: LayerBitsOptions): Promise<LayerBitsChoice> {
  const [choice] = await chooseLayerBitsLadder(options, [options.toleranceDb ?? 0.25]);
  return choice;
}

/**
 * Chooses the bit widths for each tolerance in `tolerancesDb`, in that order.
 * Each (layer, width) is measured once, so a ladder of tolerances costs little
 * more than its tightest entry. `options.toleranceDb` is ignored.
 */
export async function chooseLayerBitsLadder(
  options: LayerBitsOptions,
  tolerancesDb: readonly number[],
): Promise<LayerBitsChoice[]> {
  const { arch, weights, measure } = options;
  const candidates = options.candidates ?? [2, 3, 4, 5, 6, 7, 8, 10, 12];
  const fallback = options.fallback ?? 16;
  for (const tolerance of tolerancesDb) {
    if (!(tolerance >= 0)) throw new RangeError(`Layer tolerance must be a non-negative number of dB, got ${tolerance}.`);
  }
  if (candidates.length === 0) throw new RangeError("Give at least one candidate bit width.");
  const layerCount = sirenLayers(arch).length;
  const q = sirenParamCount(arch);
  if (weights.length === 0 || weights.length % q !== 0) {
    throw new RangeError(`Sample weights have ${weights.length} values, not a positive multiple of Q = ${q}.`);
  }

  const reference = mean(await measure(weights));
  const measured = new Map<string, number>();
  const lossAt = async (layer: number, bits: number): Promise<number> => {
    const key = `${layer}:${bits}`;
    const known = measured.get(key);
    if (known !== undefined) return known;
    const perLayer = new Array(layerCount).fill(FLOAT_BITS);
    perLayer[layer] = bits;
    const loss = reference - mean(await measure(dequantize(quantize(arch, weights, perLayer))));
    measured.set(key, loss);
    return loss;
  };

  const choices: LayerBitsChoice[] = [];
  for (const tolerance of tolerancesDb) {
    const bits: number[] = [];
    const lossDb: number[] = [];
    for (let l = 0; l < layerCount; l++) {
      // Binary search for the first candidate within the tolerance.
      let low = 0;
      let high = candidates.length;
      let foundLoss = NaN;
      while (low < high) {
        const middle = (low + high) >> 1;
        const loss = await lossAt(l, candidates[middle]);
        if (loss <= tolerance) {
          high = middle;
          foundLoss = loss;
        } else {
          low = middle + 1;
        }
      }
      if (low < candidates.length) {
        bits.push(candidates[low]);
        lossDb.push(foundLoss);
      } else {
        bits.push(fallback);
        lossDb.push(await lossAt(l, fallback));
      }
    }
    choices.push({ bits, lossDb });
  }
  return choices;
}

function mean(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += Math.min(values[i], 100);
  return sum / values.length;
}
