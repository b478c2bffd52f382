// Bad input for the dataset loaders and the CLI. Every file is built here in
// a temporary folder: unreadable paths, corrupt and truncated PNG and JPEG
// files, non-images, empty files and folders, odd image flavours that must
// still load, odd file names, and damaged CIFAR-10 and IDX files.

import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { join } from "@std/path";
import {
  DataError,
  decodeImage,
  describeDataset,
  encodeIdx,
  encodePng,
  loadCifar10Binary,
  loadDataset,
  loadIdx,
  loadImageFolder,
  MAX_IMAGE_FILE_BYTES,
  MAX_IMAGE_PIXELS,
  type RgbImage,
} from "../src/data/mod.ts";
import { allocatePixels } from "../src/data/common.ts";
import { readMaybeGzip, readRegularFile } from "../src/data/files.ts";
import { crc32 } from "../src/data/image.ts";

// ---------------------------------------------------------------------------
// Files built here

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "rapid-inr-robust-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function solid(width: number, height: number, color: [number, number, number]): RgbImage {
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) rgb.set(color, p * 3);
  return { width, height, rgb };
}

async function write(path: string, bytes: Uint8Array): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeFile(path, bytes);
}

async function writePng(path: string, image: RgbImage): Promise<void> {
  await write(path, await encodePng(image));
}

async function deflate(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

interface PngSpec {
  width: number;
  height: number;
  /** 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA. */
  colorType: 0 | 2 | 3 | 4 | 6;
  bitDepth: 1 | 2 | 4 | 8 | 16;
  /** The samples of every pixel, in PNG channel order, the same for the whole image. */
  pixel: number[];
  palette?: [number, number, number][];
}

/** Builds a flat PNG of any color type (rows unfiltered, sub-byte samples packed MSB first). */
async function buildPng(spec: PngSpec): Promise<Uint8Array> {
  const bitsPerPixel = spec.pixel.length * spec.bitDepth;
  const rowBytes = Math.ceil((spec.width * bitsPerPixel) / 8);
  const raw = new Uint8Array(spec.height * (rowBytes + 1));
  for (let y = 0; y < spec.height; y++) {
    const row = raw.subarray(y * (rowBytes + 1) + 1, (y + 1) * (rowBytes + 1));
    let bit = 0;
    for (let x = 0; x < spec.width; x++) {
      for (const sample of spec.pixel) {
        if (spec.bitDepth === 16) {
          row[bit / 8] = sample >> 8;
          row[bit / 8 + 1] = sample & 0xff;
        } else {
          row[bit >> 3] |= sample << (8 - spec.bitDepth - (bit & 7));
        }
        bit += spec.bitDepth;
      }
    }
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, spec.width);
  view.setUint32(4, spec.height);
  header[8] = spec.bitDepth;
  header[9] = spec.colorType;
  const chunks = [pngChunk("IHDR", header)];
  if (spec.palette) chunks.push(pngChunk("PLTE", new Uint8Array(spec.palette.flat())));
  chunks.push(pngChunk("IDAT", await deflate(raw)), pngChunk("IEND", new Uint8Array(0)));
  return concat([new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), ...chunks]);
}

/**
 * Builds a baseline JPEG whose components are each one flat value (0..255):
 * one component is grayscale, three are YCbCr, four are CMYK, by default with
 * an Adobe marker that marks the samples as not transformed. Every 8x8 block stores only its DC coefficient, with a quantization
 * table of ones, a DC Huffman table of 4-bit codes for categories 0..11 and an
 * AC table whose only code, "0", is end-of-block.
 */
function buildFlatJpeg(
  width: number,
  height: number,
  values: number[],
  options: { adobe?: boolean } = {},
): Uint8Array {
  const segment = (
    marker: number,
    body: number[],
  ) => [0xff, marker, (body.length + 2) >> 8, (body.length + 2) & 0xff, ...body];
  const count = values.length;
  const components = values.map((_, i) => i + 1);
  const dcCounts = new Array(16).fill(0);
  dcCounts[3] = 12;
  const acCounts = new Array(16).fill(0);
  acCounts[0] = 1;

  const bits: number[] = [];
  const put = (value: number, length: number) => {
    for (let i = length - 1; i >= 0; i--) bits.push((value >> i) & 1);
  };
  const blocks = Math.ceil(width / 8) * Math.ceil(height / 8);
  for (let block = 0; block < blocks; block++) {
    for (const value of values) {
      // DC is coded as the difference to the previous block of the component, which is flat.
      const difference = block === 0 ? 8 * (value - 128) : 0;
      const magnitude = Math.abs(difference);
      const category = magnitude === 0 ? 0 : Math.floor(Math.log2(magnitude)) + 1;
      put(category, 4);
      if (category > 0) {
        put(difference >= 0 ? difference : difference + (1 << category) - 1, category);
      }
      put(0, 1); // end of block
    }
  }
  while (bits.length % 8 !== 0) bits.push(1);
  const scan: number[] = [];
  for (let i = 0; i < bits.length; i += 8) {
    const byte = bits.slice(i, i + 8).reduce((sum, b) => (sum << 1) | b, 0);
    scan.push(byte);
    if (byte === 0xff) scan.push(0); // byte stuffing
  }

  return new Uint8Array([
    0xff,
    0xd8,
    ...segment(0xdb, [0, ...new Array(64).fill(1)]),
    ...(count === 4 && options.adobe !== false
      ? segment(0xee, [...new TextEncoder().encode("Adobe"), 0, 100, 0, 0, 0, 0, 0])
      : []),
    ...segment(0xc0, [
      8,
      height >> 8,
      height & 0xff,
      width >> 8,
      width & 0xff,
      count,
      ...components.flatMap((id) => [id, 0x11, 0]),
    ]),
    ...segment(0xc4, [0x00, ...dcCounts, ...Array.from({ length: 12 }, (_, i) => i)]),
    ...segment(0xc4, [0x10, ...acCounts, 0x00]),
    ...segment(0xda, [count, ...components.flatMap((id) => [id, 0x00]), 0, 63, 0]),
    ...scan,
    0xff,
    0xd9,
  ]);
}

