// Image decoding and PNG encoding: every PNG flavour built byte by byte here,
// real JPEGs compared with PIL's decode, and corrupt files.

import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import {
  DataError,
  decodeImage,
  detectImageFormat,
  encodePng,
  type RgbImage,
} from "../src/data/mod.ts";
import { crc32 } from "../src/data/image.ts";
import { assertClose, seededRandom } from "./_util.ts";

const TINY = new URL("../../shared/data/tiny/", import.meta.url);

// ---------------------------------------------------------------------------
// A PNG writer for test files: any color type, bit depth, palette, tRNS,
// Adam7 interlacing, and image data split over several IDAT chunks.

interface PngSpec {
  width: number;
  height: number;
  colorType: 0 | 2 | 3 | 4 | 6;
  bitDepth: 1 | 2 | 4 | 8 | 16;
  /** Samples per pixel in PNG order (gray / RGB / index / gray+alpha / RGBA), row-major. */
  samples: number[];
  palette?: [number, number, number][];
  trns?: number[];
  interlace?: boolean;
  idatChunks?: number;
}

const CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as const;

/** Adam7 passes: [x start, y start, x step, y step]. */
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [
  0,
  1,
  1,
  2,
]];

function packRows(spec: PngSpec, pixels: number[][], width: number, height: number): number[] {
  const channels = CHANNELS[spec.colorType];
  const out: number[] = [];
  for (let y = 0; y < height; y++) {
    out.push(0); // filter type None
    let bitBuffer = 0;
    let bitCount = 0;
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        const value = pixels[y * width + x][c];
        if (spec.bitDepth === 16) out.push(value >> 8, value & 0xff);
        else if (spec.bitDepth === 8) out.push(value);
        else {
          bitBuffer = (bitBuffer << spec.bitDepth) | value;
          bitCount += spec.bitDepth;
          if (bitCount === 8) {
            out.push(bitBuffer);
            bitBuffer = 0;
            bitCount = 0;
          }
        }
      }
    }
    if (bitCount > 0) out.push(bitBuffer << (8 - bitCount));
  }
  return out;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

async function zlib(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function buildPng(spec: PngSpec): Promise<Uint8Array> {
  const channels = CHANNELS[spec.colorType];
  const pixels = Array.from(
    { length: spec.width * spec.height },
    (_, p) => spec.samples.slice(p * channels, (p + 1) * channels),
  );
  let raw: number[] = [];
  if (spec.interlace) {
    for (const [x0, y0, dx, dy] of ADAM7) {
      const passWidth = Math.max(0, Math.ceil((spec.width - x0) / dx));
      const passHeight = Math.max(0, Math.ceil((spec.height - y0) / dy));
      if (passWidth === 0 || passHeight === 0) continue;
      const passPixels: number[][] = [];
      for (let y = y0; y < spec.height; y += dy) {
        for (let x = x0; x < spec.width; x += dx) passPixels.push(pixels[y * spec.width + x]);
      }
      raw = raw.concat(packRows(spec, passPixels, passWidth, passHeight));
    }
  } else {
    raw = packRows(spec, pixels, spec.width, spec.height);
  }

  const ihdr = new Uint8Array(13);
  const view = new DataView(ihdr.buffer);
  view.setUint32(0, spec.width);
  view.setUint32(4, spec.height);
  ihdr[8] = spec.bitDepth;
  ihdr[9] = spec.colorType;
  ihdr[12] = spec.interlace ? 1 : 0;
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
  ];
  if (spec.palette) parts.push(chunk("PLTE", new Uint8Array(spec.palette.flat())));
  if (spec.trns) parts.push(chunk("tRNS", new Uint8Array(spec.trns)));
  const compressed = await zlib(new Uint8Array(raw));
  const pieces = spec.idatChunks ?? 1;
  const pieceSize = Math.ceil(compressed.length / pieces);
  for (let i = 0; i < pieces; i++) {
    parts.push(chunk("IDAT", compressed.subarray(i * pieceSize, (i + 1) * pieceSize)));
  }
  parts.push(chunk("IEND", new Uint8Array(0)));
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Expected 8-bit RGB of a PNG spec: the reference the decoder is compared with. */
function expectedRgb(spec: PngSpec): Uint8Array {
  const channels = CHANNELS[spec.colorType];
  const maxSample = 2 ** spec.bitDepth - 1;
  const to8 = (value: number) => Math.round((value * 255) / maxSample);
  const out = new Uint8Array(spec.width * spec.height * 3);
  for (let p = 0; p < spec.width * spec.height; p++) {
    const s = spec.samples.slice(p * channels, (p + 1) * channels);
    let rgb: number[];
    if (spec.colorType === 3) rgb = spec.palette![s[0]];
    else if (spec.colorType === 0 || spec.colorType === 4) rgb = [to8(s[0]), to8(s[0]), to8(s[0])];
    else rgb = [to8(s[0]), to8(s[1]), to8(s[2])];
    out.set(rgb, p * 3);
  }
  return out;
}

function randomSamples(seed: number, count: number, maxValue: number): number[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, () => Math.floor(random() * (maxValue + 1)));
}

