// `compress --rd-report`: a rate-distortion sweep of the compression settings
// on the images of one .rinr file, next to JPEG and WebP on the same images.
//
// For each bit width of the sweep, the images are pruned and fine-tuned
// through the sparsity schedule as `compress` does. The first layer stays at
// 12 bits, because it is the most sensitive and has few weights. Every step
// becomes one point: the size of the whole .rinr file with every image at
// that step, and the PSNR of the decoded images against the source. JPEG and
// WebP encode the same source images at the quality per image that matches
// each rapid-inr rate, and across a quality sweep.

import { basename } from "@std/path";
import type { RinrFile } from "../format/mod.ts";
import { encodeRinr, readRinr } from "../format/mod.ts";
import { pruneAndTune } from "../inr/prune.ts";
import { dequantize, quantize } from "../inr/quantize.ts";
import { sirenLayers, sirenParamCount } from "../inr/siren.ts";
import { CODEC_LABELS, CODEC_NAMES, codecCurves, codecSweep, createCodecCache, matchRates } from "../report/codecs.ts";
import { COIN_KODAK, percentile, type RdCurve, type RdReportPaths, writeRdReport } from "../report/rd.ts";
import type { Log } from "./log.ts";
import { UsageError } from "./options.ts";
import { psnrOnGpu, sourceImages, withGpu } from "./stages.ts";

/** Bit width of the first layer in the sweep. */
export const FIRST_LAYER_BITS = 12;

/** Settings of {@linkcode rdReportStage}. */
export interface RdReportOptions {
  /** fp32 .rinr file written by encode. */
  input: string;
  /** Report table path; the JSON and SVG files go next to it. */
  output: string;
  /** Bit widths of every layer but the first. Default [3, 4, 5, 6, 8]. */
  bitWidths?: number[];
  sparsities: number[];
  tuneIterations: number;
  tuneLearningRate: number;
  /** Measure only the first N images. Default: all. */
  images?: number;
  /** Add the published COIN curve, which was measured on Kodak. */
  coin?: boolean;
  source?: string;
  overwrite: boolean;
}

/** Result of {@linkcode rdReportStage}. */
export interface RdReportResult extends RdReportPaths {
  curves: RdCurve[];
  images: number;
}

