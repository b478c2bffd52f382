// `rapid-inr export`: spawns the CLI on .rinr files of a tiny encode and on
// the classifier and checkpoint of a tiny training, reads the safetensors
// file back, and runs the README's PyTorch example on it.

import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { join } from "@std/path";
import { Log } from "../src/cli/log.ts";
import { compressStage, encodeStage, trainStage, type TrainStageOptions } from "../src/cli/stages.ts";
import { decodeSafetensors, readRinr, type RinrFile } from "../src/format/mod.ts";
import { readTrainCheckpoint } from "../src/train/checkpoint.ts";
import { dequantize } from "../src/inr/quantize.ts";
import {
  pixelCoordinate,
  sirenForwardReference,
  sirenLayers,
  sirenParamCount,
} from "../src/inr/siren.ts";
import { spawnCli, writeStripes } from "./_cli.ts";

const ARCH = { sineLayers: 2, width: 8, w0: 30 };

/** Encodes 6 stripe images of 8x8 px, then quantizes them to 8 bits. */
async function encodeTiny(dir: string): Promise<{ fp32: string; q8: string }> {
  const data = join(dir, "stripes");
  await writeStripes(data, { train: 3, test: 0 });
  const log = new Log("quiet", { json: true });
  const fp32 = join(dir, "tiny.rinr");
  const q8 = join(dir, "tiny-q8.rinr");
  await encodeStage({
    dataset: { path: data, size: 8 },
    output: fp32,
    preset: "cifar",
    arch: ARCH,
    iterations: 40,
    learningRate: 1e-3,
    seed: 3,
    overwrite: false,
  }, log);
  await compressStage({ input: fp32, output: q8, bits: 8, overwrite: false }, log);
  return { fp32, q8 };
}

function weightsOf(file: RinrFile): Float32Array {
  return file.weights instanceof Float32Array ? file.weights : dequantize(file.weights);
}

const dir = await Deno.makeTempDir({ prefix: "rapid-inr-export-" });
const files = await encodeTiny(dir);

Deno.test("export writes one tensor per layer", async () => {
  for (const input of [files.fp32, files.q8]) {
    const output = join(dir, `${input.endsWith("q8.rinr") ? "q8" : "fp32"}.safetensors`);
    const result = await spawnCli(["export", input, "-o", output]);
    assertEquals(result.code, 0, result.stderr);
    assertStringIncludes(result.stdout, `Exported the 6 INRs of ${input}`);

    const file = await readRinr(input);
    const weights = weightsOf(file);
    const q = sirenParamCount(ARCH);
    const { tensors, metadata } = decodeSafetensors(await Deno.readFile(output), output);
    const layers = sirenLayers(ARCH);
    assertEquals(tensors.size, 2 * layers.length + 1, "tensor count");
    for (const layer of layers) {
      const weight = tensors.get(`layers.${layer.index}.weight`)!;
      const bias = tensors.get(`layers.${layer.index}.bias`)!;
      assertEquals(
        weight.shape,
        [6, layer.outputs, layer.inputs],
        `layer ${layer.index} weight shape`,
      );
      assertEquals(bias.shape, [6, layer.outputs], `layer ${layer.index} bias shape`);
      for (let n = 0; n < 6; n++) {
        const w = n * layer.outputs * layer.inputs;
        const expectedWeight = weights.subarray(
          n * q + layer.weightOffset,
          n * q + layer.biasOffset,
        );
        assertEquals(
          Array.from(weight.data.subarray(w, w + layer.outputs * layer.inputs)),
          Array.from(expectedWeight),
          `image ${n} layer ${layer.index} weight values`,
        );
        const expectedBias = weights.subarray(
          n * q + layer.biasOffset,
          n * q + layer.biasOffset + layer.outputs,
        );
        assertEquals(
          Array.from(bias.data.subarray(n * layer.outputs, (n + 1) * layer.outputs)),
          Array.from(expectedBias),
          `image ${n} layer ${layer.index} bias values`,
        );
      }
    }
    const labels = tensors.get("labels")!;
    assert(labels.data instanceof Int32Array, "labels are I32");
    assertEquals(Array.from(labels.data), Array.from(file.labels));

    assertEquals(JSON.parse(metadata.arch), ARCH);
    assertEquals(metadata.w0, "30");
    assertEquals(metadata.resolution, "8");
    assertEquals(JSON.parse(metadata.classNames), ["horizontal", "vertical"]);
    assertEquals(metadata.source, join(dir, "stripes"));
    assertEquals(JSON.parse(metadata.psnr).length, 6);
    assertEquals(JSON.parse(metadata.bits), input === files.q8 ? [8, 8, 8] : [32, 32, 32]);
  }
});