function pngCase(
  colorType: PngSpec["colorType"],
  bitDepth: PngSpec["bitDepth"],
  extra: Partial<PngSpec> = {},
): PngSpec {
  const width = extra.width ?? 13;
  const height = extra.height ?? 7;
  const maxValue = colorType === 3 ? (extra.palette?.length ?? 1) - 1 : 2 ** bitDepth - 1;
  const samples = randomSamples(
    colorType * 100 + bitDepth,
    width * height * CHANNELS[colorType],
    maxValue,
  );
  return { width, height, colorType, bitDepth, samples, ...extra };
}

function palette(count: number): [number, number, number][] {
  return Array.from(
    { length: count },
    (_, i) => [(i * 37) % 256, (i * 91 + 5) % 256, 255 - ((i * 53) % 256)],
  );
}

const PNG_CASES: [string, PngSpec][] = [
  ["gray 1-bit", pngCase(0, 1)],
  ["gray 2-bit", pngCase(0, 2)],
  ["gray 4-bit", pngCase(0, 4)],
  ["gray 8-bit", pngCase(0, 8)],
  ["gray 16-bit", pngCase(0, 16)],
  ["gray+alpha 8-bit", pngCase(4, 8)],
  ["gray+alpha 16-bit", pngCase(4, 16)],
  ["RGB 8-bit", pngCase(2, 8)],
  ["RGB 16-bit", pngCase(2, 16)],
  ["RGBA 8-bit", pngCase(6, 8)],
  ["RGBA 16-bit", pngCase(6, 16)],
  ["palette 1-bit", pngCase(3, 1, { palette: palette(2) })],
  ["palette 2-bit", pngCase(3, 2, { palette: palette(4) })],
  ["palette 4-bit", pngCase(3, 4, { palette: palette(16) })],
  ["palette 8-bit with tRNS", pngCase(3, 8, { palette: palette(200), trns: [0, 128, 255] })],
  ["RGB 8-bit Adam7 interlaced", pngCase(2, 8, { interlace: true, width: 11, height: 9 })],
  ["gray 4-bit Adam7 interlaced", pngCase(0, 4, { interlace: true, width: 3, height: 10 })],
  ["RGB 8-bit over three IDAT chunks", pngCase(2, 8, { idatChunks: 3 })],
  ["RGB 8-bit 1x1", pngCase(2, 8, { width: 1, height: 1 })],
];

for (const [label, spec] of PNG_CASES) {
  Deno.test(`decodeImage PNG ${label}`, async () => {
    const bytes = await buildPng(spec);
    const image = await decodeImage(bytes, `${label}.png`);
    assertEquals(image.width, spec.width);
    assertEquals(image.height, spec.height);
    assertClose(label, image.rgb, expectedRgb(spec), { atol: 0, rtol: 0 });
  });
}

