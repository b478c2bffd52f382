// Rate-distortion of rapid-inr on Kodak, next to the published COIN curve and
// JPEG and WebP on the same images.
//
//   DENO_WEBGPU_BACKEND=vulkan deno run -A bench/kodak_inr.ts \
//     --dir ../shared/data/kodak24 --out /tmp/kodak_inr.md
//
// The fit works on square images, so every image is cut into square tiles of
// --tile pixels (256 by default: 3 x 2 tiles of a 768x512 image) and each tile
// gets its own SIREN. All tiles of all images are fitted together in batches,
// as `encode` does. For each SIREN shape of --archs and each bit width of
// --bits, the tiles are pruned and fine-tuned through --sparsities as
// `compress --rd-report` does (first layer at 12 bits), and every step is one
// point:
// - bpp: the bytes of the whole .rinr file holding every tile (header, labels,
//   ranges and rANS-coded codes) times 8, over all pixels. For images of equal
//   size, as in Kodak, this is the per-image mean that COIN reports.
// - PSNR: per image, from the mean squared error over its tiles, then the mean
//   over images.
// The fp32 fit of each shape is kept next to the report as FILE-LxW.rinr and
// reused by a later run with the same images, tile and fit settings, so a
// sweep that fails does not lose the fit. The script prints each rapid-inr
// curve against COIN at the rates both cover.

import { parseArgs } from "@std/cli/parse-args";
import { basename, dirname, extname, join } from "@std/path";
import { decodeImage, type RgbImage } from "../src/data/image.ts";
import {
  encodeRinr,
  FormatError,
  readRinr,
  type RinrDataset,
  writeRinr,
} from "../src/format/mod.ts";
import { DataError } from "../src/data/errors.ts";
import { Gpu } from "../src/gpu/device.ts";
import { psnrOnGpu } from "../src/cli/stages.ts";
import { encodeImages } from "../src/inr/encode.ts";
import { pruneAndTune, validateSparsities } from "../src/inr/prune.ts";
import { dequantize, quantize } from "../src/inr/quantize.ts";
import { type SirenArch, sirenLayers, sirenParamCount } from "../src/inr/siren.ts";
import { codecCurves, codecSweep, createCodecCache } from "../src/report/codecs.ts";
import {
  COIN_KODAK,
  compareCurves,
  percentile,
  type RdCurve,
  type RdPoint,
  writeRdReport,
} from "../src/report/rd.ts";
import { cutTiles, imagePsnrFromTiles } from "../src/report/tiles.ts";

const HELP = `Usage: deno run -A bench/kodak_inr.ts --dir DIR --out FILE.md [options]

  --dir DIR            folder of PNG images whose sides are multiples of --tile
  --out FILE.md        report table; FILE.json, FILE.svg and the fits FILE-LxW.rinr go next to it
  --limit N            measure only the first N images in file-name order (default: all)
  --tile N             side of the square tiles in pixels (default 256)
  --archs LIST         SIREN shapes as sine layers x width, comma-separated (default 3x24)
  --iterations N       fit iterations per tile (default 2000)
  --lr X               initial fit learning rate (default 5e-4)
  --bits LIST          bit widths of every layer but the first (default 4,6,8)
  --sparsities LIST    pruning schedule (default 0,0.2,0.4)
  --tune-iterations N  fine-tuning iterations per pruning step (default 100)
  --codecs             also sweep JPEG and WebP qualities on the same images
  --max-bpp X          right end of the plot's bpp axis (default 1.5)
  --force              replace existing report files`;

const FIRST_LAYER_BITS = 12;

/** Invalid options or input files: reported without a stack trace, exit code 2. */
class InputError extends Error {}

/** The option that sets each field of a kept fit's record, for messages. */
const RECORD_OPTIONS: Record<string, string> = {
  images: "the images (--dir, --limit)",
  tile: "--tile",
  iterations: "--iterations",
  learningRate: "--lr",
  seed: "the seed",
};

interface Settings {
  dir: string;
  out: string;
  limit?: number;
  tile: number;
  archs: SirenArch[];
  iterations: number;
  learningRate: number;
  bits: number[];
  sparsities: number[];
  tuneIterations: number;
  codecs: boolean;
  maxBpp: number;
  force: boolean;
}

