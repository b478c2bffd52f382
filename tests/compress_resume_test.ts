// Crash-safe compress: kills `compress` with SIGKILL after its first
// checkpoint, resumes it and compares the output with an uninterrupted run's
// bytes.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { join } from "@std/path";
import { spawnCli, writeStripes } from "./_cli.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

const ENCODE_ARGS = ["--size", "8", "--layers", "2", "--width", "8", "--iterations", "60", "--quiet"];

// 8 images in batches of 2 give 4 checkpoints; 1000 iterations in each of the
// two steps make a batch last long enough on the software adapter to kill the
// run between checkpoints. --bits auto checks that the resumed run reuses the
// bits of the checkpoint.
const COMPRESS_ARGS = [
  "--bits", "auto",
  "--tune-iterations", "1000",
  "--prune", "0,0.3",
  "--tune-batch", "2",
  "--quiet",
];

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function listFolder(path: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(path)) names.push(entry.name);
  return names.sort();
}

// Starts `args`, waits until `checkpoint` contains at least one batch, then
// kills the process with SIGKILL. Returns false when it finished before the kill.
async function runUntilKilled(args: string[], checkpoint: string): Promise<boolean> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", MAIN, ...args],
    env: { DENO_WEBGPU_BACKEND: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "vulkan", NO_COLOR: "1" },
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + 30_000;
  let killed = false;
  while (Date.now() < deadline) {
    const size = await Deno.stat(checkpoint).then((info) => info.size, () => 0);
    // The checkpoint appears by rename after the first batch, so a file larger
    // than its 16-byte prefix is a complete checkpoint of at least one batch.
    if (size > 16) {
      child.kill("SIGKILL");
      killed = true;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  if (!killed) child.kill("SIGKILL");
  const status = await child.status;
  return killed && status.signal === "SIGKILL";
}

async function encodeStripes(root: string): Promise<string> {
  const dataset = join(root, "data");
  await writeStripes(dataset, { train: 4, test: 0 });
  const fp32 = join(root, "fp32.rinr");
  const encoded = await spawnCli(["encode", dataset, "-o", fp32, ...ENCODE_ARGS]);
  assertEquals(encoded.code, 0, encoded.stderr);
  return fp32;
}

Deno.test("compress resume after SIGKILL matches uninterrupted run", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "rapid-inr-compress-resume-" });
  try {
    const fp32 = await encodeStripes(root);
    const out = join(root, "out");
    await Deno.mkdir(out);

    const reference = join(out, "reference.rinr");
    const first = await spawnCli(["compress", fp32, "-o", reference, ...COMPRESS_ARGS]);
    assertEquals(first.code, 0, first.stderr);
    assertEquals(await listFolder(out), ["reference.rinr"], "an uninterrupted run leaves only its output");

    const resumed = join(out, "resumed.rinr");
    const checkpoint = `${resumed}.partial`;
    const killed = await runUntilKilled(["compress", fp32, "-o", resumed, ...COMPRESS_ARGS], checkpoint);
    assert(killed, "the compress finished or never checkpointed before the kill");
    assert(!(await exists(resumed)), "a killed compress must not leave its output");
    assert(await exists(checkpoint), "a killed compress must leave its checkpoint");

    await t.step("checkpoint without --resume is rejected", async () => {
      const result = await spawnCli(["compress", fp32, "-o", resumed, ...COMPRESS_ARGS]);
      assertEquals(result.code, 2, result.stderr);
      assertStringIncludes(result.stderr, "--resume");
      assertStringIncludes(result.stderr, checkpoint);
      assert(await exists(checkpoint), "the rejected run must keep the checkpoint");
      assert(!(await exists(resumed)), "the rejected run must not write the output");
    });

    await t.step("resume with changed settings is rejected", async () => {
      const cases: [string[], string][] = [
        [["--tune-iterations", "999"], "--tune-iterations"],
        [["--prune", "0,0.4"], "--prune"],
        [["--bits", "6"], "--bits"],
        [["--tune-batch", "3"], "--tune-batch"],
        [["--tune-lr", "1e-3"], "--tune-lr"],
        [["--layer-tolerance", "0.5"], "--layer-tolerance"],
      ];
      for (const [change, setting] of cases) {
        const args = [...COMPRESS_ARGS];
        const at = args.indexOf(change[0]);
        if (at < 0) args.push(...change);
        else args[at + 1] = change[1];
        const result = await spawnCli(["compress", fp32, "-o", resumed, ...args, "--resume"]);
        assertEquals(result.code, 2, `${setting}: ${result.stderr}`);
        assertStringIncludes(result.stderr, setting);
        assertStringIncludes(result.stderr, checkpoint);
        assert(!(await exists(resumed)), `${setting}: a rejected resume must not write the output`);
      }
    });

    await t.step("resume with a changed input file is rejected", async () => {
      const original = await Deno.readFile(fp32);
      const dataset = join(root, "data");
      const reencoded = await spawnCli(["encode", dataset, "-o", fp32, ...ENCODE_ARGS, "--seed", "5", "--force"]);
      assertEquals(reencoded.code, 0, reencoded.stderr);
      try {
        const result = await spawnCli(["compress", fp32, "-o", resumed, ...COMPRESS_ARGS, "--resume"]);
        assertEquals(result.code, 2, result.stderr);
        assertStringIncludes(result.stderr, "input file contents");
        assert(!(await exists(resumed)), "a rejected resume must not write the output");
      } finally {
        await Deno.writeFile(fp32, original);
      }
    });

    await t.step("resumed output equals uninterrupted output", async () => {
      const verbose = COMPRESS_ARGS.filter((arg) => arg !== "--quiet");
      const result = await spawnCli(["compress", fp32, "-o", resumed, ...verbose, "--resume"]);
      assertEquals(result.code, 0, result.stderr);
      assertStringIncludes(result.stderr, "Resuming from checkpoint");
      assertStringIncludes(result.stderr, "(from the checkpoint)");
      assertEquals(await Deno.readFile(resumed), await Deno.readFile(reference));
    });

    await t.step("no checkpoint or temporary file is left", async () => {
      assertEquals(await listFolder(out), ["reference.rinr", "resumed.rinr"]);
    });

    await t.step("run --resume continues an interrupted compress stage", async () => {
      // The encode settings of encodeStripes, so encoded.rinr equals fp32.rinr
      // and the compressed file must equal the reference.
      const outDir = join(root, "run");
      const args = [
        "run", join(root, "data"), "--out-dir", outDir, "--test-split", "train",
        ...ENCODE_ARGS, ...COMPRESS_ARGS, "--epochs", "1", "--batch", "4", "--resnet-width", "4",
      ];
      const compressed = join(outDir, "compressed.rinr");
      assert(await runUntilKilled(args, `${compressed}.partial`), "the run finished or never checkpointed its compress stage");
      assert(!(await exists(compressed)), "a killed run must not leave the compressed file");

      const result = await spawnCli([...args.filter((arg) => arg !== "--quiet"), "--resume"]);
      assertEquals(result.code, 0, result.stderr);
      assertStringIncludes(result.stderr, "reusing the finished");
      assertStringIncludes(result.stderr, "Resuming from checkpoint");
      assertEquals(await Deno.readFile(compressed), await Deno.readFile(reference));
      assert(!(await exists(`${compressed}.partial`)), "the checkpoint must be removed after the compressed file is written");
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("compress --resume without checkpoint starts fresh", async () => {
  const root = await Deno.makeTempDir({ prefix: "rapid-inr-compress-resume-" });
  try {
    const fp32 = await encodeStripes(root);
    const output = join(root, "fresh.rinr");
    const args = ["--bits", "6", "--tune-iterations", "5", "--prune", "0,0.3", "--tune-batch", "4"];
    const result = await spawnCli(["compress", fp32, "-o", output, ...args, "--resume"]);
    assertEquals(result.code, 0, result.stderr);
    assertStringIncludes(result.stderr, "No checkpoint");
    assertEquals(await listFolder(root), ["data", "fp32.rinr", "fresh.rinr"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("compress damaged checkpoint is rejected", async () => {
  const root = await Deno.makeTempDir({ prefix: "rapid-inr-compress-resume-" });
  try {
    const fp32 = await encodeStripes(root);
    const output = join(root, "damaged.rinr");
    const checkpoint = `${output}.partial`;
    const args = ["--bits", "6", "--tune-iterations", "5", "--prune", "0,0.3", "--resume"];
    const cases: [string, Uint8Array][] = [
      ["not a compress checkpoint", new TextEncoder().encode("not a checkpoint at all")],
      ["truncated header", Uint8Array.from([...new TextEncoder().encode("RINRCOMP"), 1, 0, 0, 0, 255, 0, 0, 0])],
    ];
    for (const [reason, bytes] of cases) {
      await Deno.writeFile(checkpoint, bytes);
      const result = await spawnCli(["compress", fp32, "-o", output, ...args]);
      assertEquals(result.code, 2, `${reason}: ${result.stderr}`);
      assertStringIncludes(result.stderr, reason);
      assertStringIncludes(result.stderr, "Delete it");
      assert(!(await exists(output)), `${reason}: no output may be written`);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
