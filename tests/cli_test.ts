// Spawns main.ts as a user would and checks stdout, stderr and exit codes.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { join } from "@std/path";
import { encodePng } from "../src/data/mod.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", MAIN, ...args],
    env: { DENO_WEBGPU_BACKEND: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "vulkan", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
  const output = await command.output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

// Two classes of 8x8 images: horizontal stripes and vertical stripes.
async function makeDataset(root: string): Promise<void> {
  for (const split of ["train", "test"]) {
    for (const [label, name] of ["horizontal", "vertical"].entries()) {
      const folder = join(root, split, name);
      await Deno.mkdir(folder, { recursive: true });
      for (let i = 0; i < 4; i++) {
        const rgb = new Uint8Array(8 * 8 * 3);
        for (let y = 0; y < 8; y++) {
          for (let x = 0; x < 8; x++) {
            const on = ((label === 0 ? y : x) + i) % 2 === 0;
            rgb.set([on ? 220 : 30, on ? 200 : 40, 60 + 20 * i], (y * 8 + x) * 3);
          }
        }
        await Deno.writeFile(join(folder, `${i}.png`), await encodePng({ rgb, width: 8, height: 8 }));
      }
    }
  }
}

Deno.test("cli help goes to stdout with exit 0", async () => {
  const top = await cli(["--help"]);
  assertEquals(top.code, 0);
  assertStringIncludes(top.stdout, "Commands:");
  for (const command of ["encode", "compress", "decode", "train", "run", "info"]) {
    const result = await cli([command, "--help"]);
    assertEquals(result.code, 0, `${command} --help exit code`);
    assertStringIncludes(result.stdout, `Usage: rapid-inr ${command}`);
    assertStringIncludes(result.stdout, "Example:");
  }
});

Deno.test("cli usage errors exit 2 without a stack trace", async () => {
  const unknown = await cli(["encode", "x", "--no-such-option"]);
  assertEquals(unknown.code, 2);
  assertStringIncludes(unknown.stderr, "Unknown option --no-such-option");
  const badNumber = await cli(["encode", "x", "-o", "y.rinr", "--iterations", "many"]);
  assertEquals(badNumber.code, 2);
  assertStringIncludes(badNumber.stderr, "--iterations must be a number");
  const command = await cli(["frobnicate"]);
  assertEquals(command.code, 2);
  assert(!command.stderr.includes("    at "), command.stderr);
});

Deno.test("cli bad paths name the path and exit 3", async () => {
  const missing = await cli(["encode", "/no/such/dataset", "-o", "/tmp/never.rinr"]);
  assertEquals(missing.code, 3, missing.stderr);
  assertStringIncludes(missing.stderr, "/no/such/dataset");
  assert(!missing.stderr.includes("    at "), missing.stderr);

  const dir = await Deno.makeTempDir();
  const notRinr = join(dir, "fake.rinr");
  await Deno.writeTextFile(notRinr, "not a rinr file");
  const info = await cli(["info", notRinr]);
  assertEquals(info.code, 3, info.stderr);
  assertStringIncludes(info.stderr, notRinr);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("cli run chains the stages and prints JSON", async () => {
  const dir = await Deno.makeTempDir();
  const data = join(dir, "stripes");
  await makeDataset(data);
  const out = join(dir, "out");
  const result = await cli([
    "run", data, "--iterations", "60", "--lr", "1e-3", "--layers", "2", "--width", "8",
    "--epochs", "2", "--batch", "4", "--resnet-width", "2", "--out-dir", out, "--json",
  ]);
  assertEquals(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout);
  for (const key of ["meanPsnr", "imagesPerSecond"]) assert(Number.isFinite(report.encode[key]), `encode.${key}`);
  for (const key of ["storedBytes", "rawBytes", "percentOfRaw", "meanPsnr"]) assert(Number.isFinite(report.compress[key]), `compress.${key}`);
  assert(report.train.testAccuracy >= 0, `testAccuracy ${report.train.testAccuracy}`);
  assert(report.train.testAccuracy <= 1, `testAccuracy ${report.train.testAccuracy}`);
  assert(report.train.imagesPerSecond > 0);
  assertEquals(report.train.input, "inr");
  assertStringIncludes(result.stderr, "[3/3] train");

  const info = await cli(["info", join(out, "compressed.rinr"), "--json"]);
  assertEquals(info.code, 0, info.stderr);
  assertEquals(JSON.parse(info.stdout).imageCount, 8);

  const again = await cli(["encode", data, "-o", join(out, "encoded.rinr"), "--iterations", "1"]);
  assertEquals(again.code, 2);
  assertStringIncludes(again.stderr, "--force");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("cli suggests the closest option name", async () => {
  const result = await cli(["train", "--epocs", "1"]);
  assertEquals(result.code, 2);
  assertStringIncludes(result.stderr, "Did you mean --epochs?");
});

Deno.test("cli train reports a missing dataset as input error", async () => {
  const result = await cli(["train", "--input", "raw", "--data", "/no/such/folder", "--epochs", "1"]);
  assertEquals(result.code, 3, result.stderr);
  assertStringIncludes(result.stderr, "/no/such/folder: not found");
});

Deno.test("cli reports invalid settings without a stack trace", async () => {
  const dir = await Deno.makeTempDir();
  const data = join(dir, "stripes");
  await makeDataset(data);
  const result = await cli(["train", "--input", "raw", "--data", data, "--batch", "100", "--epochs", "1"]);
  assertEquals(result.code, 2, result.stderr);
  assertStringIncludes(result.stderr, "fewer than one batch of 100");
  assert(!result.stderr.includes("    at "), result.stderr);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("cli accepts --no- for boolean options", async () => {
  const result = await cli(["info", "--no-json", "--help"]);
  assertEquals(result.code, 0, result.stderr);
  assertStringIncludes(result.stdout, "Usage: rapid-inr info");
});

Deno.test("cli run resume reuses finished stages", async () => {
  const dir = await Deno.makeTempDir();
  const data = join(dir, "stripes");
  await makeDataset(data);
  const out = join(dir, "out");
  const args = [
    "run", data, "--iterations", "30", "--layers", "2", "--width", "8",
    "--epochs", "1", "--batch", "4", "--resnet-width", "2", "--out-dir", out,
  ];
  const first = await cli([...args, "--json"]);
  assertEquals(first.code, 0, first.stderr);
  const encodedBefore = await Deno.readFile(join(out, "encoded.rinr"));
  // A finished run is rejected before any stage is reused.
  const finished = await cli([...args, "--resume"]);
  assertEquals(finished.code, 2, finished.stderr);
  assertStringIncludes(finished.stderr, "classifier.safetensors");
  assert(!finished.stderr.includes("reusing"), finished.stderr);
  // As if training had been killed: the model file is missing.
  await Deno.remove(join(out, "classifier.safetensors"));
  // The dry run accepts the finished files that the run reuses.
  const planned = await cli([...args, "--resume", "--dry-run"]);
  assertEquals(planned.code, 0, planned.stderr);
  assertStringIncludes(planned.stdout, `${join(out, "encoded.rinr")} (finished; --resume reuses it)`);
  assertStringIncludes(planned.stdout, `${join(out, "compressed.rinr")} (finished; --resume reuses it)`);

  const resumed = await cli([...args, "--resume", "--json"]);
  assertEquals(resumed.code, 0, resumed.stderr);
  assertStringIncludes(resumed.stderr, "reusing the finished");
  const report = JSON.parse(resumed.stdout);
  assertEquals(report.encode.reused, true);
  assertEquals(report.compress.reused, true);
  const fresh = JSON.parse(first.stdout).compress;
  assertEquals(report.compress.residentBytes, fresh.residentBytes);
  assertEquals(report.compress.layerToleranceDb, fresh.layerToleranceDb);
  assertEquals(report.compress.sparsities, fresh.sparsities);
  // The file stores PSNR rounded to 0.01 dB.
  assert(Math.abs(report.encode.meanPsnr - JSON.parse(first.stdout).encode.meanPsnr) <= 0.005);
  assertEquals(await Deno.readFile(join(out, "encoded.rinr")), encodedBefore);

  await Deno.remove(join(out, "classifier.safetensors"));
  const changedArgs = [...args.map((a) => a === "30" ? "31" : a), "--resume"];
  const changedPlan = await cli([...changedArgs, "--dry-run"]);
  assertEquals(changedPlan.code, 2, changedPlan.stderr);
  assertStringIncludes(changedPlan.stderr, "--iterations is 31");
  const changed = await cli(changedArgs);
  assertEquals(changed.code, 2, changed.stderr);
  assertStringIncludes(changed.stderr, "--iterations is 31");
  await Deno.remove(dir, { recursive: true });
});
