// The Kodak bench (bench/kodak_inr.ts) run as a user runs it, on two small
// synthetic non-square PNGs: report files, the kept fit and its reuse, and
// input errors that must stop it before any fitting.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { join } from "@std/path";
import { encodePng } from "../src/data/mod.ts";
import { readRinr } from "../src/format/mod.ts";
import { type CliResult, spawnScript } from "./_cli.ts";

const BENCH = new URL("../bench/kodak_inr.ts", import.meta.url).pathname;

function runBench(args: string[]): Promise<CliResult> {
  return spawnScript(BENCH, args);
}

/** Writes two 32x16 gradient PNGs, each two 16 px tiles wide. */
async function writeImages(dir: string): Promise<void> {
  for (const [n, name] of ["a.png", "b.png"].entries()) {
    const rgb = new Uint8Array(32 * 16 * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = (i * (n + 3)) % 256;
    await Deno.writeFile(join(dir, name), await encodePng({ width: 32, height: 16, rgb }));
  }
}

const TINY = [
  "--tile",
  "16",
  "--archs",
  "2x8",
  "--iterations",
  "20",
  "--bits",
  "6",
  "--sparsities",
  "0,0.5",
  "--tune-iterations",
  "5",
];

Deno.test("kodak bench writes and reuses", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeImages(dir);
    const out = join(dir, "r.md");
    const first = await runBench(["--dir", dir, "--out", out, ...TINY]);
    assertEquals(first.code, 0, first.stderr);
    assertStringIncludes(first.stdout, "2 images, 4 tiles of 16 px");
    const report = JSON.parse(await Deno.readTextFile(join(dir, "r.json")));
    const inr = report.curves.find((curve: { method: string }) => curve.method === "rapid-inr 2x8");
    assertEquals(inr.points.length, 2);
    for (const point of inr.points) {
      assert(point.bpp > 0, JSON.stringify(point));
      assert(Number.isFinite(point.psnr), JSON.stringify(point));
    }
    assert((await Deno.stat(join(dir, "r.svg"))).isFile);
    const fit = await readRinr(join(dir, "r-2x8.rinr"));
    assertEquals(fit.labels.length, 4);
    assertEquals(fit.resolution, 16);

    const again = await runBench(["--dir", dir, "--out", out, ...TINY]);
    assertEquals(again.code, 2, again.stderr);
    assertStringIncludes(again.stderr, "already exists");
    const reused = await runBench(["--dir", dir, "--out", out, ...TINY, "--force"]);
    assertEquals(reused.code, 0, reused.stderr);
    assertStringIncludes(reused.stdout, "reusing the fit");
    const other = await runBench(["--dir", dir, "--out", out, ...TINY, "--force", "--lr", "1e-3"]);
    assertEquals(other.code, 2, other.stderr);
    assertStringIncludes(other.stderr, "other settings (--lr)");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kodak bench rejects bad input early", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeImages(dir);
    const out = join(dir, "r.md");
    const cases: [string[], string][] = [
      [["--tile", "12"], "a.png is 32x16"],
      [["--sparsities", "0,2"], "--sparsities 0,2"],
      [["--archs", "3y24"], "--archs"],
      [["--bogus", "1"], "Unknown argument --bogus"],
    ];
    for (const [extra, message] of cases) {
      const result = await runBench(["--dir", dir, "--out", out, ...TINY, ...extra]);
      assertEquals(result.code, 2, `${extra.join(" ")}: ${result.stderr}`);
      assertStringIncludes(result.stderr, message);
    }
    const noFolder = await runBench(["--dir", dir, "--out", join(dir, "missing", "r.md"), ...TINY]);
    assertEquals(noFolder.code, 2, noFolder.stderr);
    assertStringIncludes(noFolder.stderr, "does not exist");
    // None of these fitted anything, so no fit file was kept.
    assertEquals((await Array.fromAsync(Deno.readDir(dir))).map((entry) => entry.name).sort(), [
      "a.png",
      "b.png",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
