// The README's interrupt-and-resume walkthrough, on a tiny dataset. `encode`
// names its checkpoint and `--resume` before it starts, Ctrl-C (SIGINT) ends it
// and keeps the finished batches, and `--resume` then writes the same bytes as
// an uninterrupted run.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { join } from "@std/path";
import { spawnCli, writeStripes } from "./_cli.ts";
import { readEncodeCheckpoint } from "../src/cli/checkpoint.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

// 12 images in batches of 3. 2000 iterations make a batch last long enough on
// the software adapter to interrupt the run between two checkpoints.
const ENCODE_ARGS = [
  "--size", "8",
  "--layers", "2",
  "--width", "8",
  "--iterations", "2000",
  "--encode-batch", "3",
  "--seed", "3",
];

interface Interrupted {
  status: Deno.CommandStatus;
  stderr: string;
}

// Starts an encode and sends it SIGINT once `ready` returns true for the
// checkpoint size in bytes (0 when absent) and the stderr read so far.
async function encodeUntilInterrupted(
  dataset: string,
  output: string,
  ready: (checkpointBytes: number, stderr: string) => boolean,
): Promise<Interrupted> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", MAIN, "encode", dataset, "-o", output, ...ENCODE_ARGS],
    env: { DENO_WEBGPU_BACKEND: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "vulkan", NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const reading = (async () => {
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) stderr += text;
  })();
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const size = await Deno.stat(`${output}.partial`).then((info) => info.size, () => 0);
    if (ready(size, stderr)) {
      child.kill("SIGINT");
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const status = await child.status;
  await reading;
  return { status, stderr };
}

Deno.test("encode SIGINT keeps batches, resumes identically", async () => {
  const root = await Deno.makeTempDir({ prefix: "rapid-inr-walk-" });
  try {
    const dataset = join(root, "data");
    await writeStripes(dataset, { train: 6, test: 0 });
    const reference = join(root, "reference.rinr");
    const first = await spawnCli(["encode", dataset, "-o", reference, ...ENCODE_ARGS, "--quiet"]);
    assertEquals(first.code, 0, first.stderr);

    const output = join(root, "interrupted.rinr");
    const checkpoint = `${output}.partial`;
    // The checkpoint appears by rename, so more than its 16-byte prefix is a finished batch.
    const run = await encodeUntilInterrupted(dataset, output, (bytes) => bytes > 16);
    assertEquals(run.status.signal, "SIGINT", run.stderr);
    assertStringIncludes(
      run.stderr,
      `Finished images are saved to ${checkpoint} after every batch; ` +
        "if this run stops, run the same command with --resume to continue.",
    );
    const saved = await readEncodeCheckpoint(checkpoint);
    if (saved === null) throw new Error("an interrupted encode must keep its checkpoint");
    assert(saved.imagesDone > 0, "the checkpoint must contain the finished batch");
    assert(saved.imagesDone < 12, "the encode finished before the interrupt");
    assertEquals(saved.imagesDone % 3, 0, "the checkpoint must contain whole batches");

    const resumed = await spawnCli(["encode", dataset, "-o", output, ...ENCODE_ARGS, "--resume"]);
    assertEquals(resumed.code, 0, resumed.stderr);
    assertStringIncludes(resumed.stderr, `Resuming from checkpoint ${checkpoint}: ${saved.imagesDone} of 12 images done`);
    assertEquals(await Deno.readFile(output), await Deno.readFile(reference));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("encode SIGINT before first batch", async () => {
  const root = await Deno.makeTempDir({ prefix: "rapid-inr-walk-" });
  try {
    const dataset = join(root, "data");
    await writeStripes(dataset, { train: 6, test: 0 });
    const output = join(root, "early.rinr");
    // "Encoding with" is printed after the dataset is loaded and before the first batch.
    const run = await encodeUntilInterrupted(dataset, output, (_, stderr) => stderr.includes("Encoding with"));
    assertEquals(run.status.signal, "SIGINT", run.stderr);
    const left = [];
    for await (const entry of Deno.readDir(root)) left.push(entry.name);
    assertEquals(left.sort(), ["data"], "an encode interrupted before its first batch leaves no file");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
