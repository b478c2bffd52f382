// Crash-safe encode: kills `encode` with SIGKILL after its first checkpoint,
// resumes it and compares the output with an uninterrupted run's bytes.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { join } from "@std/path";
import { spawnCli, writeStripes } from "./_cli.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

// 12 images in batches of 3 give 4 checkpoints; 2000 iterations make each
// batch last long enough on the software adapter to kill the run between them.
const ENCODE_ARGS = [
  "--size", "8",
  "--layers", "2",
  "--width", "8",
  "--iterations", "2000",
  "--encode-batch", "3",
  "--seed", "7",
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

// Starts an encode, waits until its checkpoint contains at least one batch, then
// kills it with SIGKILL. Returns false when the run finished before the kill.
async function encodeUntilKilled(dataset: string, output: string): Promise<boolean> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", MAIN, "encode", dataset, "-o", output, ...ENCODE_ARGS],
    env: { DENO_WEBGPU_BACKEND: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "vulkan", NO_COLOR: "1" },
    stdout: "null",
    stderr: "null",
  }).spawn();
  const checkpoint = `${output}.partial`;
  const deadline = Date.now() + 20_000;
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
  const status = await child.status;
  return killed && status.signal === "SIGKILL";
}

Deno.test("encode resume after SIGKILL matches uninterrupted run", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "rapid-inr-resume-" });
  try {
    const dataset = join(root, "data");
    await writeStripes(dataset, { train: 6, test: 0 });
    const out = join(root, "out");
    await Deno.mkdir(out);

    const reference = join(out, "reference.rinr");
    const first = await spawnCli(["encode", dataset, "-o", reference, ...ENCODE_ARGS]);
    assertEquals(first.code, 0, first.stderr);
    assertEquals(await listFolder(out), ["reference.rinr"], "an uninterrupted run leaves only its output");

    const resumed = join(out, "resumed.rinr");
    const checkpoint = `${resumed}.partial`;
    assert(await encodeUntilKilled(dataset, resumed), "the encode finished or never checkpointed before the kill");
    assert(!(await exists(resumed)), "a killed encode must not leave its output");
    assert(await exists(checkpoint), "a killed encode must leave its checkpoint");

    await t.step("checkpoint without --resume is rejected", async () => {
      const result = await spawnCli(["encode", dataset, "-o", resumed, ...ENCODE_ARGS]);
      assertEquals(result.code, 2, result.stderr);
      assertStringIncludes(result.stderr, "--resume");
      assertStringIncludes(result.stderr, checkpoint);
      assert(await exists(checkpoint), "the rejected run must keep the checkpoint");
    });

    await t.step("resume with changed settings is rejected", async () => {
      const cases: [string[], string][] = [
        [["--iterations", "2001"], "--iterations"],
        [["--seed", "8"], "--seed"],
        [["--encode-batch", "4"], "--encode-batch"],
        [["--width", "9"], "--width"],
      ];
      for (const [change, setting] of cases) {
        const args = [...ENCODE_ARGS];
        args[args.indexOf(change[0]) + 1] = change[1];
        const result = await spawnCli(["encode", dataset, "-o", resumed, ...args, "--resume"]);
        assertEquals(result.code, 2, `${setting}: ${result.stderr}`);
        assertStringIncludes(result.stderr, setting);
        assert(!(await exists(resumed)), `${setting}: a rejected resume must not write the output`);
      }
    });

    await t.step("resumed output equals uninterrupted output", async () => {
      const verbose = ENCODE_ARGS.filter((arg) => arg !== "--quiet");
      const result = await spawnCli(["encode", dataset, "-o", resumed, ...verbose, "--resume"]);
      assertEquals(result.code, 0, result.stderr);
      assertStringIncludes(result.stderr, "Resuming from checkpoint");
      assertEquals(await Deno.readFile(resumed), await Deno.readFile(reference));
    });

    await t.step("no checkpoint or temporary file is left", async () => {
      assertEquals(await listFolder(out), ["reference.rinr", "resumed.rinr"]);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("encode --resume without checkpoint starts fresh", async () => {
  const root = await Deno.makeTempDir({ prefix: "rapid-inr-resume-" });
  try {
    const dataset = join(root, "data");
    await writeStripes(dataset, { train: 2, test: 0 });
    const output = join(root, "fresh.rinr");
    const args = ["--size", "8", "--layers", "2", "--width", "8", "--iterations", "20", "--encode-batch", "2"];
    const result = await spawnCli(["encode", dataset, "-o", output, ...args, "--resume"]);
    assertEquals(result.code, 0, result.stderr);
    assertStringIncludes(result.stderr, "No checkpoint");
    assertEquals(await listFolder(root), ["data", "fresh.rinr"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("encode damaged checkpoint is rejected", async () => {
  const root = await Deno.makeTempDir({ prefix: "rapid-inr-resume-" });
  try {
    const dataset = join(root, "data");
    await writeStripes(dataset, { train: 2, test: 0 });
    const output = join(root, "damaged.rinr");
    const checkpoint = `${output}.partial`;
    const args = ["--size", "8", "--layers", "2", "--width", "8", "--iterations", "20", "--encode-batch", "2"];
    const cases: [string, Uint8Array][] = [
      ["not an encode checkpoint", new TextEncoder().encode("not a checkpoint at all")],
      ["truncated header", Uint8Array.from([...new TextEncoder().encode("RINRPART"), 1, 0, 0, 0, 255, 0, 0, 0])],
    ];
    for (const [reason, bytes] of cases) {
      await Deno.writeFile(checkpoint, bytes);
      const result = await spawnCli(["encode", dataset, "-o", output, ...args, "--resume"]);
      assertEquals(result.code, 2, `${reason}: ${result.stderr}`);
      assertStringIncludes(result.stderr, reason);
      assertStringIncludes(result.stderr, "Delete it");
      assert(!(await exists(output)), `${reason}: no output may be written`);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
