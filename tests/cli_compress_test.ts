// The compress command as users run it: pruning with a size target, plain
// rounding, the rate-distortion report and bad settings.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { join } from "@std/path";
import { spawnCli, writeStripes } from "./_cli.ts";

async function encodeStripes(dir: string): Promise<string> {
  const data = join(dir, "stripes");
  await writeStripes(data, { train: 8, test: 0, side: 8 });
  const fp32 = join(dir, "fp32.rinr");
  const encoded = await spawnCli([
    "encode",
    data,
    "-o",
    fp32,
    "--size",
    "8",
    "--iterations",
    "60",
    "--layers",
    "2",
    "--width",
    "8",
    "--quiet",
  ]);
  assertEquals(encoded.code, 0, encoded.stderr);
  return fp32;
}

Deno.test("compress meets a size target by pruning and reports its figures", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const fp32 = await encodeStripes(dir);
    const compress = async (output: string, ...flags: string[]) => {
      const result = await spawnCli([
        "compress",
        fp32,
        "-o",
        output,
        "--bits",
        "6",
        "--tune-iterations",
        "10",
        "--prune",
        "0,0.3,0.6",
        "--json",
        ...flags,
      ]);
      assertEquals(result.code, 0, result.stderr);
      return { report: JSON.parse(result.stdout), stderr: result.stderr };
    };
    const looseRun = await compress(
      join(dir, "loose.rinr"),
      "--max-psnr-drop",
      "100",
      "--verbose",
      "--tune-batch",
      "8",
    );
    const loose = looseRun.report;
    // --verbose prints one line per fine-tuning batch.
    assertEquals(
      looseRun.stderr.split("\n").filter((line) => line.includes("compress batch: images")).length,
      2,
      looseRun.stderr,
    );
    const none =
      (await compress(join(dir, "none.rinr"), "--max-psnr-drop", "0", "--prune", "0")).report;
    // A generous budget lets every image take the sparsest step; no step beyond 0 exists in the second run.
    assertEquals(loose.stepImages, [0, 0, loose.images]);
    assertEquals(none.stepImages, [none.images]);
    assert(loose.sparsity > 0.3, `pruned run sparsity ${loose.sparsity}`);
    assert(none.sparsity < 0.1, `unpruned run sparsity ${none.sparsity}`);
    assert(
      loose.storedBytes < none.storedBytes,
      `pruned ${loose.storedBytes} B, unpruned ${none.storedBytes} B`,
    );
    for (
      const key of [
        "storedBytes",
        "residentBytes",
        "residentBytesPerImage",
        "percentOfRaw",
        "meanPsnr",
        "p5Psnr",
        "bitsPerPixel",
      ]
    ) {
      assert(Number.isFinite(none[key]), `${key} is ${none[key]}`);
    }
    assertEquals(none.bitsPerPixel, (8 * none.storedBytes) / (none.images * 8 * 8));
    assertEquals(none.bitsPerLayer, [6, 6, 6]);
    // info reports the zero weights and the recorded settings.
    const info = await spawnCli(["info", join(dir, "loose.rinr"), "--json"]);
    assertEquals(info.code, 0, info.stderr);
    const summary = JSON.parse(info.stdout);
    assertEquals(summary.zeroFraction, loose.sparsity);
    assertEquals(summary.compress.sparsities, [0, 0.3, 0.6]);
    assertEquals(summary.compress.tuneIterations, 10);
    const text = await spawnCli(["info", join(dir, "loose.rinr")]);
    assertStringIncludes(
      text.stdout,
      "fine-tuned 10 iterations per step over sparsities 0, 0.3, 0.6",
    );

    // A target between the two sizes is met by pruning some images.
    const targetPercent = (100 * (loose.storedBytes + none.storedBytes) / 2) / none.rawBytes;
    const targeted = await compress(
      join(dir, "target.rinr"),
      "--target-percent",
      String(targetPercent),
    );
    assert(
      targeted.report.percentOfRaw <= targetPercent + 0.5,
      `${targeted.report.percentOfRaw}% for a ${targetPercent}% target`,
    );
    // An unreachable target is reported, and the sparsest steps are written.
    const tooSmall = await compress(join(dir, "small.rinr"), "--target-percent", "1");
    assertStringIncludes(tooSmall.stderr, "above --target-percent 1");
    assertEquals(tooSmall.report.stepImages, [0, 0, tooSmall.report.images]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compress spends a loose size target on wider layers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const fp32 = await encodeStripes(dir);
    const run = async (output: string, ...flags: string[]) => {
      const result = await spawnCli([
        "compress",
        fp32,
        "-o",
        join(dir, output),
        "--tune-iterations",
        "5",
        "--prune",
        "0",
        "--json",
        ...flags,
      ]);
      assertEquals(result.code, 0, result.stderr);
      return { report: JSON.parse(result.stdout), stderr: result.stderr };
    };
    const plain = await run("plain.rinr");
    const targeted = await run("wide.rinr", "--target-percent", "400");
    assertStringIncludes(targeted.stderr, "the tightest whose rounded file meets --target-percent");
    const widths = targeted.report.bitsPerLayer as number[];
    widths.forEach((bits, l) =>
      assert(
        bits >= plain.report.bitsPerLayer[l],
        `layer ${l}: ${widths} against ${plain.report.bitsPerLayer}`,
      )
    );
    assert(targeted.report.percentOfRaw <= 400, `${targeted.report.percentOfRaw}% of raw`);
    assert(
      targeted.report.layerToleranceDb < 0.25,
      `tolerance ${targeted.report.layerToleranceDb} dB`,
    );
    assertEquals(plain.report.layerToleranceDb, 0.25);
    const info = await spawnCli(["info", join(dir, "wide.rinr")]);
    assertStringIncludes(
      info.stdout,
      `bit widths chosen at ${targeted.report.layerToleranceDb} dB per layer`,
    );
    // Without --json the result line counts the images per step.
    const text = await spawnCli([
      "compress",
      fp32,
      "-o",
      join(dir, "text.rinr"),
      "--tune-iterations",
      "5",
      "--prune",
      "0,0.5",
    ]);
    assertEquals(text.code, 0, text.stderr);
    assertStringIncludes(text.stdout + text.stderr, "images per step ");
    assertStringIncludes(text.stdout + text.stderr, " (sparsity 0/0.5)");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compress with --tune-iterations 0 only rounds, and auto bits are reported", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const fp32 = await encodeStripes(dir);
    const result = await spawnCli([
      "compress",
      fp32,
      "-o",
      join(dir, "q.rinr"),
      "--tune-iterations",
      "0",
      "--json",
    ]);
    assertEquals(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout);
    assertEquals(report.tuneIterations, 0);
    assertEquals(report.stepImages, undefined);
    assertEquals(report.bitsPerLayer.length, 3);
    assertStringIncludes(result.stderr, "Bits per layer");
    const info = await spawnCli(["info", join(dir, "q.rinr"), "--json"]);
    assertEquals(info.code, 0, info.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compress --rd-report writes the table, JSON and plot with JPEG and WebP", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const fp32 = await encodeStripes(dir);
    const report = join(dir, "rd.md");
    const result = await spawnCli([
      "compress",
      fp32,
      "--rd-report",
      report,
      "--rd-bits",
      "4,6",
      "--rd-images",
      "4",
      "--tune-iterations",
      "5",
      "--prune",
      "0,0.5",
      "--rd-coin",
      "--json",
    ]);
    assertEquals(result.code, 0, result.stderr);
    // Only the swept images are decoded, not every encoded one.
    assertStringIncludes(result.stderr, "Loaded 4 images");
    const json = JSON.parse(await Deno.readTextFile(join(dir, "rd.json")));
    const methods = json.curves.map((curve: { method: string }) => curve.method);
    assert(methods.includes("rapid-inr, 4-bit layers"), methods.join("; "));
    assert(methods.includes("rapid-inr, 6-bit layers"), methods.join("; "));
    assert(methods.some((m: string) => m.startsWith("JPEG")), methods.join("; "));
    assert(methods.some((m: string) => m.startsWith("WebP")), methods.join("; "));
    assert(methods.includes("COIN (published)"));
    // Every matched-rate point kept is within 10% of its target; 8x8 JPEG files are far above these rates.
    for (
      const curve of json.curves.filter((c: { method: string }) =>
        c.method.endsWith("matched rates")
      )
    ) {
      for (const point of curve.points) {
        const target = Number(/target ([0-9.e-]+) bpp/.exec(point.setting)![1]);
        assert(
          point.bpp <= target * 1.1,
          `${curve.method}: ${point.bpp} bpp for a ${target} bpp target`,
        );
      }
    }
    assert(!methods.includes("JPEG (MozJPEG), matched rates"), methods.join("; "));
    assertStringIncludes(await Deno.readTextFile(report), "are left out (JPEG (MozJPEG)");
    const inr = json.curves[0];
    assertEquals(inr.points.length, 2);
    for (const point of inr.points) assert(point.bpp > 0 && Number.isFinite(point.psnr));
    const svg = await Deno.readTextFile(join(dir, "rd.svg"));
    assert(svg.startsWith("<svg") || svg.startsWith("<?xml"), svg.slice(0, 40));
    assertStringIncludes(await Deno.readTextFile(report), "rapid-inr, 6-bit layers");
    // Existing report files are kept without --force, and the compression does not start.
    const again = await spawnCli([
      "compress",
      fp32,
      "-o",
      join(dir, "never.rinr"),
      "--rd-report",
      report,
      "--rd-images",
      "2",
      "--tune-iterations",
      "1",
      "--prune",
      "0",
    ]);
    assertEquals(again.code, 2, again.stderr);
    assertStringIncludes(again.stderr, `Output ${report} already exists`);
    assert(
      !(await Deno.lstat(join(dir, "never.rinr")).then(() => true, () => false)),
      "no compressed file was written",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compress rejects bad settings with exit code 2", async () => {
  const cases: [string[], string][] = [
    [["--bits", "0"], "--bits must be auto or integers in 1..16"],
    [["--bits", "8,x"], "--bits must be auto or integers in 1..16"],
    [["--prune", "0.5,0.2"], "--prune must not decrease"],
    [["--prune", "0,1"], "--prune must be fractions in [0, 1)"],
    [["--max-psnr-drop=-1"], "--max-psnr-drop must be at least 0"],
    [["--rd-report", "x.md", "--rd-bits", "4,40"], "--rd-bits must be integers in 1..16"],
  ];
  const dir = await Deno.makeTempDir();
  try {
    const fp32 = await encodeStripes(dir);
    for (const [flags, message] of cases) {
      const result = await spawnCli(["compress", fp32, "-o", join(dir, "out.rinr"), ...flags]);
      assertEquals(result.code, 2, `${flags.join(" ")}: ${result.stderr}`);
      assertStringIncludes(result.stderr, message);
    }
    // An existing output or a leftover checkpoint fails before the source images are read.
    await Deno.writeTextFile(join(dir, "existing.rinr"), "");
    const overwrite = await spawnCli([
      "compress",
      fp32,
      "-o",
      join(dir, "existing.rinr"),
      "--source",
      join(dir, "missing-folder"),
    ]);
    assertEquals(overwrite.code, 2, overwrite.stderr);
    assertStringIncludes(overwrite.stderr, "already exists");
    await Deno.writeTextFile(join(dir, "free.rinr.partial"), "");
    const stale = await spawnCli([
      "compress",
      fp32,
      "-o",
      join(dir, "free.rinr"),
      "--source",
      join(dir, "missing-folder"),
    ]);
    assertEquals(stale.code, 2, stale.stderr);
    assertStringIncludes(stale.stderr, "Pass --resume to continue it");
    const missing = await spawnCli(["compress", fp32]);
    assertEquals(missing.code, 2);
    assertStringIncludes(missing.stderr, "--rd-report");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