/** Writes <root>/<class>/<index>.png for `count` flat 8x8 images. */
async function writeGoodImages(root: string, className: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await writePng(
      join(root, className, `${String(i).padStart(3, "0")}.png`),
      solid(8, 8, [i % 256, 50, 100]),
    );
  }
}

/** Creates a file whose name contains the byte 0xFF, which is not UTF-8. Returns false where it cannot. */
async function writeNonUtf8Name(folder: string): Promise<boolean> {
  const command = new Deno.Command("python3", {
    args: [
      "-c",
      "import os, sys; open(os.path.join(sys.argv[1].encode(), b'bad\\xff.png'), 'wb').write(b'x')",
      folder,
    ],
    stdout: "null",
    stderr: "null",
  });
  try {
    return (await command.output()).success;
  } catch {
    return false;
  }
}

async function makeFifo(path: string): Promise<boolean> {
  try {
    return (await new Deno.Command("mkfifo", { args: [path], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}

function collect(): { warnings: string[]; onWarning: (message: string) => void } {
  const warnings: string[] = [];
  return { warnings, onWarning: (message) => warnings.push(message) };
}

// ---------------------------------------------------------------------------
// Bad images among good ones

Deno.test("loadImageFolder skips every kind of bad image", async (t) => {
  await withTempDir(async (dir) => {
    const root = join(dir, "data");
    await writeGoodImages(root, "good", 3);
    const bad = join(root, "mixed");
    await writePng(join(bad, "keep.png"), solid(8, 8, [1, 2, 3]));

    const png = await encodePng(solid(16, 16, [200, 100, 50]));
    const idat = png.findIndex((_, i) => String.fromCharCode(...png.subarray(i, i + 4)) === "IDAT");
    const flipped = png.slice();
    flipped[idat + 8] ^= 0xff;
    const jpeg = buildFlatJpeg(64, 64, [90, 100, 160]);
    const badCrc = png.slice();
    badCrc[idat + 4 + 6] ^= 0x55;
    const hugePng = await buildPng({
      width: 20000,
      height: 20000,
      colorType: 2,
      bitDepth: 8,
      pixel: [],
    });
    const hugeJpeg = jpeg.slice();
    // SOF0 follows SOI (2 bytes) and the 69-byte DQT segment; height and width sit 5 and 7 bytes into it.
    hugeJpeg.set([0xea, 0x60, 0xea, 0x60], 2 + 69 + 5);

    const cases: Record<string, { bytes?: Uint8Array; reason: string }> = {
      "truncated.png": {
        bytes: png.subarray(0, idat + 12),
        reason: "truncated inside the IDAT chunk",
      },
      "flipped.png": { bytes: flipped, reason: "fails its CRC check" },
      "bad-crc.png": { bytes: badCrc, reason: "CRC" },
      "cut.jpg": { bytes: jpeg.subarray(0, jpeg.length - 40), reason: "truncated" },
      "no-frame.jpeg": {
        bytes: new Uint8Array([0xff, 0xd8, 0xff, 0xd9]),
        reason: "no frame header",
      },
      "text.png": {
        bytes: new TextEncoder().encode("this is not an image"),
        reason: "not a PNG or JPEG",
      },
      "empty.jpg": { bytes: new Uint8Array(0), reason: "empty file" },
      "huge.png": { bytes: hugePng, reason: `exceeds the maximum of ${MAX_IMAGE_PIXELS} pixels` },
      "huge.jpg": { bytes: hugeJpeg, reason: "60000x60000 exceeds the maximum" },
      // jpeg-js 0.4.4 reads four components only with an Adobe marker, and MozJPEG cannot convert CMYK.
      "cmyk-no-adobe.jpg": {
        bytes: buildFlatJpeg(8, 8, [0, 0, 0, 0], { adobe: false }),
        reason: "Unsupported color mode (4 components)",
      },
      "dangling.png": { reason: "symbolic link whose target does not exist" },
      "loop.png": { reason: "loop of symbolic links" },
      "device.png": { reason: "not a regular file" },
      "sparse.png": { reason: `more than the maximum of ${MAX_IMAGE_FILE_BYTES} bytes` },
    };
    for (const [name, { bytes }] of Object.entries(cases)) {
      if (bytes) await Deno.writeFile(join(bad, name), bytes);
    }
    await Deno.symlink(join(dir, "missing.png"), join(bad, "dangling.png"));
    await Deno.symlink(join(bad, "loop.png"), join(bad, "loop.png"));
    await Deno.symlink("/dev/zero", join(bad, "device.png"));
    // A sparse file: its size is past the limit without using disk space, and it is never read.
    await Deno.writeFile(join(bad, "sparse.png"), new Uint8Array(0));
    await Deno.truncate(join(bad, "sparse.png"), MAX_IMAGE_FILE_BYTES + 1);
    if (await makeFifo(join(bad, "fifo.png"))) cases["fifo.png"] = { reason: "not a regular file" };
    if (await writeNonUtf8Name(bad)) cases["bad\uFFFD.png"] = { reason: "not valid UTF-8" };

    const { warnings, onWarning } = collect();
    const dataset = await loadImageFolder(root, { maxBadFraction: 1, onWarning });
    assertEquals(dataset.classNames, ["good", "mixed"]);
    assertEquals(Array.from(dataset.labels), [0, 0, 0, 1]);
    assertEquals(dataset.paths.at(-1), join(bad, "keep.png"));
    assertEquals(Array.from(dataset.images.subarray(3 * 8 * 8 * 3, 3 * 8 * 8 * 3 + 3)), [1, 2, 3]);
    assertEquals(dataset.images.length, 4 * 8 * 8 * 3);
    assertEquals(describeDataset(dataset).skipped, Object.keys(cases).length);

    const skipped = new Map(dataset.skipped!.map((entry) => [entry.path, entry.reason]));
    for (const [name, { reason }] of Object.entries(cases)) {
      await t.step(name, () => {
        const path = join(bad, name);
        const actual = skipped.get(path);
        assert(
          actual !== undefined,
          `${name} is not in skipped: ${[...skipped.keys()].join(", ")}`,
        );
        assertStringIncludes(actual, reason);
        const lines = warnings.filter((line) => line.includes(path));
        assertEquals(lines.length, 1, `one warning line for ${name}: ${lines.join(" | ")}`);
        assertEquals(lines[0], `skipped ${path}: ${actual}`);
      });
    }
    assertEquals(warnings.length, Object.keys(cases).length);
  });
});

Deno.test("loadImageFolder bad fraction limit", async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, "data");
    await writeGoodImages(root, "a", 50);
    await writeGoodImages(root, "b", 49);
    // "0-" sorts before "000", so the bad files come first in their class.
    const firstBad = join(root, "b", "0-bad-1.png");
    await Deno.writeTextFile(firstBad, "not a png");

    // 1 bad of 100 is exactly the default maximum of 1%.
    const { warnings, onWarning } = collect();
    const dataset = await loadImageFolder(root, { onWarning });
    assertEquals(dataset.labels.length, 99);
    assertEquals(dataset.skipped, [{ path: firstBad, reason: dataset.skipped![0].reason }]);
    assertStringIncludes(dataset.skipped![0].reason, "not a PNG or JPEG");
    assertEquals(warnings.length, 1);

    // A second bad file makes 2 of 101, more than 1%.
    await Deno.writeFile(join(root, "b", "0-bad-2.jpg"), new Uint8Array(0));
    const error = await assertRejects(() => loadImageFolder(root), DataError);
    assertStringIncludes(error.message, "at least 2 of the 101 requested images");
    assertStringIncludes(error.message, "maximum bad fraction 0.01 (1%)");
    assertStringIncludes(error.message, `The first: ${firstBad}: not a PNG or JPEG`);
    assertStringIncludes(error.message, "--max-bad-fraction");

    const raised = await loadImageFolder(root, { maxBadFraction: 0.02 });
    assertEquals(raised.labels.length, 99);
    assertEquals(raised.skipped!.length, 2);

    // The fraction counts the requested images only.
    const limited = await assertRejects(
      () => loadImageFolder(root, { limitPerClass: 2, maxBadFraction: 0.2 }),
      DataError,
    );
    assertStringIncludes(limited.message, "of the 4 requested images");

    const zero = await assertRejects(() => loadImageFolder(root, { maxBadFraction: 0 }), DataError);
    assertStringIncludes(zero.message, "at least 1 of the 101");
    await assertRejects(() => loadImageFolder(root, { maxBadFraction: 1.5 }), RangeError, "0..1");
  });
});

