// Rate-distortion report machinery: PSNR and averaging, matched-rate JPEG and
// WebP encoding on small synthetic images, curve comparison, the report
// files (Markdown, JSON, SVG), and the square tiles of the Kodak bench.

import { assert, assertAlmostEquals, assertEquals, assertRejects, assertStringIncludes, assertThrows } from "@std/assert";
import { join } from "@std/path";
import type { RgbImage } from "../src/data/image.ts";
import {
  codecCurves,
  type CodecName,
  codecSweep,
  createCodecCache,
  decodeEncoded,
  encodeImage,
  matchRates,
  measureCodec,
  QUALITY_RANGE,
} from "../src/report/codecs.ts";
import { renderRdPlot } from "../src/report/plot.ts";
import {
  COIN_KODAK,
  compareCurves,
  percentile,
  psnr,
  type RdCurve,
  type RdReportJson,
  rdReportPaths,
  summarizeImages,
  writeRdReport,
} from "../src/report/rd.ts";
import { cutTiles, imagePsnrFromTiles, tileGrid } from "../src/report/tiles.ts";
import { seededRandom } from "./_util.ts";

/** Makes a smooth color gradient with a few waves plus uniform noise of +-noise levels. */
function syntheticImage(width: number, height: number, seed: number, noise = 12): RgbImage {
  const random = seededRandom(seed);
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const smooth = 128 + 60 * Math.sin((x * (c + 1)) / 11 + y / 9 + seed) +
          40 * (x / width - y / height);
        const value = smooth + (random() * 2 - 1) * noise;
        rgb[(y * width + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(value)));
      }
    }
  }
  return { width, height, rgb };
}

const IMAGES = [syntheticImage(64, 48, 1), syntheticImage(64, 48, 2), syntheticImage(48, 64, 3)];

/** Relative bpp tolerance of a matched rate where the target lies inside the codec's range on these images. */
const MATCH_TOLERANCE = 0.05;

// ---------------------------------------------------------------------------
// PSNR and averaging

Deno.test("psnr matches hand computation", () => {
  // Differences 2, 0, -3, 0: MSE = 13 / 4 = 3.25, PSNR = 10 * log10(65025 / 3.25).
  const value = psnr(new Uint8Array([12, 20, 27, 40]), new Uint8Array([10, 20, 30, 40]));
  assertAlmostEquals(value, 43.01196999889036, 1e-9);
});

Deno.test("psnr of identical images is infinite", () => {
  assertEquals(psnr(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3])), Infinity);
});

Deno.test("psnr rejects different sizes", () => {
  assertThrows(() => psnr(new Uint8Array(3), new Uint8Array(6)), Error, "3 and 6 samples");
});

Deno.test("percentile interpolates linearly", () => {
  // Position 0.05 * (5 - 1) = 0.2 lies between the sorted values 10 and 20.
  assertAlmostEquals(percentile([50, 10, 40, 20, 30], 0.05), 12, 1e-12);
  assertEquals(percentile([50, 10, 40, 20, 30], 1), 50);
  assertEquals(percentile([7], 0.05), 7);
  // Exact fits have infinite PSNR: they rank last and never make the result NaN.
  assertEquals(percentile([Infinity, 20, Infinity], 1), Infinity);
  assertEquals(percentile([Infinity, 20, Infinity], 0.75), Infinity);
  assertEquals(percentile(Float32Array.of(Infinity, 20, 10), 0.25), 15);
});

Deno.test("summarizeImages averages per image", () => {
  const summary = summarizeImages([{ bpp: 0.5, psnr: 30 }, { bpp: 1.5, psnr: 20 }]);
  assertEquals(summary.bpp, 1);
  assertEquals(summary.psnr, 25);
  assertAlmostEquals(summary.psnr5, 20.5, 1e-12);
});

// ---------------------------------------------------------------------------
// Codecs

Deno.test("encodeImage writes real JPEG and WebP files", async () => {
  const jpeg = await encodeImage(IMAGES[0], { codec: "jpeg", quality: 75 });
  assertEquals([...jpeg.subarray(0, 3)], [0xff, 0xd8, 0xff]);
  const webp = await encodeImage(IMAGES[0], { codec: "webp", quality: 75 });
  assertEquals(new TextDecoder().decode(webp.subarray(0, 4)), "RIFF");
  assertEquals(new TextDecoder().decode(webp.subarray(8, 12)), "WEBP");
});