function parseNumbers(name: string, value: string): number[] {
  const numbers = value.split(",").map(Number);
  if (numbers.some((number) => !Number.isFinite(number))) {
    throw new InputError(`--${name} must be a comma-separated list of numbers, got ${value}.`);
  }
  return numbers;
}

function parsePositiveInteger(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) {
    throw new InputError(`--${name} must be a positive integer, got ${value}.`);
  }
  return number;
}

function parseMaxBpp(value: unknown): number {
  const maxBpp = Number(value ?? 1.5);
  if (!(maxBpp > 0)) throw new InputError(`--max-bpp must be a number > 0, got ${value}.`);
  return maxBpp;
}

function parseSparsities(value: string): number[] {
  const sparsities = parseNumbers("sparsities", value);
  try {
    validateSparsities(sparsities);
  } catch (error) {
    throw new InputError(`--sparsities ${value}: ${(error as Error).message}`);
  }
  return sparsities;
}

function parseArchs(value: string): SirenArch[] {
  return value.split(",").map((text) => {
    const match = /^(\d+)x(\d+)$/.exec(text.trim());
    if (!match || Number(match[1]) < 1 || Number(match[2]) < 1) {
      throw new InputError(
        `--archs takes shapes such as 3x24 (sine layers x width), got "${text}".`,
      );
    }
    return { sineLayers: Number(match[1]), width: Number(match[2]), w0: 30 };
  });
}

function parseSettings(): Settings | undefined {
  const args = parseArgs(Deno.args, {
    string: [
      "dir",
      "out",
      "limit",
      "tile",
      "archs",
      "iterations",
      "lr",
      "bits",
      "sparsities",
      "tune-iterations",
      "max-bpp",
    ],
    boolean: ["codecs", "force", "help"],
    unknown: (argument: string) => {
      throw new InputError(`Unknown argument ${argument}. Run with --help for the options.`);
    },
  });
  if (args.help) {
    console.log(HELP);
    return undefined;
  }
  const missing = ["dir", "out"].filter((name) => !args[name]);
  if (missing.length > 0) {
    throw new InputError(
      `Missing ${
        missing.map((name) => `--${name}`).join(" and ")
      }. Run with --help for the options.`,
    );
  }
  const learningRate = Number(args.lr ?? 5e-4);
  if (!(learningRate > 0)) throw new InputError(`--lr must be a number > 0, got ${args.lr}.`);
  const bits = parseNumbers("bits", args.bits ?? "4,6,8");
  if (bits.some((width) => !Number.isInteger(width) || width < 2 || width > 16)) {
    throw new InputError(`--bits takes integer widths from 2 to 16, got ${args.bits}.`);
  }
  return {
    dir: args.dir,
    out: args.out,
    limit: args.limit === undefined ? undefined : parsePositiveInteger("limit", args.limit, 0),
    tile: parsePositiveInteger("tile", args.tile, 256),
    archs: parseArchs(args.archs ?? "3x24"),
    iterations: parsePositiveInteger("iterations", args.iterations, 2000),
    learningRate,
    bits,
    sparsities: parseSparsities(args.sparsities ?? "0,0.2,0.4"),
    tuneIterations: parsePositiveInteger("tune-iterations", args["tune-iterations"], 100),
    codecs: args.codecs,
    maxBpp: parseMaxBpp(args["max-bpp"]),
    force: args.force,
  };
}

async function loadImages(
  dir: string,
  limit: number | undefined,
): Promise<{ names: string[]; images: RgbImage[] }> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && /\.png$/i.test(entry.name)) names.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory)) {
      throw error;
    }
    throw new InputError(`--dir ${dir} is not a folder. Pass the folder of the Kodak PNGs.`);
  }
  names.sort();
  if (limit !== undefined) names.splice(limit);
  if (names.length === 0) {
    throw new InputError(
      `--dir ${dir} contains no PNG files. Pass the folder of the Kodak PNGs (kodim01.png to kodim24.png).`,
    );
  }
  const images: RgbImage[] = [];
  for (const name of names) {
    images.push(await decodeImage(await Deno.readFile(join(dir, name)), name));
  }
  return { names, images };
}