Deno.test("export keeps an existing output without --force", async () => {
  const output = join(dir, "kept.safetensors");
  await Deno.writeTextFile(output, "keep me");
  const refused = await spawnCli(["export", files.q8, "-o", output]);
  assertEquals(refused.code, 2, refused.stderr);
  assertStringIncludes(refused.stderr, "--force");
  assertEquals(await Deno.readTextFile(output), "keep me");

  const forced = await spawnCli(["export", files.q8, "-o", output, "--force", "--json"]);
  assertEquals(forced.code, 0, forced.stderr);
  const report = JSON.parse(forced.stdout);
  assertEquals(report.images, 6);
  assertEquals(report.bytes, (await Deno.stat(output)).size);
  const leftovers = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".tmp"));
  assertEquals(leftovers.length, 0, "no temporary files remain");
});

Deno.test("export reports bad inputs with exit codes", async () => {
  const missing = await spawnCli([
    "export",
    join(dir, "none.rinr"),
    "-o",
    join(dir, "x.safetensors"),
  ]);
  assertEquals(missing.code, 3, missing.stderr);
  assertStringIncludes(missing.stderr, "none.rinr");
  assert(!missing.stderr.includes("    at "), missing.stderr);

  const noOutput = await spawnCli(["export", files.q8]);
  assertEquals(noOutput.code, 2);
  assertStringIncludes(noOutput.stderr, "Missing --output");
});

// A log that ends the run at the message of epoch `stopAt`, after that epoch's checkpoint is saved.
class StopAtEpoch extends Log {
  constructor(readonly stopAt?: number) {
    super("quiet", { json: true });
  }
  override info(message: string): void {
    if (this.stopAt !== undefined && message.startsWith(`epoch ${this.stopAt}:`)) throw new Error("stopped");
  }
}

Deno.test("export classifier and training checkpoint", async () => {
  const root = join(dir, "classifier");
  await writeStripes(join(root, "data"), { train: 4, test: 2 });
  const output = join(root, "model.safetensors");
  const checkpoint = join(root, "model.ckpt.safetensors");
  const options: TrainStageOptions = {
    input: "raw",
    dataset: { path: join(root, "data") },
    test: { path: join(root, "data"), split: "test" },
    epochs: 2,
    batch: 4,
    learningRate: 0.1,
    momentum: 0.9,
    weightDecay: 5e-4,
    width: 2,
    seed: 7,
    output,
    overwrite: false,
  };
  // Stopped at the last epoch's message, the run leaves a checkpoint of the finished network.
  await assertRejects(() => trainStage(options, new StopAtEpoch(2)), Error, "stopped");
  const saved = await readTrainCheckpoint(checkpoint);
  if (!saved) throw new Error("the stopped run must leave its checkpoint");

  const fromCheckpoint = join(root, "from-checkpoint.safetensors");
  const exported = await spawnCli(["export", checkpoint, "-o", fromCheckpoint, "--json"]);
  assertEquals(exported.code, 0, exported.stderr);
  const report = JSON.parse(exported.stdout);
  assertEquals(report.inputKind, "checkpoint");
  assertEquals(report.epochs, 2);
  const { tensors, metadata } = decodeSafetensors(await Deno.readFile(fromCheckpoint), fromCheckpoint);
  assert(!tensors.has("optimizer.velocity"), "the optimizer state is left out");
  assertEquals([...tensors.keys()], [...saved.tensors.keys()]);
  for (const [name, tensor] of saved.tensors) {
    assertEquals(tensors.get(name)!.shape, tensor.shape, `${name} shape`);
    assertEquals(tensors.get(name)!.data, tensor.data, `${name} values`);
  }
  assertEquals(tensors.get("conv1.weight")!.shape, [2, 3, 3, 3], "torchvision name and shape of the stem");
  assertEquals(metadata.architecture, "resnet18");
  assertEquals(metadata.width, "2");
  assertEquals(metadata.inputSize, "8");
  assertEquals(metadata.seed, "7");
  assertEquals(JSON.parse(metadata.classes), ["horizontal", "vertical"]);
  assertEquals(metadata.epochs, "2");
  assertEquals(metadata.plannedEpochs, "2");

  // Resumed after its last epoch, the run writes the classifier of the same network.
  await trainStage({ ...options, resume: true }, new StopAtEpoch());
  const trained = decodeSafetensors(await Deno.readFile(output), output);
  for (const [name, tensor] of trained.tensors) {
    assertEquals(tensors.get(name)?.data, tensor.data, `${name}: checkpoint export equals train -o`);
  }
  assertEquals(tensors.size, trained.tensors.size);

  const fromClassifier = join(root, "from-classifier.safetensors");
  const copied = await spawnCli(["export", output, "-o", fromClassifier]);
  assertEquals(copied.code, 0, copied.stderr);
  assertStringIncludes(copied.stdout, `Exported the ResNet-18 classifier (width 2) of ${output}`);
  assertEquals(await Deno.readFile(fromClassifier), await Deno.readFile(output));

  // The INR export is a safetensors file too, but not a classifier.
  const inrs = join(root, "inrs.safetensors");
  assertEquals((await spawnCli(["export", files.fp32, "-o", inrs])).code, 0);
  const wrong = await spawnCli(["export", inrs, "-o", join(root, "wrong.safetensors")]);
  assertEquals(wrong.code, 3, wrong.stderr);
  assertStringIncludes(wrong.stderr, "neither a classifier written by train -o");

  const text = join(root, "notes.txt");
  await Deno.writeTextFile(text, "neither a .rinr nor a safetensors file");
  const unknown = await spawnCli(["export", text, "-o", join(root, "unknown.safetensors")]);
  assertEquals(unknown.code, 3, unknown.stderr);
  assertStringIncludes(unknown.stderr, "is neither a .rinr file nor a readable safetensors file");
  assert(!unknown.stderr.includes("    at "), unknown.stderr);
});