Deno.test("decodeEncoded round trip is close", async () => {
  for (const codec of ["jpeg", "webp"] as CodecName[]) {
    const image = IMAGES[2];
    const decoded = await decodeEncoded(await encodeImage(image, { codec, quality: 90 }), codec);
    assertEquals(decoded.width, 48, codec);
    assertEquals(decoded.height, 64, codec);
    const value = psnr(decoded.rgb, image.rgb);
    assert(value > 28, `${codec} at quality 90: PSNR ${value} dB`);
    assert(value < 60, `${codec} at quality 90 looks lossless: PSNR ${value} dB`);
  }
});

Deno.test("measureCodec counts file bits per pixel", async () => {
  const image = IMAGES[1];
  const bytes = await encodeImage(image, { codec: "webp", quality: 40 });
  const measured = await measureCodec(image, { codec: "webp", quality: 40 });
  assertEquals(measured.bytes, bytes.length);
  assertEquals(measured.bpp, (bytes.length * 8) / (64 * 48));
});

Deno.test("codecSweep rises with quality", async () => {
  const points = await codecSweep(IMAGES, { qualities: [10, 50, 90] });
  assertEquals(points.map((point) => `${point.codec}:${point.quality}`), [
    "jpeg:10",
    "jpeg:50",
    "jpeg:90",
    "webp:10",
    "webp:50",
    "webp:90",
  ]);
  for (const codec of ["jpeg", "webp"]) {
    const [low, middle, high] = points.filter((point) => point.codec === codec);
    assert(
      low.bpp < middle.bpp && middle.bpp < high.bpp,
      `${codec} bpp ${low.bpp}, ${middle.bpp}, ${high.bpp}`,
    );
    assert(
      low.psnr < middle.psnr && middle.psnr < high.psnr,
      `${codec} PSNR ${low.psnr}, ${high.psnr}`,
    );
    assert(
      high.psnr5 <= high.psnr,
      `${codec} 5th percentile ${high.psnr5} above mean ${high.psnr}`,
    );
  }
});

Deno.test("matchRates per image picks closest quality", async () => {
  const cache = createCodecCache();
  // Each target lies inside the codec's range on these images, well away from the ends.
  const targets: Record<CodecName, number[]> = { jpeg: [1.6, 2.0], webp: [1.0, 1.5] };
  for (const codec of ["jpeg", "webp"] as CodecName[]) {
    const points = await matchRates(IMAGES, { targetBpp: targets[codec], codecs: [codec], cache });
    assertEquals(points.length, 2);
    for (const point of points) {
      const target = point.targetBpp!;
      assertEquals(point.match, "image");
      assert(
        Math.abs(point.bpp - target) <= MATCH_TOLERANCE * target,
        `${codec} target ${target}: mean bpp ${point.bpp}, qualities ${point.qualities}`,
      );
      // Exhaustive check on the first image: no other quality lies closer to the target.
      const sweep = await codecSweep([IMAGES[0]], {
        codecs: [codec],
        qualities: qualityRange(codec),
        cache,
      });
      const best = Math.min(...sweep.map((entry) => Math.abs(entry.bpp - target)));
      const chosen = sweep.find((entry) => entry.quality === point.qualities[0])!;
      assertAlmostEquals(Math.abs(chosen.bpp - target), best, 1e-12, `${codec} target ${target}`);
    }
  }
});

Deno.test("matchRates per set uses one quality", async () => {
  const cache = createCodecCache();
  const [point] = await matchRates(IMAGES, {
    targetBpp: [1.2],
    codecs: ["webp"],
    match: "set",
    cache,
  });
  assertEquals(new Set(point.qualities).size, 1);
  assertEquals(point.quality, point.qualities[0]);
  const sweep = await codecSweep(IMAGES, {
    codecs: ["webp"],
    qualities: qualityRange("webp"),
    cache,
  });
  const best = Math.min(...sweep.map((entry) => Math.abs(entry.bpp - 1.2)));
  assertAlmostEquals(Math.abs(point.bpp - 1.2), best, 1e-12);
  assert(Math.abs(point.bpp - 1.2) <= MATCH_TOLERANCE * 1.2, `mean bpp ${point.bpp}`);
});