Deno.test("loadImageFolder strict fails on first bad", async () => {
  await withTempDir(async (dir) => {
    await writeGoodImages(dir, "a", 3);
    await Deno.writeTextFile(join(dir, "a", "001x.png"), "broken");
    await Deno.writeTextFile(join(dir, "a", "002x.png"), "broken too");
    const { warnings, onWarning } = collect();
    const error = await assertRejects(
      () => loadImageFolder(dir, { strict: true, maxBadFraction: 1, onWarning }),
      DataError,
    );
    assertEquals(error.path, join(dir, "a", "001x.png"));
    assertStringIncludes(error.message, "not a PNG or JPEG");
    assertEquals(warnings, []);
  });
});

Deno.test("loadImageFolder class of only bad images", async () => {
  await withTempDir(async (dir) => {
    await writeGoodImages(dir, "fine", 2);
    await Deno.mkdir(join(dir, "broken"));
    await Deno.writeTextFile(join(dir, "broken", "a.png"), "no");
    const error = await assertRejects(() => loadImageFolder(dir, { maxBadFraction: 1 }), DataError);
    assertStringIncludes(error.message, `all 1 requested images of class "broken"`);
    assertEquals(error.path, join(dir, "broken"));
  });
});

Deno.test("loadImageFolder empty folders", async () => {
  await withTempDir(async (dir) => {
    const empty = join(dir, "empty");
    await Deno.mkdir(empty);
    const noClasses = await assertRejects(() => loadImageFolder(empty), DataError);
    assertStringIncludes(noClasses.message, "has no class folders");

    const emptyTrain = join(dir, "with-train");
    await Deno.mkdir(join(emptyTrain, "train"), { recursive: true });
    const noTrainClasses = await assertRejects(() => loadDataset(emptyTrain), DataError);
    assertStringIncludes(noTrainClasses.message, join(emptyTrain, "train"));
    assertStringIncludes(noTrainClasses.message, "has no class folders");

    const emptyClass = join(dir, "classes");
    await writeGoodImages(emptyClass, "full", 1);
    await Deno.mkdir(join(emptyClass, "hollow"));
    const hollow = await assertRejects(() => loadImageFolder(emptyClass), DataError);
    assertStringIncludes(hollow.message, `class "hollow" has no .png, .jpg or .jpeg files`);

    const zeroIdx = join(dir, "zero");
    await Deno.mkdir(zeroIdx);
    await Deno.writeFile(
      join(zeroIdx, "train-images-idx3-ubyte"),
      encodeIdx({ dims: [0, 28, 28], data: new Uint8Array(0) }),
    );
    await Deno.writeFile(
      join(zeroIdx, "train-labels-idx1-ubyte"),
      encodeIdx({ dims: [0], data: new Uint8Array(0) }),
    );
    const noImages = await assertRejects(() => loadDataset(zeroIdx), DataError);
    assertStringIncludes(noImages.message, "contains no images");
  });
});

