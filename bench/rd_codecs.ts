// JPEG and WebP rate-distortion curves on a folder of images, written as a
// report (Markdown table, JSON, SVG plot) together with the published COIN
// curve on Kodak.
//
//   deno run -A bench/rd_codecs.ts --dir KODAK_FOLDER --out /tmp/kodak_rd.md
//
// KODAK_FOLDER contains the 24 Kodak PNGs (kodim01.png to kodim24.png). Every
// PNG and JPEG file directly inside --dir is measured at full size, in
// sorted file-name order. The report contains, per codec, the points matched to
// the COIN rates (a quality per image) and a sweep over fixed qualities. The
// script prints a Markdown summary of the matched points next to COIN.

import { parseArgs } from "@std/cli/parse-args";
import { join } from "@std/path";
import { decodeImage, type RgbImage } from "../src/data/image.ts";
import {
  CODEC_LABELS,
  CODEC_NAMES,
  codecCurves,
  type CodecName,
  type CodecPoint,
  codecSweep,
  createCodecCache,
  matchRates,
} from "../src/report/codecs.ts";
import { COIN_KODAK, compareCurves, writeRdReport } from "../src/report/rd.ts";

const HELP = `Usage: deno run -A bench/rd_codecs.ts --dir DIR --out FILE.md [options]

  --dir DIR          folder of PNG or JPEG images, measured at full size
  --out FILE.md      report table; FILE.json and FILE.svg are written next to it
  --targets LIST     comma-separated target rates in bpp (default: the COIN Kodak rates)
  --qualities LIST   comma-separated qualities of the sweep (default: 5,10,...,95)
  --codecs LIST      jpeg, webp or both (default: jpeg,webp)
  --limit N          measure only the first N images (default: all)
  --max-bpp X        right end of the plot's bpp axis (default: 2)
  --force            replace existing report files`;

function parseList(name: string, value: unknown): number[] | undefined {
  if (value === undefined) return undefined;
  const numbers = String(value).split(",").map(Number);
  if (numbers.length === 0 || numbers.some((number) => !Number.isFinite(number))) {
    throw new RangeError(`--${name} must be a comma-separated list of numbers, got ${value}.`);
  }
  return numbers;
}

async function loadFolder(
  dir: string,
  limit: number | undefined,
): Promise<{ names: string[]; images: RgbImage[] }> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && /\.(png|jpe?g)$/i.test(entry.name)) names.push(entry.name);
  }
  names.sort();
  if (limit !== undefined) names.splice(limit);
  if (names.length === 0) throw new Error(`${dir} contains no PNG or JPEG files.`);
  const images: RgbImage[] = [];
  for (const name of names) {
    images.push(await decodeImage(await Deno.readFile(join(dir, name)), name));
  }
  return { names, images };
}

function describeImages(dir: string, images: RgbImage[]): string {
  const sizes = new Map<string, number>();
  for (const image of images) {
    const size = `${image.width}x${image.height}`;
    sizes.set(size, (sizes.get(size) ?? 0) + 1);
  }
  const list = [...sizes].map(([size, count]) => `${count} of ${size}`).join(", ");
  return `${images.length} images from ${dir} (${list})`;
}

/** Prints the matched points per target next to COIN, as a Markdown table. */
function printSummary(
  matched: CodecPoint[],
  codecs: readonly CodecName[],
  targets: number[],
): void {
  const header = ["target bpp", "COIN bpp", "COIN PSNR"];
  for (const codec of codecs) header.push(`${codec} q (median)`, `${codec} bpp`, `${codec} PSNR`);
  console.log(`| ${header.join(" | ")} |`);
  console.log(`|${header.map(() => "---:").join("|")}|`);
  for (const target of targets) {
    const coin = COIN_KODAK.points.find((point) => Math.abs(point.bpp - target) < 1e-9);
    const row = [String(target), coin ? coin.bpp.toFixed(4) : "", coin ? coin.psnr.toFixed(2) : ""];
    for (const codec of codecs) {
      const point = matched.find((entry) => entry.codec === codec && entry.targetBpp === target)!;
      row.push(String(point.quality), point.bpp.toFixed(4), point.psnr.toFixed(2));
    }
    console.log(`| ${row.join(" | ")} |`);
  }
}

async function main(): Promise<void> {
  const args = parseArgs(Deno.args, {
    string: ["dir", "out", "targets", "qualities", "codecs", "limit", "max-bpp"],
    boolean: ["force", "help"],
  });
  if (args.help || !args.dir || !args.out) {
    console.log(HELP);
    if (!args.help) Deno.exit(2);
    return;
  }
  const targets = parseList("targets", args.targets) ?? COIN_KODAK.points.map((point) => point.bpp);
  const qualities = parseList("qualities", args.qualities);
  const codecs = (args.codecs ? String(args.codecs).split(",") : [...CODEC_NAMES]) as CodecName[];
  const limit = args.limit === undefined ? undefined : Number(args.limit);
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    throw new RangeError(`--limit must be a positive integer, got ${args.limit}.`);
  }
  const maxBpp = Number(args["max-bpp"] ?? 2);
  if (!(maxBpp > 0)) {
    throw new RangeError(`--max-bpp must be a number > 0, got ${args["max-bpp"]}.`);
  }

  const start = performance.now();
  const { images } = await loadFolder(String(args.dir), limit);
  const cache = createCodecCache();
  const matched = await matchRates(images, { targetBpp: targets, codecs, cache });
  const swept = await codecSweep(images, { qualities, codecs, cache });
  const seconds = (performance.now() - start) / 1000;

  const curves = [
    COIN_KODAK,
    ...codecCurves(matched, { suffix: ", matched rates" }),
    ...codecCurves(swept, { suffix: ", quality sweep" }),
  ];
  const paths = await writeRdReport(String(args.out), {
    curves,
    title: "Rate-distortion: JPEG and WebP against COIN",
    images: describeImages(String(args.dir), images),
    overwrite: args.force,
    plot: { bppRange: [0, maxBpp] },
  });

  printSummary(matched, codecs, targets);
  console.log("");
  for (const codec of codecs) {
    const sweep = curves.find((curve) => curve.method === `${CODEC_LABELS[codec]}, quality sweep`)!;
    const comparison = compareCurves(sweep, COIN_KODAK);
    const margins = comparison.margins.map((entry) => `${entry.bpp}: ${entry.margin.toFixed(2)}`)
      .join(", ");
    console.log(
      `COIN minus ${codec} sweep (dB, interpolated at COIN's bpp): ${margins || "no overlap"}`,
    );
  }
  console.log(
    `\n${images.length} images, ${
      seconds.toFixed(1)
    } s of encoding; wrote ${paths.markdown}, ${paths.json}, ${paths.svg}`,
  );
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    const hint = error instanceof Deno.errors.AlreadyExists
      ? " The --force option sets overwrite."
      : "";
    console.error(`error: ${(error as Error).message}${hint}`);
    Deno.exit(1);
  }
}
