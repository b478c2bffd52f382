// Rate-distortion points and curves: PSNR, averaging over images, the
// published COIN curve, curve comparison and the report files (Markdown table,
// JSON and SVG plot).

import { basename, dirname, extname, join } from "@std/path";
import { type RdPlotOptions, renderRdPlot } from "./plot.ts";

/** One rate-distortion point: a method at one setting, averaged over a set of images. */
export interface RdPoint {
  /** Method name, for example "JPEG (MozJPEG)" or "rapid-inr". */
  method: string;
  /** The setting that produced the point, for example "q=50" or "8 bits". */
  setting: string;
  /** Mean bits per pixel over the images: file bytes * 8 / (width * height), averaged per image. */
  bpp: number;
  /** Mean PSNR over the images in dB, each image's PSNR taken over all its RGB samples. */
  psnr: number;
  /** 5th percentile of the per-image PSNR in dB, when the per-image values are known. */
  psnr5?: number;
}

/** The points of one method, in any order. Plots sort them by bpp. */
export interface RdCurve {
  method: string;
  points: RdPoint[];
}

/**
 * COIN on the 24 Kodak images, as published with Dupont et al., "COIN:
 * COmpression with Implicit Neural representations" (2021): the `results.json`
 * file of the authors' repository github.com/EmilienDupont/coin (commit 5a8d310)
 * lists these six points. The paper plots them as mean PSNR over the images.
 */
export const COIN_KODAK: RdCurve = {
  method: "COIN (published)",
  points: [
    [0.0368, 22.408],
    [0.07361, 23.205],
    [0.1604, 24.6410833],
    [0.3074, 26.412125],
    [0.6109, 28.408],
    [1.209, 30.644],
  ].map(([bpp, psnr]) => ({ method: "COIN (published)", setting: "published", bpp, psnr })),
};

/**
 * Computes the PSNR in dB between two 8-bit images of the same size, over all
 * samples: 10 * log10(255^2 / MSE). Returns Infinity for identical images.
 */
export function psnr(actual: Uint8Array, expected: Uint8Array): number {
  if (actual.length !== expected.length) {
    throw new Error(
      `Cannot compute PSNR: the images have ${actual.length} and ${expected.length} samples. ` +
        "Compare images of the same size and channel count.",
    );
  }
  if (actual.length === 0) throw new Error("Cannot compute PSNR of an empty image.");
  let sum = 0;
  for (let i = 0; i < actual.length; i++) {
    const difference = actual[i] - expected[i];
    sum += difference * difference;
  }
  const mse = sum / actual.length;
  return 10 * Math.log10((255 * 255) / mse);
}

/**
 * Returns the `fraction` quantile (0..1) of `values`, interpolating linearly
 * between the sorted values at position fraction * (n - 1), as NumPy's
 * default percentile method does.
 */