// ---------------------------------------------------------------------------
// Odd but valid images

Deno.test("loadImageFolder loads every image flavour", async () => {
  await withTempDir(async (dir) => {
    const folder = join(dir, "flavours");
    const palette: [number, number, number][] = [[0, 0, 0], [10, 20, 30], [200, 150, 100]];
    const pngs: Record<string, { spec: PngSpec; rgb: [number, number, number] }> = {
      "gray8": {
        spec: { width: 5, height: 5, colorType: 0, bitDepth: 8, pixel: [77] },
        rgb: [77, 77, 77],
      },
      "gray1": {
        spec: { width: 5, height: 5, colorType: 0, bitDepth: 1, pixel: [1] },
        rgb: [255, 255, 255],
      },
      "gray16": {
        spec: { width: 5, height: 5, colorType: 0, bitDepth: 16, pixel: [0x8080] },
        rgb: [128, 128, 128],
      },
      "gray-alpha": {
        spec: { width: 5, height: 5, colorType: 4, bitDepth: 8, pixel: [60, 0] },
        rgb: [60, 60, 60],
      },
      "rgba": {
        spec: { width: 5, height: 5, colorType: 6, bitDepth: 8, pixel: [1, 2, 3, 4] },
        rgb: [1, 2, 3],
      },
      "rgb16": {
        spec: { width: 5, height: 5, colorType: 2, bitDepth: 16, pixel: [0xffff, 0x0101, 0x0000] },
        rgb: [255, 1, 0],
      },
      "rgba16": {
        spec: {
          width: 5,
          height: 5,
          colorType: 6,
          bitDepth: 16,
          pixel: [0x1000, 0x2000, 0x3000, 0],
        },
        rgb: [16, 32, 48],
      },
      "palette8": {
        spec: { width: 5, height: 5, colorType: 3, bitDepth: 8, pixel: [2], palette },
        rgb: [200, 150, 100],
      },
      "palette2": {
        spec: { width: 5, height: 5, colorType: 3, bitDepth: 2, pixel: [1], palette },
        rgb: [10, 20, 30],
      },
    };
    for (const [name, { spec }] of Object.entries(pngs)) {
      await write(join(folder, "png", `${name}.png`), await buildPng(spec));
    }

    const jpegs: Record<string, number[]> = {
      "gray": [90],
      "ycbcr": [90, 128, 128],
      "cmyk": [0, 0, 0, 0],
      "cmyk-white": [255, 255, 255, 255],
    };
    for (const [name, values] of Object.entries(jpegs)) {
      await write(join(folder, "jpeg", `${name}.jpg`), buildFlatJpeg(16, 8, values));
    }
    // The format comes from the magic bytes, so a PNG named .JPG loads.
    await write(join(folder, "jpeg", "png-inside.JPG"), await encodePng(solid(4, 4, [9, 8, 7])));

    const dataset = await loadImageFolder(folder, { size: 4, maxBadFraction: 0 });
    assertEquals(dataset.skipped, []);
    const pixel = (index: number) =>
      Array.from(dataset.images.subarray(index * 48, index * 48 + 3));
    const isFlat = (index: number) => {
      const image = dataset.images.subarray(index * 48, (index + 1) * 48);
      return image.every((value, i) => value === image[i % 3]);
    };
    const names = dataset.paths.map((path) => path.slice(folder.length + 1));
    assertEquals(names, [
      "jpeg/cmyk-white.jpg",
      "jpeg/cmyk.jpg",
      "jpeg/gray.jpg",
      "jpeg/png-inside.JPG",
      "jpeg/ycbcr.jpg",
      ...Object.keys(pngs).sort().map((name) => `png/${name}.png`),
    ]);
    for (const [name, { rgb }] of Object.entries(pngs)) {
      const index = names.indexOf(`png/${name}.png`);
      assertEquals(pixel(index), rgb, name);
      assert(isFlat(index), `${name} is flat`);
    }
    for (let index = 0; index < 5; index++) assert(isFlat(index), `${names[index]} is flat`);
    assertEquals(pixel(2), [90, 90, 90]);
    assertEquals(pixel(3), [9, 8, 7]);
    assertEquals(pixel(4), [90, 90, 90]);
    // jpeg-js reads Adobe CMYK samples as inverted ink (0 is full ink), so zero samples decode to black.
    assertEquals(pixel(0), [255, 255, 255]);
    assertEquals(pixel(1), [0, 0, 0]);
  });
});