Deno.test("matchRates clamps unreachable targets", async () => {
  const points = await matchRates([IMAGES[0]], { targetBpp: [0.01, 100], codecs: ["jpeg"] });
  assertEquals(points[0].quality, QUALITY_RANGE.jpeg[0]);
  assert(points[0].bpp > 0.01);
  assertEquals(points[1].quality, QUALITY_RANGE.jpeg[1]);
  assert(points[1].bpp < 100);
});

Deno.test("codecCurves names settings", async () => {
  const points = await matchRates(IMAGES, { targetBpp: [1.5], codecs: ["webp"] });
  const [curve] = codecCurves(points, { suffix: ", matched" });
  assertEquals(curve.method, "WebP (libwebp), matched");
  assert(curve.points[0].setting.startsWith("target 1.5 bpp, q="), curve.points[0].setting);
  assertEquals(curve.points[0].psnr5, points[0].psnr5);
});

Deno.test("codec inputs are validated", async () => {
  const broken = { width: 4, height: 4, rgb: new Uint8Array(10) };
  await assertRejects(() => encodeImage(broken, { codec: "jpeg", quality: 50 }), Error, "needs 48");
  await assertRejects(() => encodeImage(IMAGES[0], { codec: "jpeg", quality: 0 }), Error, "1..100");
  await assertRejects(
    () => encodeImage(IMAGES[0], { codec: "webp", quality: 50.5 }),
    Error,
    "integer",
  );
  await assertRejects(() => matchRates(IMAGES, { targetBpp: [] }), Error, "bpp values > 0");
  await assertRejects(() => matchRates([], { targetBpp: [1] }), Error, "No images");
  await assertRejects(
    () => matchRates(IMAGES, { targetBpp: [1], match: "each" as "image" }),
    Error,
    "Match mode",
  );
  await assertRejects(
    () => matchRates(IMAGES, { targetBpp: [1], codecs: ["png" as CodecName] }),
    Error,
    "not supported",
  );
  const wide = { width: 16384, height: 1, rgb: new Uint8Array(16384 * 3) };
  await assertRejects(() => encodeImage(wide, { codec: "webp", quality: 50 }), Error, "16383");
});

function qualityRange(codec: CodecName): number[] {
  const [low, high] = QUALITY_RANGE[codec];
  return Array.from({ length: high - low + 1 }, (_, i) => low + i);
}

// ---------------------------------------------------------------------------
// Curves

function curve(method: string, points: [number, number][]): RdCurve {
  return {
    method,
    points: points.map(([bpp, psnr]) => ({ method, setting: `${bpp}`, bpp, psnr })),
  };
}

Deno.test("compareCurves interpolates within span", () => {
  const reference = curve("a", [[0.5, 26], [0.1, 20], [0.3, 24]]);
  const candidate = curve("b", [[0.05, 30], [0.2, 23], [0.4, 24.5], [0.5, 27], [0.6, 30]]);
  const comparison = compareCurves(reference, candidate);
  assertEquals(comparison.margins.map((entry) => entry.bpp), [0.2, 0.4, 0.5]);
  assertAlmostEquals(comparison.margins[0].referencePsnr, 22, 1e-12);
  assertAlmostEquals(comparison.margins[0].margin, 1, 1e-12);
  assertAlmostEquals(comparison.margins[1].margin, -0.5, 1e-12);
  assertEquals(comparison.margins[2].margin, 1);
  assertAlmostEquals(comparison.minMargin!, -0.5, 1e-12);
  assertAlmostEquals(comparison.maxMargin!, 1, 1e-12);
  assertEquals(comparison.outside.map((point) => point.bpp), [0.05, 0.6]);
});

Deno.test("compareCurves averages equal rates", () => {
  const reference = curve("a", [[0.1, 20], [0.1, 22], [0.3, 25]]);
  const comparison = compareCurves(reference, curve("b", [[0.1, 21], [0.2, 23]]));
  assertEquals(comparison.margins[0].margin, 0);
  assertAlmostEquals(comparison.margins[1].referencePsnr, 23, 1e-12);
});

Deno.test("compareCurves without overlap", () => {
  const comparison = compareCurves(curve("a", [[1, 30], [2, 33]]), curve("b", [[0.5, 31]]));
  assertEquals(comparison.margins, []);
  assertEquals(comparison.minMargin, undefined);
  assertEquals(comparison.outside.length, 1);
});