export function percentile(values: ArrayLike<number>, fraction: number): number {
  if (values.length === 0) throw new Error("Cannot take a percentile of no values.");
  if (!(fraction >= 0 && fraction <= 1)) {
    throw new Error(`Percentile fraction ${fraction} is invalid: pass a number in 0..1.`);
  }
  const sorted = Array.from(values).sort((a, b) => a - b);
  const position = fraction * (sorted.length - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  // Equal neighbors (two exact fits at Infinity among them) need no interpolation.
  if (position === below || sorted[above] === sorted[below]) return sorted[below];
  return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
}

/** Rate and distortion of one image. */
export interface ImageRd {
  /** File bytes * 8 / (width * height). */
  bpp: number;
  /** PSNR in dB over all RGB samples. */
  psnr: number;
}

/** Mean bpp, mean PSNR and the 5th percentile of PSNR over a set of images. */
export interface RdSummary {
  bpp: number;
  psnr: number;
  psnr5: number;
}

/**
 * Averages per-image results the way COIN reports Kodak: bpp and PSNR (in dB)
 * are averaged per image, so a large image weighs as much as a small one.
 */
export function summarizeImages(results: readonly ImageRd[]): RdSummary {
  if (results.length === 0) throw new Error("Cannot summarize the results of no images.");
  const psnrs = results.map((result) => result.psnr);
  return {
    bpp: mean(results.map((result) => result.bpp)),
    psnr: mean(psnrs),
    psnr5: percentile(psnrs, 0.05),
  };
}

function mean(values: number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / values.length;
}

/** One point of curve `b` compared with curve `a` at the same bpp. */
export interface CurveMargin {
  /** The bpp of the point of `b`. */
  bpp: number;
  /** The PSNR of the point of `b` in dB. */
  psnr: number;
  /** The PSNR of `a` at this bpp in dB, interpolated linearly in bpp. */
  referencePsnr: number;
  /** psnr - referencePsnr in dB: positive where `b` is above `a`. */
  margin: number;
}

/** Result of {@linkcode compareCurves}. */
export interface CurveComparison {
  /** One entry per point of `b` inside the bpp span of `a`, in the order of `b`. */
  margins: CurveMargin[];
  /** Smallest margin in dB, or undefined when no point of `b` lies in the span. */
  minMargin?: number;
  /** Largest margin in dB, or undefined when no point of `b` lies in the span. */
  maxMargin?: number;
  /** Points of `b` outside the bpp span of `a`, which have no margin. */
  outside: RdPoint[];
}

/**
 * Compares curve `b` with the reference curve `a`: for each point of `b`
 * whose bpp lies within a's span (inclusive), interpolates a's PSNR linearly
 * in bpp between the two neighboring points of `a` and returns the margin.
 * `minMargin > 0` means `b` is above `a` at every rate of `b` that `a` covers.
 * Points of `a` that share one bpp are averaged first.
 */
export function compareCurves(a: RdCurve, b: RdCurve): CurveComparison {
  const reference = mergeEqualRates(a);
  if (reference.length === 0) {
    throw new Error(`Cannot compare with curve "${a.method}": it has no points.`);
  }
  const low = reference[0].bpp;
  const high = reference[reference.length - 1].bpp;
  const margins: CurveMargin[] = [];
  const outside: RdPoint[] = [];
  for (const point of b.points) {
    if (!(point.bpp >= low && point.bpp <= high)) {
      outside.push(point);
      continue;
    }
    const referencePsnr = interpolate(reference, point.bpp);
    margins.push({
      bpp: point.bpp,
      psnr: point.psnr,
      referencePsnr,
      margin: point.psnr - referencePsnr,
    });
  }
  const values = margins.map((entry) => entry.margin);
  return {
    margins,
    minMargin: values.length > 0 ? Math.min(...values) : undefined,
    maxMargin: values.length > 0 ? Math.max(...values) : undefined,
    outside,
  };
}

/** Sorts a curve by bpp and averages the PSNR of points with equal bpp. */
function mergeEqualRates(curve: RdCurve): { bpp: number; psnr: number }[] {
  const sorted = [...curve.points].sort((p, q) => p.bpp - q.bpp);
  const merged: { bpp: number; psnr: number; count: number }[] = [];
  for (const point of sorted) {
    const last = merged[merged.length - 1];
    if (last && last.bpp === point.bpp) {
      last.psnr = (last.psnr * last.count + point.psnr) / (last.count + 1);
      last.count++;
    } else {
      merged.push({ bpp: point.bpp, psnr: point.psnr, count: 1 });
    }
  }
  return merged;
}

/** Interpolates linearly in bpp; `bpp` must lie within the curve's span. */
function interpolate(curve: { bpp: number; psnr: number }[], bpp: number): number {
  const upper = curve.findIndex((point) => point.bpp >= bpp);
  if (curve[upper].bpp === bpp) return curve[upper].psnr;
  const left = curve[upper - 1];
  const right = curve[upper];
  const weight = (bpp - left.bpp) / (right.bpp - left.bpp);
  return left.psnr + weight * (right.psnr - left.psnr);
}

// ---------------------------------------------------------------------------
// Report files

/** Options of {@linkcode writeRdReport}. */
export interface RdReportOptions {
  /** The curves, in legend and table order. */
  curves: RdCurve[];
  /** Report title, used as the Markdown heading and the plot title. */
  title: string;
  /** One line saying which images were measured, for example "Kodak, 24 images of 768x512". */
  images: string;
  /** Replace existing report files. Default: false. */
  overwrite?: boolean;
  /** Plot size and axis ranges. Default: 720x480, ranges from the data. */
  plot?: Omit<RdPlotOptions, "title">;
}

/** The three files of one report. */
export interface RdReportPaths {
  /** The Markdown table: the path given to {@linkcode writeRdReport}. */
  markdown: string;
  /** The same data as JSON: the path with its extension replaced by `.json`. */
  json: string;
  /** The plot: the path with its extension replaced by `.svg`. */
  svg: string;
}

/** The content of the JSON file of a report. */
export interface RdReportJson {
  title: string;
  images: string;
  curves: RdCurve[];
}

/**
 * Returns the paths of the report files for `path`. Throws when `path` itself
 * ends in `.json` or `.svg`, because the table would then overwrite one of
 * the other two files.
 */
export function rdReportPaths(path: string): RdReportPaths {
  const extension = extname(path);
  if (extension === ".json" || extension === ".svg") {
    throw new Error(
      `Report path ${path} ends in ${extension}, which the JSON or plot file next to it uses. ` +
        "Pass a path ending in .md.",
    );
  }
  const stem = join(dirname(path), basename(path, extension));
  return { markdown: path, json: `${stem}.json`, svg: `${stem}.svg` };
}

/**
 * Writes a rate-distortion report: a Markdown table at `path`, a JSON file and
 * an SVG plot next to it (see {@linkcode rdReportPaths}). Each file goes to a
 * temporary file in the same folder, which is flushed and renamed, so no reader
 * sees a partial file. The table is written last. Throws `Deno.errors.AlreadyExists`
 * before writing anything when one of the files exists and `overwrite` is not
 * set. Throws on a curve without points or a non-finite bpp or PSNR.
 * Returns the paths written.
 */
export async function writeRdReport(
  path: string,
  options: RdReportOptions,
): Promise<RdReportPaths> {
  validateCurves(options.curves);
  const paths = rdReportPaths(path);
  if (!options.overwrite) {
    // NOTE: checked before writing, so a file created meanwhile by another process is replaced.
    for (const file of [paths.svg, paths.json, paths.markdown]) {
      if (await exists(file)) {
        throw new Deno.errors.AlreadyExists(
          `Report file ${file} already exists. Choose another path or set overwrite to replace it.`,
        );
      }
    }
  }

  const json: RdReportJson = {
    title: options.title,
    images: options.images,
    curves: options.curves,
  };
  await writeTextAtomically(
    paths.svg,
    renderRdPlot(options.curves, { ...options.plot, title: options.title }),
  );
  await writeTextAtomically(paths.json, JSON.stringify(json, null, 2) + "\n");
  await writeTextAtomically(paths.markdown, renderRdMarkdown(options, basename(paths.svg)));
  return paths;
}

/** Throws unless every curve has points with finite bpp >= 0 and finite PSNR. */
function validateCurves(curves: RdCurve[]): void {
  if (curves.length === 0) throw new Error("Cannot write a rate-distortion report without curves.");
  for (const curve of curves) {
    if (curve.points.length === 0) {
      throw new Error(
        `Curve "${curve.method}" has no points. Drop it or measure at least one setting.`,
      );
    }
    for (const point of curve.points) {
      if (!Number.isFinite(point.bpp) || point.bpp < 0 || !Number.isFinite(point.psnr)) {
        throw new Error(
          `Curve "${curve.method}", setting "${point.setting}": bpp ${point.bpp} and PSNR ${point.psnr} ` +
            "must be finite numbers, bpp not negative.",
        );
      }
    }
  }
}

/** Renders the Markdown table, one row per point in curve order, with a link to the plot. */
export function renderRdMarkdown(options: RdReportOptions, plotFile: string): string {
  const lines = [
    `# ${options.title}`,
    "",
    `Images: ${options.images}. bpp is file bits per pixel and PSNR is over all RGB samples, ` +
    "both averaged per image; the 5th percentile is over the per-image PSNR.",
    "",
    `![Rate-distortion plot](${plotFile})`,
    "",
    "| method | setting | bpp | mean PSNR (dB) | 5th percentile PSNR (dB) |",
    "|---|---|---:|---:|---:|",
  ];
  for (const curve of options.curves) {
    for (const point of curve.points) {
      const psnr5 = point.psnr5 === undefined ? "" : point.psnr5.toFixed(2);
      lines.push(
        `| ${escapeCell(curve.method)} | ${escapeCell(point.setting)} | ${
          point.bpp.toFixed(4)
        } | ` +
          `${point.psnr.toFixed(2)} | ${psnr5} |`,
      );
    }
  }
  return lines.join("\n") + "\n";
}

function escapeCell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

/** Writes `text` to a temporary file next to `path`, flushes it and renames it to `path`. */
async function writeTextAtomically(path: string, text: string): Promise<void> {
  const temporary = join(
    dirname(path),
    `.${basename(path)}.${crypto.randomUUID().slice(0, 8)}.tmp`,
  );
  const bytes = new TextEncoder().encode(text);
  let file: Deno.FsFile | undefined = await Deno.open(temporary, { write: true, createNew: true });
  try {
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.syncData();
    file.close();
    file = undefined;
    await Deno.rename(temporary, path);
  } catch (error) {
    file?.close();
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