Deno.test("loadImageFolder resizes mixed sizes", async () => {
  await withTempDir(async (dir) => {
    await writePng(join(dir, "c", "1-tiny.png"), solid(1, 1, [255, 0, 0]));
    await writePng(join(dir, "c", "2-wide.png"), solid(30, 10, [0, 255, 0]));
    await writePng(join(dir, "c", "3-tall.png"), solid(3, 17, [0, 0, 255]));
    await writePng(join(dir, "c", "4-big.png"), solid(64, 64, [5, 6, 7]));

    const resized = await loadImageFolder(dir, { size: 6 });
    assertEquals(resized.side, 6);
    assertEquals(resized.images.length, 4 * 6 * 6 * 3);
    const colors = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [5, 6, 7]];
    colors.forEach((color, n) => {
      const image = resized.images.subarray(n * 108, (n + 1) * 108);
      for (let p = 0; p < 36; p++) {
        assertEquals(Array.from(image.subarray(p * 3, p * 3 + 3)), color, `image ${n} pixel ${p}`);
      }
    });

    // Without a size the first image (1x1) sets it, and the others are scaled down to it.
    const first = await loadImageFolder(dir);
    assertEquals(first.side, 1);
    assertEquals(Array.from(first.images), colors.flat());
  });
});

Deno.test("loadImageFolder nested folders and links", async () => {
  await withTempDir(async (dir) => {
    await writePng(join(dir, "c", "top.png"), solid(2, 2, [1, 1, 1]));
    await writePng(join(dir, "c", "deeper", "still", "leaf.png"), solid(2, 2, [2, 2, 2]));
    await Deno.symlink(dir, join(dir, "c", "deeper", "back-to-root"));
    await Deno.symlink(join(dir, "c"), join(dir, "c", "self"));
    const { warnings, onWarning } = collect();
    const dataset = await loadImageFolder(dir, { onWarning });
    // back-to-root leads to the split folder, whose "c" was already scanned, and self leads to "c" itself.
    assertEquals(dataset.paths.filter((path) => path.endsWith("top.png")).length, 1);
    assertEquals(dataset.paths.filter((path) => path.endsWith("leaf.png")).length, 1);
    assert(
      warnings.some((line) =>
        line.includes(join(dir, "c", "self")) && line.includes("already scanned")
      ),
      warnings.join("\n"),
    );
    assertEquals(dataset.skipped, []);
  });
});

Deno.test("loadImageFolder odd file names", async () => {
  await withTempDir(async (dir) => {
    const names = [
      "with space.png",
      "-leading-dash.png",
      "--help.png",
      "ünïcödé 日本.png",
      "quote\"'.png",
      "semi;colon.png",
    ];
    const classes = ["class with space", "-dash", "Ωmega"];
    for (const className of classes) {
      for (const name of names) await writePng(join(dir, className, name), solid(2, 2, [3, 4, 5]));
    }
    const dataset = await loadImageFolder(dir, { maxBadFraction: 0 });
    assertEquals(dataset.classNames, [...classes].sort());
    assertEquals(dataset.labels.length, classes.length * names.length);
    for (const className of classes) {
      for (const name of names) {
        assert(dataset.paths.includes(join(dir, className, name)), `${className}/${name}`);
      }
    }
  });
});

Deno.test("loadImageFolder non-UTF-8 class folder", async (t) => {
  await withTempDir(async (dir) => {
    await writeGoodImages(dir, "fine", 1);
    const created = await new Deno.Command("python3", {
      args: [
        "-c",
        "import os, sys; os.mkdir(os.path.join(sys.argv[1].encode(), b'cl\\xe9ss'))",
        dir,
      ],
      stdout: "null",
      stderr: "null",
    }).output().then((output) => output.success, () => false);
    if (!created) {
      await t.step({
        name: "skipped: python3 is needed to create a non-UTF-8 name",
        ignore: true,
        fn: () => {},
      });
      return;
    }
    const error = await assertRejects(() => loadImageFolder(dir), DataError);
    assertStringIncludes(error.message, "not valid UTF-8");
    assertStringIncludes(error.message, "Rename it");
  });
});