function archName(arch: SirenArch): string {
  return `${arch.sineLayers}x${arch.width}`;
}

function mean(values: readonly number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / values.length;
}

/** Returns the fp32 fit of one shape: read from `path` when it matches, else fitted and written there. */
async function fitTiles(
  gpu: Gpu,
  path: string,
  data: { tiles: Uint8Array; count: number; tile: number; names: string[] },
  arch: SirenArch,
  settings: Settings,
): Promise<Float32Array> {
  const record = {
    images: data.names.join(","),
    tile: data.tile,
    iterations: settings.iterations,
    learningRate: settings.learningRate,
    seed: 0,
  };
  const found = await Deno.stat(path).then(() => true, (error) => {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  });
  if (found) {
    const file = await readRinr(path);
    const stored = (file.encode ?? {}) as Record<string, unknown>;
    const differing = Object.entries(record)
      .filter(([key, value]) => stored[key] !== value)
      .map(([key]) => RECORD_OPTIONS[key]);
    if (JSON.stringify(file.arch) !== JSON.stringify(arch)) differing.push("SIREN shape");
    if (!(file.weights instanceof Float32Array)) differing.push("fp32 weights");
    if (differing.length > 0 || !(file.weights instanceof Float32Array)) {
      throw new InputError(
        `${path} contains a fit with other settings (${
          differing.join(", ")
        }). Remove it or choose another --out.`,
      );
    }
    console.log(`${archName(arch)}: reusing the fit in ${path}.`);
    return file.weights;
  }
  let lastPrint = 0;
  const result = await encodeImages(
    gpu,
    { images: data.tiles, count: data.count, side: data.tile },
    {
      arch,
      iterations: settings.iterations,
      learningRate: settings.learningRate,
      seed: 0,
      onProgress: (p) => {
        if (p.seconds - lastPrint < 60 && p.iteration < p.iterations) return;
        lastPrint = p.seconds;
        console.log(
          `${
            archName(arch)
          }: fit ${p.imagesDone}/${p.imageCount} tiles, iteration ${p.iteration}/${p.iterations}, ` +
            `${p.meanPsnr.toFixed(2)} dB, ${p.seconds.toFixed(0)} s`,
        );
      },
    },
  );
  await writeRinr(path, {
    arch,
    resolution: data.tile,
    classNames: ["tile"],
    labels: new Uint32Array(data.count),
    psnr: result.psnr,
    weights: result.weights,
    source: settings.dir,
    encode: record,
  }, { overwrite: true });
  return result.weights;
}