Deno.test("decodeImage 16-bit rounds to nearest", async () => {
  // 0x80 / 257 = 0.498 rounds down, 0x81 / 257 = 0.502 rounds up: truncation to the
  // high byte would give 0 for both and 255 for 0xff7f (which is 254.5, rounds up).
  const spec: PngSpec = {
    width: 4,
    height: 1,
    colorType: 0,
    bitDepth: 16,
    samples: [0x80, 0x81, 0xff7f, 0xff7e],
  };
  const image = await decodeImage(await buildPng(spec), "rounding.png");
  assertEquals(Array.from(image.rgb.filter((_, i) => i % 3 === 0)), [0, 1, 255, 254]);
});

// ---------------------------------------------------------------------------
// PNG encoding

function randomImage(seed: number, width: number, height: number): RgbImage {
  const random = seededRandom(seed);
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < rgb.length; i++) {
    // Smooth gradient plus noise, so that every PNG row filter gets chosen somewhere.
    rgb[i] =
      (((i % (width * 3)) * 2 + Math.floor(i / (width * 3)) * 3) + Math.floor(random() * 20)) &
      0xff;
  }
  return { width, height, rgb };
}

Deno.test("encodePng round trip", async () => {
  for (const [width, height] of [[1, 1], [5, 3], [64, 40]]) {
    const image = randomImage(width * 7 + height, width, height);
    const png = await encodePng(image);
    assertEquals(detectImageFormat(png), "png");
    const decoded = await decodeImage(png, "roundtrip.png");
    assertEquals([decoded.width, decoded.height], [width, height]);
    assertClose(`round trip ${width}x${height}`, decoded.rgb, image.rgb, { atol: 0, rtol: 0 });
  }
});

