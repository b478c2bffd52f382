// Training checkpoints and --resume: a run interrupted after some epochs and
// resumed must report the same per-epoch figures as an uninterrupted run.
// The interruptions are a log that throws after an epoch's message (in
// process) and SIGKILL on a spawned `main.ts train` (out of process).

import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { join } from "@std/path";
import { Log } from "../src/cli/log.ts";
import { trainStage, type TrainStageOptions } from "../src/cli/stages.ts";
import { readTrainCheckpoint } from "../src/train/checkpoint.ts";
import type { EpochRecord } from "../src/train/trainer.ts";
import { writeStripes } from "./_cli.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

class Interrupt extends Error {}

// A quiet log whose info() throws on a message starting with `stopAt`, as a Ctrl-C between
// epochs would end the run.
class InterruptingLog extends Log {
  constructor(readonly stopAt?: string) {
    super("normal", { json: true });
  }
  override info(message: string): void {
    if (this.stopAt && message.startsWith(this.stopAt)) throw new Interrupt(message);
  }
  override progress(): void {}
  override result(): void {}
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

// Per-epoch figures that must not depend on wall-clock time.
function deterministic(records: EpochRecord[]) {
  return records.map((r) => ({
    epoch: r.epoch,
    trainLoss: r.trainLoss,
    trainAccuracy: r.trainAccuracy,
    testAccuracy: r.testAccuracy,
    lastLearningRate: r.lastLearningRate,
  }));
}

function stageOptions(root: string, overrides: Partial<TrainStageOptions> = {}): TrainStageOptions {
  return {
    input: "raw",
    dataset: { path: join(root, "data") },
    test: { path: join(root, "data"), split: "test" },
    epochs: 4,
    batch: 4,
    learningRate: 0.1,
    momentum: 0.9,
    weightDecay: 5e-4,
    width: 2,
    seed: 3,
    overwrite: false,
    ...overrides,
  };
}

const CLI_ARGS = ["--input", "raw", "--batch", "4", "--resnet-width", "2", "--seed", "3", "--json", "--quiet"];

function spawnTrain(cwd: string, args: string[]) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", CONFIG, MAIN, "train", ...CLI_ARGS, ...args],
    cwd,
    env: { DENO_WEBGPU_BACKEND: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "vulkan", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
}

async function runTrain(cwd: string, args: string[]) {
  const output = await spawnTrain(cwd, args).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

Deno.test("trainStage resume matches uninterrupted run", async () => {
  const root = await Deno.makeTempDir({ prefix: "train_resume_" });
  try {
    await writeStripes(join(root, "data"), { train: 8, test: 2 });
    const reference = await trainStage(stageOptions(root, { output: join(root, "reference.safetensors") }), new InterruptingLog());
    assert(!(await exists(join(root, "reference.ckpt.safetensors"))), "the checkpoint is removed after the final save");

    const output = join(root, "model.safetensors");
    const checkpoint = join(root, "model.ckpt.safetensors");
    await assertRejects(() => trainStage(stageOptions(root, { output }), new InterruptingLog("epoch 2:")), Interrupt);
    assert(await exists(checkpoint), "an interrupted run leaves its checkpoint");
    assert(!(await exists(output)), "an interrupted run saves no weights");

    const resumed = await trainStage(stageOptions(root, { output, resume: true }), new InterruptingLog());
    assertEquals(deterministic(resumed.epochs), deterministic(reference.epochs));
    assertEquals(resumed.testAccuracy, reference.testAccuracy);
    assertEquals(await Deno.readFile(output), await Deno.readFile(join(root, "reference.safetensors")));
    assert(!(await exists(checkpoint)), "the resumed run removes its checkpoint");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("trainStage resume after last epoch", async () => {
  const root = await Deno.makeTempDir({ prefix: "train_resume_" });
  try {
    await writeStripes(join(root, "data"), { train: 8, test: 2 });
    const checkpoint = join(root, "job.ckpt");
    const options = stageOptions(root, { epochs: 2, checkpoint });
    await assertRejects(() => trainStage(options, new InterruptingLog("epoch 2:")), Interrupt);

    const resumed = await trainStage({ ...options, resume: true }, new InterruptingLog());
    assertEquals(resumed.epochs.map((r) => r.epoch), [1, 2]);
    assert(Number.isFinite(resumed.imagesPerSecond), `imagesPerSecond ${resumed.imagesPerSecond}`);
    assert(!(await exists(checkpoint)), "the checkpoint is removed at the end");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("train CLI resumes after SIGKILL", async () => {
  const root = await Deno.makeTempDir({ prefix: "train_resume_cli_" });
  try {
    await writeStripes(join(root, "data"), { train: 8, test: 2 });
    const epochs = ["--epochs", "40"];
    const reference = await runTrain(root, ["--data", "data", ...epochs, "--output", "reference.safetensors"]);
    assertEquals(reference.code, 0, reference.stderr);

    const child = spawnTrain(root, ["--data", "data", ...epochs, "--output", "model.safetensors"]).spawn();
    const checkpoint = join(root, "model.ckpt.safetensors");
    const deadline = Date.now() + 20_000;
    while (!(await exists(checkpoint)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // Let a few more epochs finish so the kill lands mid-run, past epoch 1.
    await new Promise((r) => setTimeout(r, 300));
    child.kill("SIGKILL");
    const killed = await child.output();
    assertEquals(killed.signal, "SIGKILL", "the run finished before the kill; raise --epochs");
    assert(await exists(checkpoint), "the killed run leaves its checkpoint");
    assert(!(await exists(join(root, "model.safetensors"))), "the killed run saved no weights");
    const saved = await readTrainCheckpoint(checkpoint);
    const finished = saved?.records.length ?? 0;
    assert(finished >= 1, `the checkpoint contains ${finished} epochs`);
    assert(finished < 40, `the checkpoint contains all ${finished} epochs; raise --epochs`);

    const resumed = await runTrain(root, ["--data", "data", ...epochs, "--output", "model.safetensors", "--resume"]);
    assertEquals(resumed.code, 0, resumed.stderr);
    const expected = JSON.parse(reference.stdout).epochs as EpochRecord[];
    const actual = JSON.parse(resumed.stdout).epochs as EpochRecord[];
    assertEquals(deterministic(actual), deterministic(expected));
    assertEquals(await Deno.readFile(join(root, "model.safetensors")), await Deno.readFile(join(root, "reference.safetensors")));
    assert(!(await exists(checkpoint)), "the resumed run removes its checkpoint");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("train CLI rejects mismatched or unrequested checkpoint", async () => {
  const root = await Deno.makeTempDir({ prefix: "train_resume_cli_" });
  try {
    await writeStripes(join(root, "data"), { train: 8, test: 2 });
    await assertRejects(
      () => trainStage(stageOptions(root, { checkpoint: join(root, "job.ckpt") }), new InterruptingLog("epoch 1:")),
      Interrupt,
    );

    const mismatched = await runTrain(root, ["--data", "data", "--epochs", "4", "--train-lr", "0.05", "--checkpoint", "job.ckpt", "--resume"]);
    assertEquals(mismatched.code, 2, mismatched.stderr);
    assertStringIncludes(mismatched.stderr, "--train-lr is 0.05, the checkpoint has 0.1");

    const unrequested = await runTrain(root, ["--data", "data", "--epochs", "4", "--checkpoint", "job.ckpt"]);
    assertEquals(unrequested.code, 2, unrequested.stderr);
    assertStringIncludes(unrequested.stderr, "Pass --resume");
    assert(await exists(join(root, "job.ckpt")), "a rejected run keeps the checkpoint");

    const garbage = join(root, "garbage.ckpt");
    await Deno.writeTextFile(garbage, "not a checkpoint");
    const corrupt = await runTrain(root, ["--data", "data", "--epochs", "4", "--checkpoint", "garbage.ckpt", "--resume"]);
    assertEquals(corrupt.code, 2, corrupt.stderr);
    assertStringIncludes(corrupt.stderr, "Delete the checkpoint");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