Deno.test("COIN Kodak curve holds published points", () => {
  // Rounded as usually quoted: PSNR in dB at bpp.
  const quoted = [[0.0368, 22.41], [0.074, 23.21], [0.160, 24.64], [0.307, 26.41], [0.611, 28.41], [
    1.209,
    30.64,
  ]];
  assertEquals(COIN_KODAK.points.length, quoted.length);
  COIN_KODAK.points.forEach((point, i) => {
    assertAlmostEquals(point.bpp, quoted[i][0], 0.0005, `point ${i} bpp`);
    assertAlmostEquals(point.psnr, quoted[i][1], 0.006, `point ${i} PSNR`);
  });
});

// ---------------------------------------------------------------------------
// Report files

const CURVES: RdCurve[] = [
  curve("R&D <codec>", [[0.5, 28], [0.2, 24], [1, 31]]),
  { ...COIN_KODAK },
  {
    method: "single",
    points: [{ method: "single", setting: "8 bits", bpp: 0.3, psnr: 25, psnr5: 21.5 }],
  },
];

Deno.test("rdReportPaths replaces extension", () => {
  assertEquals(rdReportPaths("out/kodak.md"), {
    markdown: "out/kodak.md",
    json: "out/kodak.json",
    svg: "out/kodak.svg",
  });
  assertEquals(rdReportPaths("report").json, "report.json");
  assertThrows(() => rdReportPaths("out/kodak.json"), Error, "ending in .md");
});