Deno.test("encodePng readable by PIL", async (t) => {
  if (!pilAvailable()) {
    await t.step({
      name: "skipped: /usr/bin/python3 with PIL is not installed",
      ignore: true,
      fn: () => {},
    });
    return;
  }
  const image = randomImage(99, 37, 21);
  const path = await Deno.makeTempFile({ suffix: ".png" });
  try {
    await Deno.writeFile(path, await encodePng(image));
    assertClose("PIL decode of encodePng output", pilDecode(path), image.rgb, { atol: 0, rtol: 0 });
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("encodePng rejects wrong buffer size", async () => {
  await assertRejects(
    () => encodePng({ width: 2, height: 2, rgb: new Uint8Array(11) }),
    RangeError,
    "expected 12",
  );
  await assertRejects(
    () => encodePng({ width: 0, height: 2, rgb: new Uint8Array(0) }),
    RangeError,
    "positive",
  );
});

// ---------------------------------------------------------------------------
// JPEG

function pilAvailable(): boolean {
  try {
    const result = new Deno.Command("/usr/bin/python3", {
      args: ["-c", "import PIL"],
      stderr: "null",
    })
      .outputSync();
    return result.success;
  } catch {
    return false;
  }
}

/** Decodes a file with PIL's Image.convert("RGB") into HWC RGB bytes. */
function pilDecode(path: string): Uint8Array {
  const script = "import sys; from PIL import Image; " +
    "sys.stdout.buffer.write(Image.open(sys.argv[1]).convert('RGB').tobytes())";
  const result = new Deno.Command("/usr/bin/python3", { args: ["-c", script, path] }).outputSync();
  assert(result.success, new TextDecoder().decode(result.stderr));
  return result.stdout;
}

async function listTinyJpegs(): Promise<string[] | undefined> {
  const found: string[] = [];
  const walk = async (url: URL) => {
    for await (const entry of Deno.readDir(url)) {
      const child = new URL(entry.name + (entry.isDirectory ? "/" : ""), url);
      if (entry.isDirectory) await walk(child);
      else if (/\.jpe?g$/i.test(entry.name)) found.push(child.pathname);
    }
  };
  try {
    await walk(TINY);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  return found.sort();
}

Deno.test("decodeImage JPEG matches PIL", async (t) => {
  const files = await listTinyJpegs();
  if (!files) {
    await t.step({ name: "skipped: ../shared/data/tiny is absent", ignore: true, fn: () => {} });
    return;
  }
  const pil = pilAvailable();
  for (const file of files) {
    const image = await decodeImage(await Deno.readFile(file), file);
    assertEquals(image.rgb.length, image.width * image.height * 3);
    if (pil) {
      // Debian's PIL links libjpeg-turbo and MozJPEG is a libjpeg-turbo fork, so the pixels agree exactly.
      assertClose(file, image.rgb, pilDecode(file), { atol: 0, rtol: 0 });
    }
  }
  if (!pil) {
    await t.step({
      name: "PIL comparison skipped: /usr/bin/python3 with PIL is absent",
      ignore: true,
      fn: () => {},
    });
  }
});

Deno.test("decodeImage grayscale JPEG", async (t) => {
  const files = await listTinyJpegs();
  if (!files) {
    await t.step({ name: "skipped: ../shared/data/tiny is absent", ignore: true, fn: () => {} });
    return;
  }
  // The frame header's component count (byte 9 of the SOF segment) finds the single-channel file.
  let grayscale: string | undefined;
  for (const file of files) {
    const bytes = await Deno.readFile(file);
    for (let i = 2; i + 9 < bytes.length; i++) {
      if (bytes[i] === 0xff && (bytes[i + 1] === 0xc0 || bytes[i + 1] === 0xc2)) {
        if (bytes[i + 9] === 1) grayscale = file;
        break;
      }
    }
  }
  if (!grayscale) throw new Error("tiny/imagenette-224 should contain one grayscale JPEG");
  const image = await decodeImage(await Deno.readFile(grayscale), grayscale);
  for (let p = 0; p < image.width * image.height; p++) {
    assertEquals(image.rgb[p * 3 + 1], image.rgb[p * 3], `pixel ${p}: G differs from R`);
    assertEquals(image.rgb[p * 3 + 2], image.rgb[p * 3], `pixel ${p}: B differs from R`);
  }
  if (pilAvailable()) assertClose(grayscale, image.rgb, pilDecode(grayscale), { atol: 0, rtol: 0 });
});

const base64 = (text: string) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

// An 8x6 gradient saved by PIL 9.4 as a CMYK JPEG (Adobe APP14 marker, quality 95),
// and the RGB that PIL decodes it to.
const CMYK_JPEG = base64(
  "/9j/7gAOQWRvYmUAZAAAAAAA/9sAQwACAQEBAQECAQEBAgICAgIEAwICAgIFBAQDBAYFBgYGBQYGBgcJCAYHCQcGBggLCAkKCgoKCgYICwwLCgwJCgoK/8AAFAgABgAIBEMRAE0RAFkRAEsRAP/EAB8AAAEFAQEBAQEBAAAAAAAAAAABAgMEBQYHCAkKC//EALUQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/aAA4EQwBNAFkASwAAPwDi/wDg3c/5gX/bP+leif8AEOJ8Af8Anvpf/gO3/wATXq3/AATu/Yp8If6D89v/AA/wH/Cv38r/2Q==",
);
const CMYK_AS_RGB = [
  10,
  20,
  50,
  40,
  20,
  65,
  70,
  20,
  80,
  101,
  20,
  95,
  129,
  20,
  110,
  160,
  20,
  125,
  190,
  20,
  140,
  220,
  20,
  155,
  10,
  60,
  65,
  40,
  60,
  80,
  70,
  60,
  95,
  101,
  60,
  110,
  129,
  60,
  126,
  160,
  60,
  140,
  190,
  60,
  155,
  220,
  60,
  170,
  10,
  100,
  80,
  40,
  100,
  95,
  70,
  100,
  110,
  101,
  100,
  125,
  129,
  100,
  141,
  160,
  100,
  155,
  190,
  100,
  170,
  220,
  100,
  185,
  10,
  140,
  95,
  40,
  140,
  110,
  70,
  140,
  125,
  101,
  140,
  140,
  129,
  140,
  155,
  160,
  140,
  170,
  190,
  140,
  185,
  220,
  140,
  200,
  10,
  180,
  110,
  40,
  180,
  124,
  70,
  180,
  140,
  101,
  180,
  154,
  129,
  180,
  170,
  160,
  180,
  184,
  190,
  180,
  200,
  220,
  180,
  214,
  10,
  220,
  126,
  40,
  220,
  141,
  70,
  220,
  156,
  101,
  220,
  170,
  129,
  220,
  186,
  160,
  220,
  201,
  190,
  220,
  216,
  220,
  220,
  231,
];

// The same gradient as a progressive JPEG (quality 95, 4:2:0), and PIL's decode of it.
const PROGRESSIVE_JPEG = base64(
  "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAIBAQEBAQIBAQECAgICAgQDAgICAgUEBAMEBgUGBgYFBgYGBwkIBgcJBwYGCAsICQoKCgoKBggLDAsKDAkKCgr/2wBDAQICAgICAgUDAwUKBwYHCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgr/wgARCAAGAAgDASIAAhEBAxEB/8QAFQABAQAAAAAAAAAAAAAAAAAAAAX/xAAVAQEBAAAAAAAAAAAAAAAAAAADBf/aAAwDAQACEAMQAAABoigX/8QAFxAAAwEAAAAAAAAAAAAAAAAAAAUGB//aAAgBAQABBQKPyZWf/8QAGREAAgMBAAAAAAAAAAAAAAAAAgYABRUj/9oACAEDAQE/AUdjvMEO5T//xAAXEQEAAwAAAAAAAAAAAAAAAAAEABMy/9oACAECAQE/ASrTVqf/xAAXEAEAAwAAAAAAAAAAAAAAAAACACGR/9oACAEBAAY/AjYyf//EABUQAQEAAAAAAAAAAAAAAAAAAACB/9oACAEBAAE/IZof/9oADAMBAAIAAwAAABAD/8QAGBEAAgMAAAAAAAAAAAAAAAAAAAFRYcH/2gAIAQMBAT8Q38oVH//EABYRAAMAAAAAAAAAAAAAAAAAAAARIf/aAAgBAgEBPxBLZ//EABYQAAMAAAAAAAAAAAAAAAAAAADB0f/aAAgBAQABPxB4sP/Z",
);
const PROGRESSIVE_AS_RGB = [
  7,
  21,
  48,
  28,
  27,
  61,
  59,
  27,
  76,
  88,
  26,
  89,
  119,
  28,
  107,
  148,
  27,
  120,
  179,
  26,
  134,
  200,
  31,
  146,
  20,
  53,
  68,
  41,
  59,
  81,
  71,
  59,
  95,
  99,
  59,
  109,
  131,
  60,
  126,
  161,
  60,
  140,
  191,
  60,
  154,
  212,
  66,
  167,
  19,
  95,
  83,
  40,
  101,
  96,
  71,
  101,
  111,
  100,
  100,
  124,
  130,
  102,
  142,
  160,
  101,
  157,
  190,
  100,
  170,
  210,
  106,
  183,
  18,
  134,
  97,
  39,
  140,
  110,
  69,
  140,
  124,
  98,
  140,
  139,
  128,
  141,
  157,
  157,
  141,
  170,
  189,
  140,
  185,
  209,
  145,
  197,
  19,
  175,
  114,
  39,
  180,
  127,
  69,
  181,
  141,
  98,
  181,
  155,
  129,
  182,
  172,
  158,
  181,
  187,
  190,
  181,
  202,
  211,
  186,
  215,
  31,
  207,
  134,
  52,
  213,
  146,
  80,
  213,
  160,
  110,
  212,
  173,
  140,
  213,
  193,
  170,
  213,
  206,
  202,
  212,
  221,
  222,
  218,
  233,
];

Deno.test("decodeImage CMYK JPEG", async () => {
  const image = await decodeImage(CMYK_JPEG, "cmyk.jpg");
  assertEquals([image.width, image.height], [8, 6]);
  // jpeg-js and PIL convert CMYK with slightly different rounding.
  assertClose("CMYK JPEG", image.rgb, CMYK_AS_RGB, { atol: 3, rtol: 0 });
});

Deno.test("decodeImage progressive JPEG", async () => {
  const image = await decodeImage(PROGRESSIVE_JPEG, "progressive.jpg");
  assertEquals([image.width, image.height], [8, 6]);
  assertClose("progressive JPEG", image.rgb, PROGRESSIVE_AS_RGB, { atol: 0, rtol: 0 });
});

// ---------------------------------------------------------------------------
// Errors

async function assertDataError(bytes: Uint8Array, name: string, expected: string): Promise<void> {
  const error = await assertRejects(() => decodeImage(bytes, name), DataError);
  assertStringIncludes(error.message, name);
  assertStringIncludes(error.message, expected);
}

Deno.test("decodeImage rejects non-images", async () => {
  await assertDataError(new TextEncoder().encode("hello, world"), "notes.png", "not a PNG or JPEG");
  await assertDataError(new Uint8Array(0), "empty.jpg", "empty file");
});

Deno.test("decodeImage reports corrupt PNGs", async () => {
  const good = await buildPng(pngCase(2, 8, { width: 40, height: 30 }));
  const idat = good.findIndex((_, i) => String.fromCharCode(...good.subarray(i, i + 4)) === "IDAT");

  await assertDataError(good.subarray(0, idat + 20), "cut.png", "truncated inside the IDAT chunk");

  const flipped = good.slice();
  flipped[idat + 10] ^= 0xff;
  await assertDataError(flipped, "flipped.png", "IDAT chunk at byte");

  const noEnd = good.subarray(0, good.length - 12);
  const noEndResult = await decodeImage(noEnd, "no-iend.png").catch((error) => error);
  // The decoder may accept a PNG that only lacks IEND; if it rejects it, the message must name IEND.
  if (noEndResult instanceof DataError) assertStringIncludes(noEndResult.message, "IEND");

  const badDepth = good.slice();
  badDepth[24] = 3; // RGB with 3 bits per sample
  await assertDataError(badDepth, "depth.png", "not a valid combination");

  const huge = good.slice();
  new DataView(huge.buffer).setUint32(16, 100_000);
  new DataView(huge.buffer).setUint32(20, 100_000);
  await assertDataError(huge, "huge.png", "exceeds the maximum");
});

Deno.test("decodeImage reports corrupt JPEGs", async () => {
  await assertDataError(PROGRESSIVE_JPEG.subarray(0, 300), "cut.jpg", "truncated");
  await assertDataError(
    new Uint8Array([0xff, 0xd8, 0xff, 0xd9]),
    "header-only.jpg",
    "no frame header",
  );
  const garbage = new Uint8Array(64).fill(0x12);
  garbage.set([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00]);
  await assertDataError(garbage, "garbage.jpg", "expected a marker");
  const cutCmyk = CMYK_JPEG.subarray(0, CMYK_JPEG.length - 40);
  await assertDataError(cutCmyk, "cut-cmyk.jpg", "CMYK JPEG");
});

Deno.test("decodeImage decodes after errors", async () => {
  await decodeImage(PROGRESSIVE_JPEG.subarray(0, 300), "cut.jpg").catch(() => {});
  const image = await decodeImage(PROGRESSIVE_JPEG, "progressive.jpg");
  assertClose("decode after a failed decode", image.rgb, PROGRESSIVE_AS_RGB, { atol: 0, rtol: 0 });
});
