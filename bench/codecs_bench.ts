// Decode time per image of the candidate PNG and JPEG codecs, on 32-pixel
// files (CIFAR-10) and ~500-pixel files (Oxford flowers JPEGs, Kodak PNGs).
//
//   deno bench -A bench/codecs_bench.ts
//
// Reads ../shared/data and registers no benchmark when it is absent. Each
// candidate first decodes one file of every set and must agree with
// `decodeImage` (same size, mean absolute difference below 3 levels) before it
// is timed. `fast-png` and `sharp` are imported at run time and skipped when
// they fail to load.

import jpegJs from "jpeg-js";
import jsquashPngDecode from "@jsquash/png/decode.js";
import jsquashJpegDecode from "@jsquash/jpeg/decode.js";
import { join } from "@std/path";
import { decodeImage } from "../src/data/image.ts";
import { resizeToSquare } from "../src/data/resize.ts";

const DATA = new URL("../../shared/data/", import.meta.url).pathname;

interface FileSet {
  group: string;
  folder: string;
  pattern: RegExp;
  count: number;
  format: "png" | "jpeg";
}

const SETS: FileSet[] = [
  {
    group: "PNG 32x32 (CIFAR-10)",
    folder: "cifar10-png-sample/train",
    pattern: /\.png$/,
    count: 100,
    format: "png",
  },
  {
    group: "JPEG 32x32 (CIFAR-10)",
    folder: "cifar10/train",
    pattern: /\.jpg$/,
    count: 100,
    format: "jpeg",
  },
  {
    group: "JPEG ~500 px (flowers)",
    folder: "oxford102-flowers/train",
    pattern: /\.jpg$/,
    count: 20,
    format: "jpeg",
  },
  { group: "PNG 768x512 (Kodak)", folder: "kodak24", pattern: /\.png$/, count: 6, format: "png" },
];

/** Decoded pixels with `channels` interleaved samples per pixel (RGB first). */
interface Pixels {
  width: number;
  height: number;
  channels: number;
  data: ArrayLike<number>;
}

type Decoder = (bytes: Uint8Array) => Pixels | Promise<Pixels>;

const buffer = (bytes: Uint8Array) => bytes.slice().buffer as ArrayBuffer;

const PNG_DECODERS: Record<string, Decoder> = {
  "@jsquash/png (Wasm)": async (bytes) => {
    const image = await jsquashPngDecode(buffer(bytes));
    return { width: image.width, height: image.height, channels: 4, data: image.data };
  },
};

const JPEG_DECODERS: Record<string, Decoder> = {
  "jpeg-js (JS)": (bytes) => {
    const image = jpegJs.decode(bytes, { useTArray: true, formatAsRGBA: false });
    return { width: image.width, height: image.height, channels: 3, data: image.data };
  },
  "@jsquash/jpeg (Wasm)": async (bytes) => {
    const image = await jsquashJpegDecode(buffer(bytes));
    return { width: image.width, height: image.height, channels: 4, data: image.data };
  },
};

/**
 * Imports an npm package that only this benchmark uses, or returns undefined
 * when it fails to load. The specifier is a variable so that type checking
 * does not fetch these packages.
 */
async function importOptional(specifier: string): Promise<any> {
  try {
    return await import(specifier);
  } catch (error) {
    const reason = (error as Error).message.split("\n")[0];
    console.error(`codecs_bench: ${specifier} skipped, it failed to load: ${reason}`);
    return undefined;
  }
}

/** Returns decoders of the packages that are not dependencies of the product. */
async function loadOptionalDecoders(): Promise<
  { png: Record<string, Decoder>; all: Record<string, Decoder> }
> {
  const png: Record<string, Decoder> = {};
  const all: Record<string, Decoder> = {};
  const fastPng = await importOptional("npm:fast-png@8.0.0");
  if (fastPng) {
    png["fast-png (JS)"] = (bytes) => {
      const image = fastPng.decode(bytes);
      return {
        width: image.width,
        height: image.height,
        channels: image.channels,
        data: image.data,
      };
    };
  }
  // sharp wraps libvips in a native Node-API addon.
  const sharp = (await importOptional("npm:sharp@0.35.5"))?.default;
  if (sharp) {
    all["sharp (native libvips)"] = async (bytes) => {
      const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
      return { width: info.width, height: info.height, channels: info.channels, data };
    };
  }
  return { png, all };
}

async function listFiles(set: FileSet): Promise<Uint8Array[]> {
  const paths: string[] = [];
  const walk = async (folder: string) => {
    const entries = [];
    for await (const entry of Deno.readDir(folder)) entries.push(entry);
    entries.sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      if (paths.length >= set.count) return;
      const path = join(folder, entry.name);
      if (entry.isDirectory) await walk(path);
      else if (set.pattern.test(entry.name)) paths.push(path);
    }
  };
  await walk(join(DATA, set.folder));
  return Promise.all(paths.map((path) => Deno.readFile(path)));
}

/** Throws unless `decoder` agrees with `decodeImage` on `bytes`. */
async function checkSane(name: string, decoder: Decoder, bytes: Uint8Array): Promise<void> {
  const reference = await decodeImage(bytes, name);
  const pixels = await decoder(bytes);
  if (pixels.width !== reference.width || pixels.height !== reference.height) {
    throw new Error(
      `${name}: decoded ${pixels.width}x${pixels.height}, expected ${reference.width}x${reference.height}`,
    );
  }
  let total = 0;
  const count = reference.width * reference.height;
  for (let p = 0; p < count; p++) {
    for (let c = 0; c < 3; c++) {
      const value = pixels.channels >= 3
        ? pixels.data[p * pixels.channels + c]
        : pixels.data[p * pixels.channels];
      total += Math.abs(value - reference.rgb[p * 3 + c]);
    }
  }
  const meanError = total / (count * 3);
  if (!(meanError < 3)) {
    throw new Error(`${name}: mean absolute difference ${meanError.toFixed(2)} from decodeImage`);
  }
}

const haveData = await Deno.stat(DATA).then(() => true, () => false);
if (!haveData) {
  console.error(`codecs_bench: ${DATA} is absent, so no codec is measured.`);
} else {
  const optional = await loadOptionalDecoders();
  for (const set of SETS) {
    const files = await listFiles(set);
    const decoders: Record<string, Decoder> = set.format === "png"
      ? { ...optional.png, ...PNG_DECODERS, ...optional.all }
      : { ...JPEG_DECODERS, ...optional.all };
    Deno.bench({
      name: "decodeImage (product path, RGB out)",
      group: set.group,
      baseline: true,
      fn: cycle(files, async (bytes) => void await decodeImage(bytes, "bench")),
    });
    for (const [name, decoder] of Object.entries(decoders)) {
      await checkSane(`${name} on ${set.group}`, decoder, files[0]);
      Deno.bench({
        name,
        group: set.group,
        fn: cycle(files, async (bytes) => void await decoder(bytes)),
      });
    }
    if (set.group.startsWith("JPEG ~500")) {
      Deno.bench({
        name: "decodeImage + resizeToSquare 224 (loader path)",
        group: set.group,
        fn: cycle(
          files,
          async (bytes) => void resizeToSquare(await decodeImage(bytes, "bench"), { size: 224 }),
        ),
      });
    }
  }
}

/** Returns a benchmark body that decodes the next file of `files` on each call. */
function cycle(
  files: Uint8Array[],
  run: (bytes: Uint8Array) => Promise<void>,
): () => Promise<void> {
  let next = 0;
  // Deno 2.9.6's bench runner did not await a plain function returning a promise, so this one is async.
  return async () => {
    await run(files[next++ % files.length]);
  };
}