/** Runs the sweep and writes the report; see the file comment. */
export async function rdReportStage(options: RdReportOptions, log: Log): Promise<RdReportResult> {
  const whole = await readRinr(options.input);
  if (!(whole.weights instanceof Float32Array)) {
    throw new UsageError(`${options.input} is already quantized. Sweep the fp32 file that encode wrote.`);
  }
  if (options.tuneIterations < 1) throw new UsageError("--rd-report needs --tune-iterations of at least 1.");
  const count = Math.min(options.images ?? whole.labels.length, whole.labels.length);
  const source = await sourceImages(whole, options.source, log, { first: count });
  const q = sirenParamCount(whole.arch);
  const side = whole.resolution;
  const pixels = side * side;
  const file: RinrFile = {
    ...whole,
    labels: whole.labels.subarray(0, count),
    psnr: Float32Array.from(whole.psnr).subarray(0, count),
    weights: whole.weights.subarray(0, count * q),
  };
  const weights = file.weights as Float32Array;
  const images = source.images.subarray(0, count * pixels * 3);
  const subset = { ...source, images, labels: source.labels.subarray(0, count) };
  const layerCount = sirenLayers(file.arch).length;
  const bitWidths = options.bitWidths ?? [3, 4, 5, 6, 8];
  const started = performance.now();
  const total = bitWidths.length * options.sparsities.length * options.tuneIterations * count;
  let before = 0;

  const inrCurves = await withGpu(log, async (gpu) => {
    const curves: RdCurve[] = [];
    for (const width of bitWidths) {
      const bits = Array.from({ length: layerCount }, (_, l) => l === 0 ? FIRST_LAYER_BITS : width);
      const method = `rapid-inr, ${width}-bit layers`;
      const tuned = await pruneAndTune(gpu, {
        arch: file.arch,
        side,
        images,
        weights,
        bits,
        sparsities: options.sparsities,
        iterations: options.tuneIterations,
        learningRate: options.tuneLearningRate,
        onProgress: (p) =>
          log.progress("rd-report", {
            done: before + p.done,
            total,
            startedAt: started,
            unit: "image-iterations",
            status: `${width}-bit layers, sparsity ${options.sparsities[p.step]}`,
          }),
      });
      before += options.sparsities.length * options.tuneIterations * count;
      const points = [];
      for (const step of tuned.steps) {
        const quantized = quantize(file.arch, step.weights, { bits, mask: step.mask });
        const bytes = encodeRinr({ ...file, weights: quantized }, { entropy: "on" }).byteLength;
        // Dequantized values are exactly what the packed decoder computes (see quantize.ts).
        const psnr = await psnrOnGpu(gpu, file, dequantize(quantized), subset);
        points.push({
          method,
          setting: `${FIRST_LAYER_BITS}/${width} bits, sparsity ${step.sparsity}`,
          bpp: (8 * bytes) / (count * pixels),
          psnr: meanOf(psnr),
          psnr5: percentile(psnr, 0.05),
        });
      }
      curves.push({ method, points });
    }
    return curves;
  });

  const rgbImages = Array.from({ length: count }, (_, n) => ({
    width: side,
    height: side,
    rgb: images.subarray(n * pixels * 3, (n + 1) * pixels * 3),
  }));
  const cache = createCodecCache();
  const targets = [...new Set(inrCurves.flatMap((curve) => curve.points.map((p) => p.bpp)))].sort((a, b) => a - b);
  log.info(`Encoding ${count} images with JPEG and WebP at ${targets.length} matched rates and a quality sweep.`);
  const matchedPoints = await matchRates(rgbImages, { targetBpp: targets, cache });
  // A codec whose smallest files are above a target (JPEG's headers alone are
  // about 3.6 bpp at 32x32) cannot be compared there, so such points are left out.
  const reached = matchedPoints.filter((point) => point.bpp <= point.targetBpp! * (1 + RATE_SLACK));
  const missed = CODEC_NAMES.flatMap((codec) => {
    const count = matchedPoints.filter((point) => point.codec === codec).length -
      reached.filter((point) => point.codec === codec).length;
    return count > 0 ? [`${CODEC_LABELS[codec]} ${count} of ${targets.length}`] : [];
  });
  if (missed.length > 0) {
    log.info(`Left out matched-rate points more than ${100 * RATE_SLACK}% above their target: ${missed.join(", ")}.`);
  }
  const matched = codecCurves(reached, { suffix: ", matched rates" }).filter((curve) => curve.points.length > 0);
  const swept = codecCurves(await codecSweep(rgbImages, { cache }));
  const curves = [...inrCurves, ...matched, ...swept, ...(options.coin ? [COIN_KODAK] : [])];
  const leftOut = missed.length > 0
    ? `; matched-rate points more than ${100 * RATE_SLACK}% above their target are left out (${missed.join(", ")})`
    : "";
  const paths = await writeRdReport(options.output, {
    curves,
    title: `Rate-distortion of rapid-inr, JPEG and WebP on ${count} images of ${basename(options.input)}`,
    images: `${count} images of ${side}x${side} px from ${file.source || options.input}; rapid-inr fine-tuned ${options.tuneIterations} iterations per pruning step${leftOut}`,
    overwrite: options.overwrite,
  });
  log.result(`Wrote the rate-distortion report ${paths.markdown} (with ${paths.json} and ${paths.svg}).`);
  return { ...paths, curves, images: count };
}

// Largest relative excess of a matched codec rate over its target that still counts as matched.
const RATE_SLACK = 0.1;

function meanOf(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += Math.min(values[i], 100);
  return sum / values.length;
}