Deno.test("decodeImage keeps working after many failures", async () => {
  const jpeg = buildFlatJpeg(16, 16, [90, 128, 128]);
  const bogusLength = jpeg.slice();
  bogusLength[2 + 69 + 2] = 0x09; // SOF0 length 0x0911, which makes MozJPEG exit(1)
  for (let i = 0; i < 200; i++) {
    await assertRejects(
      () => decodeImage(bogusLength, "bogus.jpg"),
      DataError,
      "Bogus marker length",
    );
  }
  const goodJpeg = await decodeImage(jpeg, "good.jpg");
  assertEquals(Array.from(goodJpeg.rgb.subarray(0, 3)), [90, 90, 90]);

  // Damaged compressed data behind a correct CRC reaches the PNG decoder and makes it panic.
  const png = await encodePng(solid(32, 32, [7, 8, 9]));
  const idat = png.findIndex((_, i) => String.fromCharCode(...png.subarray(i, i + 4)) === "IDAT");
  const length = new DataView(png.buffer).getUint32(idat - 4);
  const garbled = png.slice();
  for (let i = idat + 6; i < idat + length; i += 3) garbled[i] ^= 0x5a;
  new DataView(garbled.buffer).setUint32(
    idat + 4 + length,
    crc32(garbled.subarray(idat, idat + 4 + length)),
  );
  for (let i = 0; i < 1500; i++) {
    await assertRejects(() => decodeImage(garbled, "garbled.png"), DataError, "corrupt PNG file");
  }
  const goodPng = await decodeImage(png, "good.png");
  assertEquals(Array.from(goodPng.rgb.subarray(0, 3)), [7, 8, 9]);
});

// ---------------------------------------------------------------------------
// Size limits

Deno.test("readRegularFile rejects folders and large files", async () => {
  await withTempDir(async (dir) => {
    const folderError = await assertRejects(() => readRegularFile(dir, 100), DataError);
    assertStringIncludes(folderError.message, "is a folder");
    const file = join(dir, "f.png");
    await Deno.writeFile(file, new Uint8Array(101));
    const large = await assertRejects(() => readRegularFile(file, 100), DataError);
    assertStringIncludes(large.message, "is 101 bytes, more than the maximum of 100 bytes");
    assertEquals((await readRegularFile(file, 101)).length, 101);
  });
});

Deno.test("allocatePixels names the size it could not allocate", () => {
  const error = assertThrows(() => allocatePixels(2 ** 24, 2 ** 16, "big/train"), DataError);
  assertStringIncludes(error.message, "big/train: 16777216 images of 65536x65536 RGB pixels need");
  assertStringIncludes(error.message, "Load fewer images");
});

// ---------------------------------------------------------------------------
// CIFAR-10 and IDX files

Deno.test("loadCifar10Binary rejects damaged batches", async () => {
  await withTempDir(async (dir) => {
    const record = new Uint8Array(3073);
    const cases: [string, Uint8Array, string][] = [
      ["empty.bin", new Uint8Array(0), "0 bytes is not a multiple of the 3073-byte record"],
      ["short.bin", record.subarray(0, 3072), "3072 bytes is not a multiple"],
      ["long.bin", new Uint8Array(3073 * 2 + 1), "6147 bytes"],
      [
        "cifar100.bin",
        new Uint8Array(3 * 3074),
        "CIFAR-100 batches, with 3074-byte records, are not supported",
      ],
      [
        "label.bin",
        concat([record, Uint8Array.of(10), record.subarray(1)]),
        "record 1 has label 10",
      ],
    ];
    for (const [name, bytes, expected] of cases) {
      const path = join(dir, name);
      await Deno.writeFile(path, bytes);
      const error = await assertRejects(() => loadDataset(path), DataError, undefined, name);
      assertStringIncludes(error.message, path);
      assertStringIncludes(error.message, expected);
    }

    const folder = join(dir, "cifar");
    await Deno.mkdir(folder);
    await Deno.writeFile(join(folder, "test_batch.bin"), record);
    const missing = await assertRejects(() => loadCifar10Binary(folder), DataError);
    assertStringIncludes(missing.message, `no CIFAR-10 batch files for split "train"`);
  });
});

