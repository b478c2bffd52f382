// GPU faults: out-of-memory while allocating an encode batch, a device lost in
// the middle of encode and train, and a shader that fails to compile.
//
// Out-of-memory is injected through `Gpu.memoryLimit`, because filling the
// software adapter's memory would take minutes. Device loss is real:
// `gpu.device.destroy()` from a test hook loses the device as WebGPU defines it.
// The CLI runs in this process so that the hooks can reach its `Gpu`.

import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { join, relative } from "@std/path";
import { Gpu, GpuDeviceLostError, GpuError, GpuOutOfMemoryError } from "../src/gpu/device.ts";
import { compileKernel } from "../src/gpu/kernel.ts";
import { type EncodeOptions, type EncodeResult, encodeImages } from "../src/inr/encode.ts";
import { sirenImageBytes } from "../src/inr/siren_batch.ts";
import { InrDecoder } from "../src/inr/decode.ts";
import { quantize } from "../src/inr/quantize.ts";
import { Log, type ProgressState } from "../src/cli/log.ts";
import { EXIT, runCli } from "../src/cli/mod.ts";
import { readEncodeCheckpoint } from "../src/cli/checkpoint.ts";
import { readTrainCheckpoint } from "../src/train/checkpoint.ts";
import { writeStripes } from "./_cli.ts";
import { seededRandom } from "./_util.ts";

const ARCH = { sineLayers: 2, width: 8, w0: 30 };

function randomImages(count: number, side: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  return Uint8Array.from({ length: count * side * side * 3 }, () => Math.floor(random() * 256));
}

// Runs `body` with every `Gpu.create` in this process replaced by `create`.
async function withPatchedGpu<T>(
  create: (original: typeof Gpu.create, options: Parameters<typeof Gpu.create>[0]) => Promise<Gpu>,
  body: () => Promise<T>,
): Promise<T> {
  const original = Gpu.create;
  Gpu.create = (options) => create(original, options);
  try {
    return await body();
  } finally {
    Gpu.create = original;
  }
}

