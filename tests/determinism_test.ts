// Same seed and inputs give the same results: byte-identical .rinr files and
// identical training curves on one adapter. The seed is printed and stored.

import { assertEquals, assertNotEquals, assertStringIncludes } from "@std/assert";
import { join } from "@std/path";
import { Log } from "../src/cli/log.ts";
import { encodeStage, trainStage } from "../src/cli/stages.ts";
import { readRinr } from "../src/format/mod.ts";
import { spawnCli, writeStripes } from "./_cli.ts";

const dir = await Deno.makeTempDir({ prefix: "rapid-inr-determinism-" });
const data = join(dir, "stripes");
// 6 training images of 8x8 px in 2 classes, and 2 test images per class.
await writeStripes(data, { train: 3, test: 2 });
const quiet = new Log("quiet", { json: true });

async function encodeWithSeed(name: string, seed: number): Promise<Uint8Array> {
  const output = join(dir, name);
  await encodeStage({
    dataset: { path: data, size: 8 },
    output,
    preset: "cifar",
    iterations: 50,
    learningRate: 1e-3,
    seed,
    overwrite: false,
  }, quiet);
  return await Deno.readFile(output);
}

Deno.test("encode same seed gives identical bytes", async () => {
  const first = await encodeWithSeed("seed7-a.rinr", 7);
  const second = await encodeWithSeed("seed7-b.rinr", 7);
  assertEquals(second.length, first.length, "file sizes");
  const firstDifference = first.findIndex((byte, i) => byte !== second[i]);
  assertEquals(firstDifference, -1, "offset of the first differing byte");

  const other = await encodeWithSeed("seed8.rinr", 8);
  assertNotEquals(other, first, "another seed gives another file");

  const file = await readRinr(join(dir, "seed7-a.rinr"));
  assertEquals(file.encode?.seed, 7, "header encode.seed");
  assertEquals((await readRinr(join(dir, "seed8.rinr"))).encode?.seed, 8, "header encode.seed");
});

async function trainLosses(
  seed: number,
): Promise<{ trainLoss: number; trainAccuracy: number; testAccuracy: number }[]> {
  const report = await trainStage({
    input: "raw",
    dataset: { path: data },
    test: { path: data, split: "test" },
    epochs: 2,
    batch: 2,
    learningRate: 0.05,
    momentum: 0.9,
    weightDecay: 5e-4,
    width: 2,
    seed,
    overwrite: false,
  }, quiet);
  return report.epochs.map((e) => ({
    trainLoss: e.trainLoss,
    trainAccuracy: e.trainAccuracy,
    testAccuracy: e.testAccuracy,
  }));
}

Deno.test("train same seed gives identical curve", async () => {
  const first = await trainLosses(5);
  const second = await trainLosses(5);
  assertEquals(first.length, 2);
  assertEquals(second, first, "per-epoch loss and accuracies");
  const other = await trainLosses(6);
  assertNotEquals(
    other.map((e) => e.trainLoss),
    first.map((e) => e.trainLoss),
    "another seed gives another curve",
  );
});

Deno.test("seed is printed on stderr", async () => {
  const output = join(dir, "printed.rinr");
  const encode = await spawnCli([
    "encode",
    data,
    "-o",
    output,
    "--size",
    "8",
    "--iterations",
    "5",
    "--seed",
    "42",
  ]);
  assertEquals(encode.code, 0, encode.stderr);
  assertStringIncludes(encode.stderr, "seed 42.");
  assertEquals((await readRinr(output)).encode?.seed, 42);

  const train = await spawnCli([
    "train",
    "--input",
    "raw",
    "--data",
    data,
    "--epochs",
    "1",
    "--batch",
    "2",
    "--resnet-width",
    "2",
    "--seed",
    "43",
  ]);
  assertEquals(train.code, 0, train.stderr);
  assertStringIncludes(train.stderr, "seed 43.");
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
