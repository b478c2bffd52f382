// Fits SIRENs with rapid-inr's GPU encoder and prints the mean PSNR, with the
// same command-line options as bench/siren_torch_reference.py, so the two can
// be compared on the same images.
//
//   DENO_WEBGPU_BACKEND=vulkan deno run -A bench/encode_compare.ts \
//     --root ../shared/data/cifar10/train --per-class 100 --iterations 1000 \
//     --lr 5e-4 --layers 5 --width 13 --save-raw /tmp/cifar.u8 --out json
//   python3 bench/siren_torch_reference.py --raw /tmp/cifar.u8 --side 32 \
//     --iterations 1000 --lr 5e-4 --layers 5 --width 13 --out json
//
// --root is the folder whose subfolders are the classes, or a dataset folder
// with a "train" subfolder. The project's loader decodes it and keeps the
// first --per-class files of each class in sorted order.
// --save-raw writes those pixels (u8 RGB [N][R][R][3]) for the peer's --raw.

import { parseArgs } from "@std/cli/parse-args";
import { Gpu } from "../src/gpu/device.ts";
import { loadImageFolder } from "../src/data/mod.ts";
import { encodeImages } from "../src/inr/encode.ts";

const HELP =
  `Usage: deno run -A bench/encode_compare.ts (--root DIR | --raw FILE --side R) [options]

  --root DIR        image folder <DIR>/<class>/<files>
  --raw FILE        u8 RGB images [N][R][R][3]; needs --side
  --side R          image side in pixels (with --root: resize to R)
  --per-class K     with --root: first K sorted files of each class (default: all)
  --count N         with --raw: use only the first N images
  --iterations T    Adam iterations per image (default 5000)
  --lr RATE         initial learning rate (default 5e-4)
  --layers S        sine layers (default 5)
  --width D         width of every sine layer (default 13)
  --w0 W            frequency factor inside every sine (default 30)
  --batch B         images fitted together (default: as many as fit)
  --seed SEED       weight initialization seed (default 0)
  --save-raw FILE   write the loaded pixels for the PyTorch peer's --raw
  --raw-only        with --save-raw: stop after writing the pixels, fit nothing
  --out FORMAT      text or json (default text)`;

function positiveInteger(name: string, value: unknown, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) {
    throw new RangeError(`--${name} must be a positive integer, got ${value}.`);
  }
  return number;
}

async function loadImages(
  args: Record<string, unknown>,
): Promise<{ images: Uint8Array; side: number }> {
  const side = positiveInteger("side", args.side);
  if (args.raw !== undefined) {
    if (side === undefined) throw new RangeError("--raw needs --side (the image side in pixels).");
    const bytes = await Deno.readFile(String(args.raw));
    const imageBytes = side * side * 3;
    if (bytes.length === 0 || bytes.length % imageBytes !== 0) {
      throw new RangeError(
        `${args.raw} has an invalid size of ${bytes.length} bytes: not a multiple of ${side} x ${side} x 3. Check --side.`,
      );
    }
    const count = positiveInteger("count", args.count, bytes.length / imageBytes)!;
    return {
      images: bytes.subarray(0, Math.min(count, bytes.length / imageBytes) * imageBytes),
      side,
    };
  }
  const dataset = await loadImageFolder(String(args.root), {
    size: side,
    limitPerClass: positiveInteger("per-class", args["per-class"]),
  });
  return { images: dataset.images, side: dataset.side };
}

async function main(): Promise<void> {
  const args = parseArgs(Deno.args, {
    string: [
      "root",
      "raw",
      "save-raw",
      "out",
      "side",
      "per-class",
      "count",
      "iterations",
      "lr",
      "layers",
      "width",
      "w0",
      "batch",
      "seed",
    ],
    boolean: ["help", "raw-only"],
  });
  if (args.help || (args.root === undefined) === (args.raw === undefined)) {
    console.log(HELP);
    if (!args.help) Deno.exit(2);
    return;
  }

  if (args.out !== undefined && args.out !== "text" && args.out !== "json") {
    throw new RangeError(`--out must be text or json, got ${args.out}.`);
  }
  const learningRate = args.lr === undefined ? 5e-4 : Number(args.lr);
  const w0 = args.w0 === undefined ? 30 : Number(args.w0);
  const seed = args.seed === undefined ? 0 : Number(args.seed);
  if (!(learningRate > 0)) throw new RangeError(`--lr must be a positive number, got ${args.lr}.`);
  if (!(w0 > 0)) throw new RangeError(`--w0 must be a positive number, got ${args.w0}.`);
  if (!Number.isSafeInteger(seed)) {
    throw new RangeError(`--seed must be an integer, got ${args.seed}.`);
  }

  const { images, side } = await loadImages(args);
  if (args["save-raw"] !== undefined) await Deno.writeFile(String(args["save-raw"]), images);
  if (args["raw-only"]) return;
  const count = images.length / (side * side * 3);
  const arch = {
    sineLayers: positiveInteger("layers", args.layers, 5)!,
    width: positiveInteger("width", args.width, 13)!,
    w0,
  };
  const iterations = positiveInteger("iterations", args.iterations, 5000)!;

  const gpu = await Gpu.create();
  try {
    const result = await encodeImages(gpu, { images, count, side }, {
      arch,
      iterations,
      learningRate,
      batchSize: positiveInteger("batch", args.batch),
      seed,
    });
    const psnr = Array.from(result.psnr);
    const report = {
      images: count,
      side,
      layers: arch.sineLayers,
      width: arch.width,
      w0: arch.w0,
      iterations,
      learningRate,
      batchSize: result.batchSize,
      meanPsnr: psnr.reduce((sum, value) => sum + value, 0) / count,
      minPsnr: Math.min(...psnr),
      maxPsnr: Math.max(...psnr),
      seconds: result.seconds,
      imagesPerSecond: result.imagesPerSecond,
      adapter: gpu.adapterName,
      psnr: psnr.map((value) => Math.round(value * 1e4) / 1e4),
    };
    if (args.out === "json") {
      console.log(JSON.stringify(report));
    } else {
      console.log(
        `${count} images of ${side} px, ${arch.sineLayers} x ${arch.width}, ${iterations} iterations: ` +
          `mean PSNR ${report.meanPsnr.toFixed(3)} dB (min ${report.minPsnr.toFixed(3)}, ` +
          `max ${report.maxPsnr.toFixed(3)}), ${result.seconds.toFixed(1)} s`,
      );
    }
  } finally {
    gpu.destroy();
  }
}

try {
  await main();
} catch (error) {
  console.error(`encode_compare: ${(error as Error).message}`);
  Deno.exit(1);
}