// Runs the CLI in this process and returns its exit code and what it printed
// through console.error (the final error message).
async function runCliCapturingErrors(args: string[]): Promise<{ code: number; errors: string }> {
  const original = console.error;
  const lines: string[] = [];
  console.error = (...parts: unknown[]) => lines.push(parts.join(" "));
  try {
    const code = await runCli(args);
    return { code, errors: lines.join("\n") };
  } finally {
    console.error = original;
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

// ---------------------------------------------------------------- out of memory

// Encodes with `batchSize` and returns the result with the most bytes the
// batch's tracked buffers held, measured when each batch finished.
async function encodeMeasured(
  gpu: Gpu,
  input: { images: Uint8Array; count: number; side: number },
  options: EncodeOptions & { batchSize: number },
): Promise<{ held: number; result: EncodeResult }> {
  let held = 0;
  const result = await encodeImages(gpu, input, {
    ...options,
    onBatch: () => {
      held = Math.max(held, gpu.allocatedBytes);
    },
  });
  assertEquals(gpu.allocatedBytes, 0, "encodeImages releases its buffers");
  return { held, result };
}

// Returns a memory limit with room for `images` images of a batch that held
// `large.held` bytes with `large.size` images and `small.held` with `small.size`.
function roomFor(images: number, large: { size: number; held: number }, small: { size: number; held: number }): number {
  const perImage = (large.held - small.held) / (large.size - small.size);
  const fixed = small.held - small.size * perImage;
  assert(perImage > 0, `per image ${perImage} bytes`);
  assert(fixed >= 0, `fixed ${fixed} bytes`);
  return fixed + images * perImage;
}

/** Runs `args` with --resume and checks that the output equals `reference` and the checkpoint is gone. */
async function assertResumeMatches(args: string[], files: { output: string; reference: string }): Promise<void> {
  const resumed = await runCliCapturingErrors([...args, "--resume"]);
  assertEquals(resumed.code, EXIT.ok, resumed.errors);
  assertEquals(await Deno.readFile(files.output), await Deno.readFile(files.reference));
  assert(!(await exists(`${files.output}.partial`)), "the finished run removes its checkpoint");
}

Deno.test("encode halves a batch that runs out of memory", async () => {
  const gpu = await Gpu.create({ notice: false });
  try {
    const count = 6;
    const side = 8;
    const input = { images: randomImages(count, side, 11), count, side };
    const options = { arch: ARCH, iterations: 40, learningRate: 2e-3, seed: 9 };
    const unsplit = await encodeMeasured(gpu, input, { ...options, batchSize: 6 });
    const pair = await encodeMeasured(gpu, input, { ...options, batchSize: 2 });

    // Batches of 6 and 3 fail, and 2 fit.
    gpu.memoryLimit = roomFor(2.5, { size: 6, held: unsplit.held }, { size: 2, held: pair.held });
    const warnings: string[] = [];
    const split = await encodeImages(gpu, input, {
      ...options,
      batchSize: 6,
      onWarning: (message) => warnings.push(message),
    });
    assertEquals(split.batchSize, 2);
    assertEquals(warnings.length, 1, `one warning, got ${JSON.stringify(warnings)}`);
    assertStringIncludes(warnings[0], "batch of 6 images");
    assertStringIncludes(warnings[0], "batches of 2 instead");
    // Each image is fitted on its own, so the split changes no bit of the result.
    assertEquals(split.weights, unsplit.result.weights);
    assertEquals(split.psnr, unsplit.result.psnr);
  } finally {
    gpu.destroy();
  }
});

Deno.test("encode split batches resume from odd counts", async () => {
  const gpu = await Gpu.create({ notice: false });
  try {
    const count = 5;
    const side = 8;
    const input = { images: randomImages(count, side, 12), count, side };
    const options = { arch: ARCH, iterations: 30, learningRate: 2e-3, seed: 4 };
    const reference = await encodeMeasured(gpu, input, { ...options, batchSize: 5 });
    const triple = await encodeMeasured(gpu, input, { ...options, batchSize: 3 });
    const q = reference.result.weights.length / count;

    // A checkpoint of 3 images from batches of 3, resumed where a batch of 3
    // no longer fits and is halved to 2, so the batches start at 3, which is
    // not a multiple of 2.
    const resume = {
      imagesDone: 3,
      weights: reference.result.weights.slice(0, 3 * q),
      psnr: reference.result.psnr.slice(0, 3),
    };
    gpu.memoryLimit = roomFor(2.5, { size: 5, held: reference.held }, { size: 3, held: triple.held });
    const warnings: string[] = [];
    const done: number[] = [];
    const resumed = await encodeImages(gpu, input, {
      ...options,
      batchSize: 3,
      resume,
      onWarning: (message) => warnings.push(message),
      onBatch: (batch) => {
        done.push(batch.imagesDone);
      },
    });
    assertEquals(warnings.length, 1, `one warning, got ${JSON.stringify(warnings)}`);
    assertEquals(resumed.batchSize, 2);
    assertEquals(done, [5]);
    assertEquals(resumed.weights, reference.result.weights);
    assertEquals(resumed.psnr, reference.result.psnr);
  } finally {
    gpu.destroy();
  }
});

Deno.test("encode fails when one image does not fit", async () => {
  const gpu = await Gpu.create({ notice: false });
  try {
    gpu.memoryLimit = 4096;
    const side = 8;
    const error = await assertRejects(
      () =>
        encodeImages(gpu, { images: randomImages(2, side, 1), count: 2, side }, {
          arch: ARCH,
          iterations: 10,
        }),
      GpuOutOfMemoryError,
    );
    const needed = sirenImageBytes({ arch: ARCH, side }).total + 10 * 8;
    assertEquals(error.bytes, needed);
    assertStringIncludes(error.message, "Out of GPU memory allocating one image, the smallest batch");
    assertStringIncludes(error.message, "One 8x8 image with 2 sine layers of width 8");
    assertStringIncludes(error.message, `needs about ${needed} bytes`);
    assertStringIncludes(error.message, "4096 bytes allowed by Gpu.memoryLimit");
    assertStringIncludes(error.message, "use a smaller image side or fewer or narrower layers");
    assertEquals(gpu.allocatedBytes, 0, "the failed allocations are released");
  } finally {
    gpu.destroy();
  }
});

Deno.test("gpu allocate reports out-of-memory errors", async () => {
  const gpu = await Gpu.create({ notice: false });
  try {
    gpu.memoryLimit = 1024;
    const created: GPUBuffer[] = [];
    const error = await assertRejects(
      () =>
        gpu.allocate("two buffers", () => {
          created.push(gpu.buffer(512, "first"));
          created.push(gpu.buffer(1024, "second"));
          return { destroy: () => created.forEach((b) => gpu.release(b)) };
        }),
      GpuOutOfMemoryError,
    );
    assertEquals(error.bytes, 1024);
    assertStringIncludes(error.message, 'Out of GPU memory allocating two buffers: "second" needs 1024 bytes');
    // Other errors pass through unchanged.
    await assertRejects(() => gpu.allocate("nothing", () => Promise.reject(new RangeError("bad size"))), RangeError, "bad size");
    const fits = await gpu.allocate("one buffer", () => {
      const buffer = gpu.buffer(256, "fits");
      return { buffer, destroy: () => gpu.release(buffer) };
    });
    assertEquals(gpu.allocatedBytes, 512 + 256);
    fits.destroy();
  } finally {
    gpu.destroy();
  }
});

const ENCODE_ARGS = ["--size", "16", "--layers", "2", "--width", "8", "--iterations", "60", "--seed", "5", "--quiet"];

Deno.test("encode CLI splits on out of memory and exits 4 when one image does not fit", async () => {
  const root = await Deno.makeTempDir({ prefix: "gpu_faults_" });
  try {
    await writeStripes(join(root, "data"), { train: 2, test: 0, side: 16 });
    const perImage = sirenImageBytes({ arch: ARCH, side: 16 }).total;

    const reference = await runCliCapturingErrors(["encode", join(root, "data"), "-o", join(root, "reference.rinr"), "--encode-batch", "2", ...ENCODE_ARGS]);
    assertEquals(reference.code, EXIT.ok, reference.errors);

    // Room for 2.5 images plus 8 KiB for the schedule and the uniform
    // buffers: the requested batch of 4 is halved to 2.
    const split = await withPatchedGpu(async (original, options) => {
      const gpu = await original(options);
      gpu.memoryLimit = 2.5 * perImage + 8192;
      return gpu;
    }, () => runCliCapturingErrors(["encode", join(root, "data"), "-o", join(root, "split.rinr"), "--encode-batch", "4", ...ENCODE_ARGS]));
    assertEquals(split.code, EXIT.ok, split.errors);
    // The header records the batch size that ran, so the file equals a run asked for batches of 2.
    assertEquals(await Deno.readFile(join(root, "split.rinr")), await Deno.readFile(join(root, "reference.rinr")));

    const tooSmall = await withPatchedGpu(async (original, options) => {
      const gpu = await original(options);
      gpu.memoryLimit = 1000;
      return gpu;
    }, () => runCliCapturingErrors(["encode", join(root, "data"), "-o", join(root, "none.rinr"), ...ENCODE_ARGS]));
    assertEquals(tooSmall.code, EXIT.gpu, tooSmall.errors);
    assertStringIncludes(tooSmall.errors, "rapid-inr encode: GPU error: Out of GPU memory allocating one image");
    assertStringIncludes(tooSmall.errors, "One 16x16 image with 2 sine layers of width 8 needs about");
    assert(!tooSmall.errors.includes("    at "), `no stack trace:\n${tooSmall.errors}`);
    assert(!(await exists(join(root, "none.rinr"))), "no output after the failure");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

// ---------------------------------------------------------------- device lost

Deno.test("encode reports a device lost after a batch", async () => {
  const gpu = await Gpu.create({ notice: false });
  try {
    const count = 6;
    const side = 8;
    const finished: number[] = [];
    const error = await assertRejects(
      () =>
        encodeImages(gpu, { images: randomImages(count, side, 2), count, side }, {
          arch: ARCH,
          iterations: 30,
          batchSize: 2,
          onBatch: (batch) => {
            finished.push(batch.imagesDone);
            if (batch.imagesDone === 2) gpu.device.destroy();
          },
        }),
      GpuDeviceLostError,
    );
    assertEquals(finished, [2], "only the batch before the loss finished");
    assertStringIncludes(error.message, "The GPU device was lost while fitting images 3-4 of 6");
    assertStringIncludes(error.message, 'reason "destroyed"');
  } finally {
    gpu.destroy();
  }
});

Deno.test("gpu own destroy is not a lost device", async () => {
  const gpu = await Gpu.create({ notice: false });
  gpu.destroy();
  await gpu.device.lost;
  assertEquals(gpu.lostReason, undefined);
});

// Runs the CLI in this process and destroys its device the first time
// `trigger.when` returns true for a call of the log method `trigger.method`.
// Returns the exit code and the error output.
async function runWithLostDevice(
  args: string[],
  trigger: {
    method: "progress" | "info";
    when: (stage: string, state?: ProgressState) => boolean;
    memoryLimit?: number;
  },
): Promise<{ code: number; errors: string; destroyed: boolean }> {
  let gpu: Gpu | undefined;
  let destroyed = false;
  const prototype = Log.prototype as unknown as Record<string, (...args: unknown[]) => void>;
  const original = prototype[trigger.method];
  prototype[trigger.method] = function (this: Log, ...callArgs: unknown[]) {
    if (!destroyed && gpu && trigger.when(callArgs[0] as string, callArgs[1] as ProgressState)) {
      destroyed = true;
      gpu.device.destroy();
    }
    return original.apply(this, callArgs);
  };
  try {
    const result = await withPatchedGpu(async (create, options) => {
      gpu = await create(options);
      gpu.memoryLimit = trigger.memoryLimit ?? Infinity;
      return gpu;
    }, () => runCliCapturingErrors(args));
    return { ...result, destroyed };
  } finally {
    prototype[trigger.method] = original;
  }
}

Deno.test("encode CLI keeps finished batches when the device is lost", async () => {
  const root = await Deno.makeTempDir({ prefix: "gpu_faults_" });
  try {
    await writeStripes(join(root, "data"), { train: 3, test: 0, side: 16 });
    const output = join(root, "out.rinr");
    const args = ["encode", join(root, "data"), "-o", output, "--encode-batch", "2", ...ENCODE_ARGS];
    const reference = await runCliCapturingErrors([...args.slice(0, 3), join(root, "reference.rinr"), ...args.slice(4)]);
    assertEquals(reference.code, EXIT.ok, reference.errors);

    // The log reports the first finished batch (2 images) just before its checkpoint is written.
    const lost = await runWithLostDevice(args, { method: "progress", when: (stage, state) => stage === "encode" && state!.done === 2 });
    assert(lost.destroyed, "the hook destroyed the device");
    assertEquals(lost.code, EXIT.gpu, lost.errors);
    assertStringIncludes(lost.errors, "rapid-inr encode: GPU error: The GPU device was lost while fitting images 3-4 of 6");
    assertStringIncludes(lost.errors, `2 of 6 images are saved in ${output}.partial; run the same command with --resume to continue.`);
    assert(!lost.errors.includes("    at "), `no stack trace:\n${lost.errors}`);
    assertEquals((await readEncodeCheckpoint(`${output}.partial`))?.imagesDone, 2);
    assert(!(await exists(output)), "no output after the loss");

    await assertResumeMatches(args, { output, reference: join(root, "reference.rinr") });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("encode CLI names the halved batch size to resume with", async () => {
  const root = await Deno.makeTempDir({ prefix: "gpu_faults_" });
  try {
    await writeStripes(join(root, "data"), { train: 3, test: 0, side: 16 });
    const output = join(root, "out.rinr");
    const args = ["encode", join(root, "data"), "-o", output, "--encode-batch", "4", ...ENCODE_ARGS];
    const reference = await runCliCapturingErrors([...args.slice(0, 3), join(root, "reference.rinr"), "--encode-batch", "2", ...ENCODE_ARGS]);
    assertEquals(reference.code, EXIT.ok, reference.errors);

    // Room for 2.5 images plus 8 KiB, so the batch of 4 is halved to 2, then the device is lost after it.
    const memoryLimit = 2.5 * sirenImageBytes({ arch: ARCH, side: 16 }).total + 8192;
    const lost = await runWithLostDevice(args, {
      method: "progress",
      when: (stage, state) => stage === "encode" && state!.done === 2,
      memoryLimit,
    });
    assertEquals(lost.code, EXIT.gpu, lost.errors);
    assertStringIncludes(lost.errors, "run the same command with --resume and --encode-batch 2 to continue.");
    assertEquals((await readEncodeCheckpoint(`${output}.partial`))?.batchSize, 2);

    const resumed = await runCliCapturingErrors([...args.slice(0, 4), "--encode-batch", "2", ...ENCODE_ARGS, "--resume"]);
    assertEquals(resumed.code, EXIT.ok, resumed.errors);
    assertEquals(await Deno.readFile(output), await Deno.readFile(join(root, "reference.rinr")));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("train CLI keeps the last epoch when the device is lost", async () => {
  const root = await Deno.makeTempDir({ prefix: "gpu_faults_" });
  try {
    await writeStripes(join(root, "data"), { train: 4, test: 2 });
    const checkpoint = join(root, "train.ckpt");
    const args = [
      "train", "--input", "raw", "--data", join(root, "data"), "--epochs", "3", "--batch", "4",
      "--resnet-width", "2", "--seed", "3", "--checkpoint", checkpoint, "--quiet",
    ];
    // The stage logs an epoch's line after saving its checkpoint.
    const lost = await runWithLostDevice(args, { method: "info", when: (message) => message.startsWith("epoch 2:") });
    assert(lost.destroyed, "the hook destroyed the device");
    assertEquals(lost.code, EXIT.gpu, lost.errors);
    assertStringIncludes(lost.errors, "rapid-inr train: GPU error: The GPU device was lost during epoch 3 of 3");
    assertStringIncludes(lost.errors, `The first 2 epochs are saved in ${checkpoint}; run the same command with --resume to continue.`);
    assertEquals((await readTrainCheckpoint(checkpoint))?.records.length, 2);

    const resumed = await runCliCapturingErrors([...args, "--resume"]);
    assertEquals(resumed.code, EXIT.ok, resumed.errors);
    assert(!(await exists(checkpoint)), "the finished run removes its checkpoint");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

// ---------------------------------------------------------------- shader compile errors

Deno.test("shader compile error names kernel and compiler message", async () => {
  const gpu = await Gpu.create({ notice: false });
  const folder = await Deno.makeTempDir({ prefix: "gpu_faults_" });
  try {
    const file = join(folder, "broken.wgsl");
    await Deno.writeTextFile(
      file,
      [
        "@group(0) @binding(1) var<storage, read_write> y: array<f32>;",
        "@compute @workgroup_size(64)",
        "fn main(@builtin(global_invocation_id) gid: vec3<u32>) {",
        "  y[gid.x] = undefined_name * 2.0;",
        "}",
      ].join("\n"),
    );
    // Kernel files are named relative to wgsl/.
    const wgsl = new URL("../wgsl/", import.meta.url).pathname;
    const error = await assertRejects(
      () => compileKernel(gpu, { name: "test.broken", file: relative(wgsl, file), entry: "main", bindings: ["y"], workgroup: [] }),
      GpuError,
    );
    assertStringIncludes(error.message, "Kernel test.broken");
    assertStringIncludes(error.message, "failed to compile");
    // The compiler's own message, with the line of the bad name.
    assertStringIncludes(error.message, "undefined_name");
    assertStringIncludes(error.message, "at 4:");
  } finally {
    gpu.destroy();
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("compress CLI keeps finished fine-tuning batches when the device is lost", async () => {
  const root = await Deno.makeTempDir({ prefix: "gpu_faults_" });
  try {
    await writeStripes(join(root, "data"), { train: 3, test: 0, side: 16 });
    const fp32 = join(root, "fp32.rinr");
    const encoded = await runCliCapturingErrors(["encode", join(root, "data"), "-o", fp32, ...ENCODE_ARGS]);
    assertEquals(encoded.code, EXIT.ok, encoded.errors);
    const output = join(root, "small.rinr");
    const args = [
      "compress", fp32, "-o", output, "--bits", "6", "--tune-iterations", "4", "--prune", "0,0.3", "--tune-batch", "2", "--quiet",
    ];
    const reference = await runCliCapturingErrors([...args.slice(0, 3), join(root, "reference.rinr"), ...args.slice(4)]);
    assertEquals(reference.code, EXIT.ok, reference.errors);

    // 2 images x 4 iterations x 2 steps finish the first batch; the next report is inside the second.
    const lost = await runWithLostDevice(args, { method: "progress", when: (stage, state) => stage === "compress" && state!.done > 16 });
    assert(lost.destroyed, "the hook destroyed the device");
    assertEquals(lost.code, EXIT.gpu, lost.errors);
    assertStringIncludes(lost.errors, `2 of 6 images are fine-tuned and saved in ${output}.partial; run the same command with --resume to continue.`);
    assert(!lost.errors.includes("    at "), `no stack trace:\n${lost.errors}`);
    assert(!(await exists(output)), "no output after the loss");

    await assertResumeMatches(args, { output, reference: join(root, "reference.rinr") });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("decoder reports a dataset that does not fit GPU memory", async () => {
  const gpu = await Gpu.create({ notice: false });
  try {
    const arch = { sineLayers: 2, width: 8, w0: 30 };
    const count = 50;
    const weights = new Float32Array(count * (2 * 8 + 8 + 8 * 8 + 8 + 8 * 3 + 3));
    const quantized = quantize(arch, weights, 8);
    gpu.memoryLimit = 2048;
    const error = await assertRejects(
      () => InrDecoder.create(gpu, { arch, resolution: 8, weights: quantized }),
      GpuOutOfMemoryError,
    );
    assertStringIncludes(error.message, `the resident dataset of ${count} images`);
    assertStringIncludes(error.message, "fewer bits per layer");
    assertEquals(gpu.allocatedBytes, 0, "no buffer is left behind");
  } finally {
    gpu.destroy();
  }
});
