// The command-line interface as a user meets it: what --verbose and --quiet
// print, the seed in train's outputs, and outputs that exist without --force
// failing before any data is loaded.

import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { join } from "@std/path";
import { decodeSafetensors } from "../src/format/mod.ts";
import { spawnCli, writeStripes } from "./_cli.ts";

const dir = await Deno.makeTempDir({ prefix: "rapid-inr-interface-" });
const data = join(dir, "stripes");
// 2 classes: 4 training and 2 test images each, 8x8 px.
await writeStripes(data, { train: 4, test: 2 });

const ENCODE_TINY = ["--size", "8", "--layers", "2", "--width", "8", "--iterations", "50", "--encode-batch", "3"];
const TRAIN_TINY = ["--input", "raw", "--data", data, "--epochs", "2", "--batch", "4", "--resnet-width", "2"];

function linesStarting(text: string, prefix: string): string[] {
  return text.split("\n").filter((line) => line.startsWith(prefix));
}

// Written by the first test and read by the decode tests.
const encoded = join(dir, "encoded.rinr");

Deno.test("verbose encode prints a line per batch", async () => {
  const verbose = await spawnCli(["encode", data, "-o", encoded, ...ENCODE_TINY, "--verbose"]);
  assertEquals(verbose.code, 0, verbose.stderr);
  const lines = linesStarting(verbose.stderr, "encode batch: ");
  assertEquals(lines.length, 3, verbose.stderr);
  const checkpoint = `${encoded}.partial`;
  for (const [k, range] of ["1-3", "4-6", "7-8"].entries()) {
    assertMatch(
      lines[k],
      new RegExp(`^encode batch: images ${range} of 8, mean PSNR [0-9.]+ dB, min [0-9.]+ dB, [0-9.]+ s; saved to `),
    );
    assert(lines[k].endsWith(checkpoint), lines[k]);
  }

  const normal = await spawnCli(["encode", data, "-o", join(dir, "normal.rinr"), ...ENCODE_TINY]);
  assertEquals(normal.code, 0, normal.stderr);
  assertEquals(linesStarting(normal.stderr, "encode batch: "), [], "batch lines only with --verbose");
});

Deno.test("verbose decode prints a line per chunk", async () => {
  const verbose = await spawnCli(["decode", encoded, "-o", join(dir, "decoded"), "--psnr", "--verbose"]);
  assertEquals(verbose.code, 0, verbose.stderr);
  const lines = linesStarting(verbose.stderr, "decode chunk: ");
  assertEquals(lines.length, 1, verbose.stderr);
  assertMatch(lines[0], /^decode chunk: images 1-8 of 8, [0-9.]+ s on the GPU, [0-9.]+ s writing PNGs, mean PSNR [0-9.]+ dB$/);

  const normal = await spawnCli(["decode", encoded, "-o", join(dir, "decoded-normal")]);
  assertEquals(normal.code, 0, normal.stderr);
  assertEquals(linesStarting(normal.stderr, "decode chunk: "), []);
});

Deno.test("verbose train prints epoch detail and stores the seed", async () => {
  const output = join(dir, "model.safetensors");
  const result = await spawnCli(["train", ...TRAIN_TINY, "--seed", "5", "-o", output, "--verbose", "--json"]);
  assertEquals(result.code, 0, result.stderr);
  assertStringIncludes(result.stderr, "seed 5.");
  const lines = linesStarting(result.stderr, "epoch ").filter((line) => line.includes(" detail: "));
  assertEquals(lines.length, 2, result.stderr);
  // 2 steps per epoch: the cosine schedule from 0.1 gives 0.1 and 0.0854 in epoch 1, 0.05 and 0.0146 in epoch 2.
  assertMatch(
    lines[0],
    /^epoch 1 detail: learning rate 0\.1 to 0\.0854 \(cosine\), [0-9.]+ s training, [0-9.]+ s test evaluation, [0-9.]+ s saving /,
  );
  assertStringIncludes(lines[1], "epoch 2 detail: learning rate 0.05 to 0.0146 (cosine)");

  const report = JSON.parse(result.stdout);
  assertEquals(report.seed, 5);
  const { metadata } = decodeSafetensors(await Deno.readFile(output), output);
  assertEquals(metadata.seed, "5");
  assertEquals(metadata.architecture, "resnet18");

  const normal = await spawnCli(["train", ...TRAIN_TINY]);
  assertEquals(normal.code, 0, normal.stderr);
  assert(!normal.stderr.includes(" detail: "), normal.stderr);
});