Deno.test("loadIdx rejects damaged files", async () => {
  await withTempDir(async (dir) => {
    const labels = join(dir, "labels");
    await Deno.writeFile(labels, encodeIdx({ dims: [2], data: Uint8Array.of(0, 1) }));
    const good = encodeIdx({ dims: [2, 3, 3], data: new Uint8Array(18) });
    const truncated = good.subarray(0, good.length - 1);
    const wrongType = good.slice();
    wrongType[2] = 0x0d;
    const wrongMagic = good.slice();
    wrongMagic[0] = 1;
    const rank0 = Uint8Array.of(0, 0, 8, 0);
    const shortHeader = Uint8Array.of(0, 0, 8, 3, 0, 0);
    const zeroWidth = encodeIdx({ dims: [2, 3, 0], data: new Uint8Array(0) });
    const rank2 = encodeIdx({ dims: [2, 9], data: new Uint8Array(18) });
    const fourChannels = encodeIdx({ dims: [2, 3, 3, 4], data: new Uint8Array(72) });
    const badGzip = (await gzip(good)).slice(0, 20);
    const cases: [string, Uint8Array, string][] = [
      ["truncated", truncated, "the file has 33"],
      ["float32", wrongType, "unsupported IDX element type 0x0d (float32)"],
      ["magic", wrongMagic, "does not start with two zero bytes"],
      ["rank0", rank0, "invalid IDX header: 0 dimensions"],
      ["short-header", shortHeader, "invalid IDX header: 3 dimensions in a 6-byte file"],
      ["zero-width", zeroWidth, "images of 0x3 pixels are empty"],
      ["rank2", rank2, "expected [N][H][W]"],
      ["four-channels", fourChannels, "C = 1 or 3"],
      ["bad-gzip", badGzip, "corrupt gzip file"],
    ];
    for (const [name, bytes, expected] of cases) {
      const path = join(dir, name);
      await Deno.writeFile(path, bytes);
      const error = await assertRejects(
        () => loadIdx({ images: path, labels }),
        DataError,
        undefined,
        name,
      );
      assertStringIncludes(error.message, path);
      assertStringIncludes(error.message, expected);
    }

    const images = join(dir, "images");
    await Deno.writeFile(images, good);
    const threeLabels = join(dir, "three-labels");
    await Deno.writeFile(threeLabels, encodeIdx({ dims: [3], data: Uint8Array.of(0, 1, 2) }));
    const mismatch = await assertRejects(() => loadIdx({ images, labels: threeLabels }), DataError);
    assertStringIncludes(mismatch.message, "expected one label per image, [2]");

    const notIdx = join(dir, "notes.txt");
    await Deno.writeTextFile(notIdx, "hello");
    const single = await assertRejects(() => loadDataset(notIdx), DataError);
    assertStringIncludes(single.message, "not a CIFAR-10 .bin batch or an IDX file");
  });
});

Deno.test("readMaybeGzip stops at the maximum size", async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, "bomb.gz");
    // 4 MiB of zeros gzip to about 4 KiB: a small decompression bomb.
    await Deno.writeFile(path, await gzip(new Uint8Array(4 << 20)));
    const error = await assertRejects(() => readMaybeGzip(path, { maxBytes: 1 << 20 }), DataError);
    assertStringIncludes(error.message, `${path}: gunzips to more than 1048576 bytes`);
    assertEquals((await readMaybeGzip(path, { maxBytes: 4 << 20 })).length, 4 << 20);
  });
});

// ---------------------------------------------------------------------------
// The CLI, spawned as a user runs it

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function cli(
  args: string[],
  permissions: string[] = ["--allow-read"],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, "--allow-write", "--allow-env", MAIN, ...args],
    env: { DENO_WEBGPU_BACKEND: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "vulkan", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
  const output = await command.output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

function assertNoStackTrace(stderr: string): void {
  assert(!/^\s+at /m.test(stderr), `stack trace on stderr:\n${stderr}`);
}

/** 98 good images in two classes, one corrupt file, and one file the process will not be allowed to read. */
async function makeDamagedDataset(root: string): Promise<{ corrupt: string; denied: string }> {
  await writeGoodImages(root, "a", 49);
  await writeGoodImages(root, "b", 49);
  const corrupt = join(root, "a", "broken.png");
  const png = await encodePng(solid(8, 8, [1, 2, 3]));
  await Deno.writeFile(corrupt, png.subarray(0, png.length - 20));
  const denied = join(root, "b", "secret.png");
  await Deno.writeFile(denied, png);
  return { corrupt, denied };
}

const ENCODE_FAST = ["--size", "8", "--iterations", "1", "--layers", "1", "--width", "4"];

Deno.test("cli skips bad images and counts them", async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, "data");
    const { corrupt, denied } = await makeDamagedDataset(root);
    const output = join(dir, "out.rinr");
    const result = await cli(
      ["encode", root, "-o", output, ...ENCODE_FAST, "--max-bad-fraction", "0.02", "--json"],
      ["--allow-read", `--deny-read=${denied}`],
    );
    assertEquals(result.code, 0, result.stderr);
    const warnings = result.stderr.split("\n").filter((line) => line.startsWith("warning: "));
    assertEquals(warnings.length, 2, result.stderr);
    assertStringIncludes(warnings[0], `warning: skipped ${corrupt}: corrupt PNG file`);
    assertStringIncludes(warnings[1], `warning: skipped ${denied}: permission denied`);
    assertStringIncludes(result.stderr, "Loaded 98 images");
    assertStringIncludes(result.stderr, "skipped 2 unreadable or corrupt images");
    const report = JSON.parse(result.stdout);
    assertEquals(report.images, 98);
    assertEquals(report.skippedImages, 2);

    const info = await cli(["info", output, "--json"]);
    assertEquals(info.code, 0, info.stderr);
    assertEquals(JSON.parse(info.stdout).imageCount, 98);

    // compress reloads the source images with the bad fraction recorded by encode, so it skips the same two.
    const compressed = await cli(
      ["compress", output, "-o", join(dir, "q.rinr"), "--bits", "8", "--json"],
      ["--allow-read", `--deny-read=${denied}`],
    );
    assertEquals(compressed.code, 0, compressed.stderr);
    assertEquals(JSON.parse(compressed.stdout).images, 98);
    assertStringIncludes(compressed.stderr, "skipped 2 unreadable or corrupt images");
  });
});