Deno.test("writeRdReport writes three files", async () => {
  const folder = await Deno.makeTempDir();
  try {
    const path = join(folder, "rd.md");
    const paths = await writeRdReport(path, {
      curves: CURVES,
      title: "Test report",
      images: "3 synthetic images",
    });
    const names = [];
    for await (const entry of Deno.readDir(folder)) names.push(entry.name);
    assertEquals(names.sort(), ["rd.json", "rd.md", "rd.svg"]);

    const json: RdReportJson = JSON.parse(await Deno.readTextFile(paths.json));
    assertEquals(json.title, "Test report");
    assertEquals(json.images, "3 synthetic images");
    assertEquals(json.curves, CURVES);

    const markdown = await Deno.readTextFile(paths.markdown);
    const rows = markdown.split("\n").filter((line) =>
      line.startsWith("| ") && !line.startsWith("| method")
    );
    assertEquals(rows.length, 3 + COIN_KODAK.points.length + 1);
    assert(markdown.includes("![Rate-distortion plot](rd.svg)"));
    assert(markdown.includes("| single | 8 bits | 0.3000 | 25.00 | 21.50 |"), markdown);
    assert(markdown.includes("| COIN (published) | published | 0.6109 | 28.41 |  |"), markdown);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("writeRdReport keeps existing files", async () => {
  const folder = await Deno.makeTempDir();
  try {
    const path = join(folder, "rd.md");
    await Deno.writeTextFile(join(folder, "rd.svg"), "old");
    await assertRejects(
      () => writeRdReport(path, { curves: CURVES, title: "t", images: "i" }),
      Deno.errors.AlreadyExists,
      "rd.svg already exists",
    );
    assertEquals(await Deno.readTextFile(join(folder, "rd.svg")), "old");
    await assertRejects(() => Deno.stat(path), Deno.errors.NotFound);

    await writeRdReport(path, { curves: CURVES, title: "t", images: "i", overwrite: true });
    assert((await Deno.readTextFile(join(folder, "rd.svg"))).startsWith("<svg"));
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("writeRdReport leaves no temporary file on failure", async () => {
  const folder = await Deno.makeTempDir();
  try {
    // A folder at the table's path makes the final rename fail.
    await Deno.mkdir(join(folder, "rd.md"));
    await assertRejects(() =>
      writeRdReport(join(folder, "rd.md"), {
        curves: CURVES,
        title: "t",
        images: "i",
        overwrite: true,
      })
    );
    const names = [];
    for await (const entry of Deno.readDir(folder)) names.push(entry.name);
    assertEquals(names.filter((name) => name.endsWith(".tmp")), []);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("writeRdReport rejects invalid curves", async () => {
  const empty = { method: "empty", points: [] };
  await assertRejects(
    () => writeRdReport("unused.md", { curves: [empty], title: "t", images: "i" }),
    Error,
    "no points",
  );
  const infinite = curve("lossless", [[1, Infinity]]);
  await assertRejects(
    () => writeRdReport("unused.md", { curves: [infinite], title: "t", images: "i" }),
    Error,
    "must be finite",
  );
  await assertRejects(
    () => writeRdReport("unused.md", { curves: [], title: "t", images: "i" }),
    Error,
    "without curves",
  );
});

Deno.test("renderRdPlot is well-formed SVG", () => {
  const svg = renderRdPlot(CURVES, { title: "Kodak & more" });
  assert(svg.startsWith("<svg "), svg.slice(0, 40));
  assert(svg.trimEnd().endsWith("</svg>"));
  assertEquals(count(svg, "<svg"), 1);
  assertEquals(count(svg, "<polyline"), CURVES.length);
  assertEquals(count(svg, "<text"), count(svg, "</text>"));
  assert(svg.includes("R&amp;D &lt;codec&gt;"), "escaped legend entry");
  assert(svg.includes("Kodak &amp; more"), "escaped title");
  assert(!/&(?!amp;|lt;|gt;|quot;)/.test(svg), "unescaped ampersand");
  assert(svg.includes("Rate (bits per pixel)"));
  assert(svg.includes("PSNR (dB)"));
  // One marker per point: 3 + 6 + 1 in the plot and one per legend entry.
  const markers = count(svg, "<circle") + count(svg, "<rect x=") + count(svg, "<polygon");
  const frames = 5; // the background, two clip regions, plot frame and legend box are <rect> too
  assertEquals(markers - frames, 3 + COIN_KODAK.points.length + 1 + CURVES.length);
});

Deno.test("renderRdPlot uses given ranges", () => {
  const svg = renderRdPlot(CURVES, { bppRange: [0, 2], psnrRange: [20, 35] });
  assert(svg.includes(">2.0</text>"), "x tick at 2.0");
  assert(svg.includes(">20</text>"), "y tick at 20");
  assert(svg.includes(">34</text>"), "y tick at 34");
  assertThrows(() => renderRdPlot(CURVES, { bppRange: [1, 1] }), Error, "min < max");
});

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

Deno.test("cutTiles orders tiles row by row", () => {
  const width = 6;
  const height = 4;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = i % 251;
  const tiles = cutTiles({ width, height, rgb }, 2, "grid.png");
  assertEquals(tileGrid({ width, height }, 2, "grid.png"), { columns: 3, rows: 2 });
  assertEquals(tiles.length, rgb.length);
  // Tile t starts at column 2 (t % 3) and row 2 floor(t / 3), and spans two of each.
  for (let t = 0; t < 6; t++) {
    for (let y = 0; y < 2; y++) {
      for (let x = 0; x < 2; x++) {
        for (let c = 0; c < 3; c++) {
          const source = (((2 * Math.floor(t / 3) + y) * width + 2 * (t % 3) + x) * 3) + c;
          assertEquals(tiles[((t * 2 + y) * 2 + x) * 3 + c], rgb[source]);
        }
      }
    }
  }
  const error = assertThrows(
    () => cutTiles({ width: 768, height: 512, rgb: new Uint8Array(0) }, 300, "kodim01.png"),
    RangeError,
  );
  assertStringIncludes(error.message, "kodim01.png");
  assertStringIncludes(error.message, "768x512");
});

Deno.test("imagePsnrFromTiles matches whole-image PSNR", () => {
  const random = seededRandom(7);
  const whole = syntheticImage(8, 4, 3);
  const noisy = Uint8Array.from(
    whole.rgb,
    (v) => Math.max(0, Math.min(255, v + Math.round(20 * (random() - 0.5)))),
  );
  const a = cutTiles(whole, 4, "a");
  const b = cutTiles({ ...whole, rgb: noisy }, 4, "b");
  const tilePsnr = [0, 1].map((t) =>
    psnr(b.subarray(t * 48, (t + 1) * 48), a.subarray(t * 48, (t + 1) * 48))
  );
  // Three identical images of two tiles each, plus one exact image of one tile.
  const images = imagePsnrFromTiles([...tilePsnr, ...tilePsnr, ...tilePsnr, Infinity], [
    2,
    2,
    2,
    1,
  ]);
  for (const value of images.slice(0, 3)) assertAlmostEquals(value, psnr(noisy, whole.rgb), 1e-9);
  assertEquals(images[3], Infinity);
  assertThrows(() => imagePsnrFromTiles(tilePsnr, [3]), RangeError, "3 tiles");
});