Deno.test("quiet prints warnings, not progress", async () => {
  const help = await spawnCli(["encode", "--help"]);
  assertEquals(help.code, 0, help.stderr);
  assertMatch(help.stdout, /-q, --quiet +print only warnings and errors on stderr/);

  const damaged = join(dir, "damaged");
  await writeStripes(damaged, { train: 2, test: 0 });
  const broken = join(damaged, "train", "horizontal", "9.png");
  await Deno.writeFile(broken, new TextEncoder().encode("not a PNG"));
  const quiet = await spawnCli([
    "encode",
    damaged,
    "-o",
    join(dir, "quiet.rinr"),
    ...ENCODE_TINY,
    "--max-bad-fraction",
    "0.5",
    "--quiet",
  ]);
  assertEquals(quiet.code, 0, quiet.stderr);
  const warnings = linesStarting(quiet.stderr, "warning: ");
  assertEquals(warnings.length, 1, quiet.stderr);
  assertStringIncludes(warnings[0], `skipped ${broken}`);
  for (const hidden of ["Loaded", "Encoding with", "encode ", "load "]) {
    assertEquals(linesStarting(quiet.stderr, hidden), [], `--quiet hides "${hidden}" lines`);
  }
});

Deno.test("existing outputs fail before loading", async () => {
  const existing = join(dir, "existing.rinr");
  await Deno.writeTextFile(existing, "old");
  const encode = await spawnCli(["encode", data, "-o", existing, ...ENCODE_TINY]);
  assertEquals(encode.code, 2, encode.stderr);
  assertStringIncludes(encode.stderr, `Output ${existing} already exists`);
  assert(!encode.stderr.includes("Loaded"), `no dataset load: ${encode.stderr}`);
  assert(!encode.stderr.includes("Finished images are saved"), `no checkpoint notice: ${encode.stderr}`);

  // A file where an interrupted encode keeps its checkpoint is read before the dataset too.
  const interrupted = join(dir, "interrupted.rinr");
  await Deno.writeTextFile(`${interrupted}.partial`, "not a checkpoint");
  const checkpoint = await spawnCli(["encode", data, "-o", interrupted, ...ENCODE_TINY]);
  assertEquals(checkpoint.code, 2, checkpoint.stderr);
  assertStringIncludes(checkpoint.stderr, `Checkpoint ${interrupted}.partial is damaged`);
  assert(!checkpoint.stderr.includes("Loaded"), `no dataset load: ${checkpoint.stderr}`);

  const model = join(dir, "existing.safetensors");
  await Deno.writeTextFile(model, "old");
  const train = await spawnCli(["train", ...TRAIN_TINY, "-o", model]);
  assertEquals(train.code, 2, train.stderr);
  assertStringIncludes(train.stderr, `Output ${model} already exists`);
  assert(!train.stderr.includes("Loaded"), `no dataset load: ${train.stderr}`);

  const inrTrain = await spawnCli(["train", "--input", "inr", "--data", join(dir, "missing.rinr"), "-o", model]);
  assertEquals(inrTrain.code, 2, `the output is checked before the .rinr file is read: ${inrTrain.stderr}`);

  const folder = join(dir, "decoded-existing");
  const first = await spawnCli(["decode", encoded, "-o", folder]);
  assertEquals(first.code, 0, first.stderr);
  const decode = await spawnCli(["decode", encoded, "-o", folder, "--psnr"]);
  assertEquals(decode.code, 2, decode.stderr);
  assertStringIncludes(decode.stderr, `Output ${join(folder, "horizontal", "000000.png")} already exists`);
  assert(!decode.stderr.includes("Loaded"), `no source images loaded: ${decode.stderr}`);
  assert(!decode.stderr.includes("GPU adapter"), `no GPU started: ${decode.stderr}`);
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