async function main(): Promise<void> {
  const settings = parseSettings();
  if (!settings) return;
  const started = performance.now();
  const { names, images } = await loadImages(settings.dir, settings.limit);
  const tileSets = images.map((image, i) => cutTiles(image, settings.tile, names[i]));
  const tilesPerImage = tileSets.map((set) => set.length / (settings.tile * settings.tile * 3));
  const count = tilesPerImage.reduce((sum, n) => sum + n, 0);
  const tiles = new Uint8Array(count * settings.tile * settings.tile * 3);
  let offset = 0;
  for (const set of tileSets) {
    tiles.set(set, offset);
    offset += set.length;
  }
  const totalPixels = images.reduce((sum, image) => sum + image.width * image.height, 0);
  const extension = extname(settings.out);
  const stem = join(dirname(settings.out), basename(settings.out, extension));
  // Fail before hours of fitting rather than after them.
  const folder = await Deno.stat(dirname(settings.out) || ".").catch(() => undefined);
  if (!folder?.isDirectory) {
    throw new InputError(`The folder of --out ${settings.out} does not exist. Create it first.`);
  }
  if (!settings.force) {
    for (const path of [settings.out, `${stem}.json`, `${stem}.svg`]) {
      if (await Deno.stat(path).then(() => true, () => false)) {
        throw new InputError(
          `Report file ${path} already exists. The --force option replaces the report.`,
        );
      }
    }
  }

  const gpu = await Gpu.create();
  console.log(
    `Adapter: ${gpu.adapterName}. ${images.length} images, ${count} tiles of ${settings.tile} px.`,
  );
  const curves: RdCurve[] = [];
  const fp32Notes: string[] = [];
  try {
    for (const arch of settings.archs) {
      const q = sirenParamCount(arch);
      const weights = await fitTiles(
        gpu,
        `${stem}-${archName(arch)}.rinr`,
        { tiles, count, tile: settings.tile, names },
        arch,
        settings,
      );
      const base: RinrDataset = {
        arch,
        resolution: settings.tile,
        classNames: ["tile"],
        labels: new Uint32Array(count),
        psnr: new Float32Array(count),
        weights,
      };
      const fp32 = imagePsnrFromTiles(
        await psnrOnGpu(gpu, base, weights, { side: settings.tile, images: tiles }),
        tilesPerImage,
      );
      fp32Notes.push(`${archName(arch)} (Q = ${q} per tile): fp32 fit ${mean(fp32).toFixed(2)} dB`);
      console.log(
        `${archName(arch)}: fp32 fit, mean PSNR ${
          mean(fp32).toFixed(2)
        } dB over ${images.length} images.`,
      );
      const points: RdPoint[] = [];
      const method = `rapid-inr ${archName(arch)}`;
      for (const width of settings.bits) {
        const bits = sirenLayers(arch).map((_, l) => l === 0 ? FIRST_LAYER_BITS : width);
        const tuned = await pruneAndTune(gpu, {
          arch,
          side: settings.tile,
          images: tiles,
          weights,
          bits,
          sparsities: settings.sparsities,
          iterations: settings.tuneIterations,
        });
        for (const step of tuned.steps) {
          const quantized = quantize(arch, step.weights, { bits, mask: step.mask });
          const bytes = encodeRinr({ ...base, weights: quantized }, { entropy: "on" }).byteLength;
          const psnr = imagePsnrFromTiles(
            await psnrOnGpu(gpu, base, dequantize(quantized), {
              side: settings.tile,
              images: tiles,
            }),
            tilesPerImage,
          );
          const point = {
            method,
            setting: `${FIRST_LAYER_BITS}/${width} bits, sparsity ${step.sparsity}`,
            bpp: (8 * bytes) / totalPixels,
            psnr: mean(psnr),
            psnr5: percentile(psnr, 0.05),
          };
          points.push(point);
          console.log(
            `${method}, ${point.setting}: ${point.bpp.toFixed(4)} bpp, ${point.psnr.toFixed(2)} dB`,
          );
        }
      }
      curves.push({ method, points });
    }
  } finally {
    gpu.destroy();
  }

  for (const curve of curves) {
    const comparison = compareCurves(COIN_KODAK, curve);
    const margins = comparison.margins.map((entry) =>
      `${entry.bpp.toFixed(4)}: ${entry.margin >= 0 ? "+" : ""}${entry.margin.toFixed(2)}`
    );
    console.log(
      `${curve.method} minus COIN (dB, at its own bpp): ${margins.join(", ") || "no overlap"}`,
    );
  }
  const codecs = settings.codecs
    ? codecCurves(await codecSweep(images, { cache: createCodecCache() }), {
      suffix: ", quality sweep",
    })
    : [];
  const seconds = (performance.now() - started) / 1000;
  const paths = await writeRdReport(settings.out, {
    curves: [...curves, COIN_KODAK, ...codecs],
    title: "Rate-distortion of rapid-inr on Kodak against COIN",
    images:
      `${images.length} images from ${settings.dir} (${
        names.join(", ")
      }), cut into ${count} tiles of ` +
      `${settings.tile}x${settings.tile} px, one SIREN per tile; ${settings.iterations} fit iterations at learning rate ` +
      `${settings.learningRate}, ${settings.tuneIterations} fine-tuning iterations per pruning step; ${
        fp32Notes.join("; ")
      }`,
    overwrite: settings.force,
    plot: { bppRange: [0, settings.maxBpp] },
  });
  console.log(`${seconds.toFixed(0)} s; wrote ${paths.markdown}, ${paths.json}, ${paths.svg}`);
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    // A tile side that does not divide an image raises a RangeError. Damaged PNGs and fit files raise DataError and FormatError.
    const input = error instanceof InputError || error instanceof RangeError ||
      error instanceof DataError ||
      error instanceof FormatError;
    if (!input) throw error;
    console.error(`error: ${error.message}`);
    Deno.exit(2);
  }
}