Deno.test("cli fails on bad images with exit 3", async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, "data");
    const { corrupt, denied } = await makeDamagedDataset(root);
    const output = join(dir, "out.rinr");

    const strict = await cli(["encode", root, "-o", output, ...ENCODE_FAST, "--strict"]);
    assertEquals(strict.code, 3, strict.stderr);
    assertStringIncludes(strict.stderr, `rapid-inr encode: ${corrupt}: corrupt PNG file`);
    assertNoStackTrace(strict.stderr);

    const deniedStrict = await cli(
      ["encode", root, "-o", output, ...ENCODE_FAST, "--strict", "--max-bad-fraction", "1"],
      ["--allow-read", `--deny-read=${denied}`, `--deny-read=${corrupt}`],
    );
    assertEquals(deniedStrict.code, 3, deniedStrict.stderr);
    assertStringIncludes(deniedStrict.stderr, "permission denied");

    // 2 of 100 is more than the default 1%.
    const tooMany = await cli(
      ["encode", root, "-o", output, ...ENCODE_FAST],
      ["--allow-read", `--deny-read=${denied}`],
    );
    assertEquals(tooMany.code, 3, tooMany.stderr);
    assertStringIncludes(tooMany.stderr, "rapid-inr encode: ");
    assertStringIncludes(tooMany.stderr, "at least 2 of the 100 requested images (2%)");
    assertStringIncludes(tooMany.stderr, "--max-bad-fraction");
    assertNoStackTrace(tooMany.stderr);

    const badOption = await cli(["encode", root, "-o", output, "--max-bad-fraction", "2"]);
    assertEquals(badOption.code, 2, badOption.stderr);
    assertStringIncludes(badOption.stderr, "--max-bad-fraction must be at most 1");
    assert(!(await Deno.stat(output).catch(() => undefined)), "no output after a failed load");
  });
});

Deno.test("cli rejects an empty dataset with exit 3", async () => {
  await withTempDir(async (dir) => {
    const empty = join(dir, "empty");
    await Deno.mkdir(join(empty, "train"), { recursive: true });
    const result = await cli(["encode", empty, "-o", join(dir, "out.rinr")]);
    assertEquals(result.code, 3, result.stderr);
    assertStringIncludes(
      result.stderr,
      `rapid-inr encode: ${join(empty, "train")}: has no class folders`,
    );
    assertNoStackTrace(result.stderr);

    const onlyBad = join(dir, "only-bad");
    await Deno.mkdir(join(onlyBad, "cats"), { recursive: true });
    await Deno.writeFile(join(onlyBad, "cats", "a.png"), new Uint8Array(0));
    const bad = await cli([
      "encode",
      onlyBad,
      "-o",
      join(dir, "out.rinr"),
      "--max-bad-fraction",
      "1",
    ]);
    assertEquals(bad.code, 3, bad.stderr);
    assertStringIncludes(bad.stderr, `all 1 requested images of class "cats"`);
    assertNoStackTrace(bad.stderr);
  });
});

Deno.test("cli text result counts skipped images", async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, "data");
    const { denied } = await makeDamagedDataset(root);
    const result = await cli(
      ["encode", root, "-o", join(dir, "out.rinr"), ...ENCODE_FAST, "--max-bad-fraction", "0.02"],
      ["--allow-read", `--deny-read=${denied}`],
    );
    assertEquals(result.code, 0, result.stderr);
    assertStringIncludes(result.stdout, "Encoded 98 images in ");
    assertStringIncludes(result.stdout, ", skipped 2 unreadable images");

    const clean = join(dir, "clean");
    await writeGoodImages(clean, "a", 2);
    const none = await cli(["encode", clean, "-o", join(dir, "clean.rinr"), ...ENCODE_FAST]);
    assertEquals(none.code, 0, none.stderr);
    assert(!none.stdout.includes("skipped"), `no skip count without skips: ${none.stdout}`);
  });
});

Deno.test("cli IDX file without labels", async () => {
  await withTempDir(async (dir) => {
    const images = join(dir, "train-images-idx3-ubyte");
    await Deno.writeFile(images, encodeIdx({ dims: [2, 3, 3], data: new Uint8Array(18) }));
    const result = await cli(["encode", images, "-o", join(dir, "out.rinr"), ...ENCODE_FAST]);
    assertEquals(result.code, 3, result.stderr);
    assertStringIncludes(result.stderr, `no label file found at ${join(dir, "train-labels-idx1-ubyte")}`);
    assertStringIncludes(result.stderr, "put both in the same folder");
    assert(!result.stderr.includes("loadIdx"), `library advice shown to a CLI user: ${result.stderr}`);
    assertNoStackTrace(result.stderr);
  });
});