const python = "/usr/bin/python3";
const torchAvailable = await new Deno.Command(python, {
  args: ["-c", "import torch"],
  stdout: "null",
  stderr: "null",
})
  .output().then((o) => o.success, () => false);
if (!torchAvailable) {
  console.warn(`README PyTorch check skipped: "${python} -c 'import torch'" failed.`);
}

// Stand-in for the safetensors package (not installed next to Debian's
// python3-torch): the two functions the README uses, parsing the format with
// json, struct and torch.frombuffer.
const SAFETENSORS_STAND_IN = `
import json, struct

def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]), data[8 + length:]

class safe_open:
    def __init__(self, path, framework):
        self.header, _ = read(path)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False
    def metadata(self):
        return self.header.get("__metadata__", {})
`;
const SAFETENSORS_TORCH_STAND_IN = `
import torch
from safetensors import read

DTYPES = {"F32": torch.float32, "I32": torch.int32}

def load_file(path):
    header, data = read(path)
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        values = torch.frombuffer(bytearray(data[start:end]), dtype=DTYPES[entry["dtype"]])
        tensors[name] = values.reshape(entry["shape"])
    return tensors
`;

/** Returns the README's Python block that evaluates exported INRs. */
async function readmeExample(): Promise<string> {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const blocks = [...readme.matchAll(/```python\n([\s\S]*?)```/g)].map((m) => m[1]);
  const example = blocks.find((b) => b.includes("layers.") && b.includes("load_file"));
  if (!example) throw new Error("README.md has no Python block that loads exported INR layers.");
  return example;
}

Deno.test({
  name: "export README PyTorch example matches reference",
  ignore: !torchAvailable,
  async fn() {
    const work = join(dir, "python");
    await Deno.mkdir(join(work, "safetensors"), { recursive: true });
    await Deno.writeTextFile(join(work, "safetensors", "__init__.py"), SAFETENSORS_STAND_IN);
    await Deno.writeTextFile(join(work, "safetensors", "torch.py"), SAFETENSORS_TORCH_STAND_IN);
    const exported = await spawnCli(["export", files.q8, "-o", join(work, "inrs.safetensors")]);
    assertEquals(exported.code, 0, exported.stderr);

    const example = await readmeExample();
    assertStringIncludes(example, "n = 0", "the example picks its image with `n = 0`");
    const file = await readRinr(files.q8);
    const weights = weightsOf(file);
    for (const image of [0, 5]) {
      const script = example.replace("n = 0", `n = ${image}`) +
        '\nprint("RGB " + json.dumps(rgb.reshape(-1).tolist()))\n';
      const run = await new Deno.Command(python, {
        args: ["-c", script],
        cwd: work,
        env: { PYTHONPATH: work },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(run.stdout);
      assert(run.success, `python failed: ${new TextDecoder().decode(run.stderr)}`);
      assertStringIncludes(
        stdout,
        file.classNames[file.labels[image]],
        "the example prints the class name",
      );
      const line = stdout.split("\n").find((l) => l.startsWith("RGB "));
      if (line === undefined) throw new Error(`No RGB line in the python output: ${stdout}`);
      const rgb: number[] = JSON.parse(line.slice(4));
      assertEquals(rgb.length, 8 * 8 * 3);

      // Every pixel of the 8x8 grid: row-major, x along the row.
      const offset = image * sirenParamCount(ARCH);
      for (let row = 0; row < 8; row++) {
        for (let column = 0; column < 8; column++) {
          const expected = sirenForwardReference(ARCH, {
            params: weights,
            offset,
            x: pixelCoordinate(column, 8),
            y: pixelCoordinate(row, 8),
          }).map((v) => Math.min(1, Math.max(0, v)));
          for (let c = 0; c < 3; c++) {
            const actual = rgb[(row * 8 + column) * 3 + c];
            assert(
              Math.abs(actual - expected[c]) <= 1e-4,
              `image ${image} pixel (row ${row}, column ${column}) channel ${c}: python ${actual}, reference ${
                expected[c]
              }`,
            );
          }
        }
      }
    }
  },
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
