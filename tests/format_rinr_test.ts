import {
  assert,
  assertAlmostEquals,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { crc32 } from "node:zlib";
import {
  encodeRinr,
  FormatError,
  formatRinrSummary,
  parseRinr,
  readRinr,
  type RinrDataset,
  summarizeRinr,
  summarizeRinrFile,
  writeRinr,
} from "../src/format/mod.ts";
import {
  dequantize,
  quantize,
  type QuantizedInrs,
  residentDatasetBytes,
} from "../src/inr/quantize.ts";
import { sirenInit, sirenParamCount } from "../src/inr/siren.ts";
import { seededRandom } from "./_util.ts";

const arch = { sineLayers: 2, width: 5, w0: 30 };
const Q = sirenParamCount(arch);

function dataset(count: number, quantized: boolean): RinrDataset {
  const random = seededRandom(count);
  const weights = new Float32Array(count * Q);
  for (let i = 0; i < count; i++) weights.set(sirenInit(arch, random), i * Q);
  return {
    arch,
    resolution: 8,
    classNames: ["cat", "dog", "ship"],
    labels: Uint32Array.from({ length: count }, (_, i) => i % 3),
    psnr: Array.from({ length: count }, (_, i) => i === 1 ? Infinity : 30 + i * 0.123),
    weights: quantized ? quantize(arch, weights, [6, 8, 3]) : weights,
    source: "data/train",
    encode: { seed: 7, steps: 500, learningRate: 1e-3 },
  };
}

/** Re-encodes `bytes` with the HEAD payload replaced by `edit(header)` and a fresh checksum. */
function withHeader(bytes: Uint8Array, edit: (header: any) => void): Uint8Array {
  const file = parseRinr(bytes, "original");
  const head = file.sections.find((s) => s.tag === "HEAD")!;
  const header = JSON.parse(
    new TextDecoder().decode(bytes.subarray(head.offset, head.offset + head.bytes)),
  );
  edit(header);
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const sectionHeader = bytes.slice(head.offset - 24, head.offset);
  const view = new DataView(sectionHeader.buffer);
  view.setBigUint64(8, BigInt(json.length), true);
  view.setUint32(16, crc32(json, crc32(sectionHeader.subarray(0, 16))), true);
  const oldEnd = head.offset + Math.ceil(head.bytes / 8) * 8;
  const out = new Uint8Array(head.offset - 24 + 24 + padded + (bytes.length - oldEnd));
  out.set(bytes.subarray(0, head.offset - 24));
  out.set(sectionHeader, head.offset - 24);
  out.set(json, head.offset);
  out.set(bytes.subarray(oldEnd), head.offset + padded);
  return out;
}

function assertFormatError(bytes: Uint8Array, ...fragments: string[]): FormatError {
  const error = assertThrows(() => parseRinr(bytes, "test.rinr"), FormatError) as FormatError;
  assert(error.message.startsWith("test.rinr: "), `message names the file: ${error.message}`);
  for (const fragment of fragments) {
    assert(error.message.includes(fragment), `"${error.message}" should contain "${fragment}"`);
  }
  return error;
}

async function listFolder(folder: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(folder)) names.push(entry.name);
  return names.sort();
}

Deno.test("rinr round trip fp32", async () => {
  const folder = await Deno.makeTempDir();
  const data = dataset(5, false);
  const path = `${folder}/set.rinr`;
  await writeRinr(path, data);
  const file = await readRinr(path);
  assertEquals(file.formatVersion, 1);
  assertEquals(file.arch, arch);
  assertEquals(file.resolution, 8);
  assertEquals(file.classNames, data.classNames);
  assertEquals(file.labels, data.labels);
  assertEquals(file.weights, data.weights);
  assertEquals(file.source, "data/train");
  assertEquals(file.encode, data.encode);
  assertEquals(file.header.labelType, "u16");
  assertEquals(file.header.weights, { encoding: "f32" });
  assertEquals(file.psnr[1], Infinity);
  assertEquals(file.psnr[3], Math.fround(30.37));
  assertEquals(file.sections.map((s) => s.tag), ["HEAD", "LABL", "WF32"]);
  assertEquals(file.sections.every((s) => s.offset % 8 === 0), true);
  await Deno.remove(folder, { recursive: true });
});

Deno.test("rinr round trip quantized", () => {
  const data = dataset(4, true);
  const file = parseRinr(encodeRinr(data), "q.rinr");
  const expected = data.weights as QuantizedInrs;
  const actual = file.weights as QuantizedInrs;
  assertEquals(actual.bits, [6, 8, 3]);
  assertEquals(actual.count, 4);
  assertEquals(actual.wordsPerImage, expected.wordsPerImage);
  assertEquals(actual.layerWordOffsets, expected.layerWordOffsets);
  assertEquals(actual.codes, expected.codes);
  assertEquals(actual.ranges, expected.ranges);
  assertEquals(dequantize(actual), dequantize(expected));
  assertEquals(file.sections.map((s) => s.tag), ["HEAD", "LABL", "QR16", "QCOD"]);
});

/** Returns a copy of `bytes` with `edit` applied to the payload of section `tag` and a fresh checksum. */
function withPayload(
  bytes: Uint8Array,
  tag: string,
  edit: (payload: Uint8Array) => void,
): Uint8Array {
  const section = parseRinr(bytes, "original").sections.find((s) => s.tag === tag)!;
  const out = bytes.slice();
  const payload = out.subarray(section.offset, section.offset + section.bytes);
  edit(payload);
  const header = out.subarray(section.offset - 24, section.offset);
  new DataView(header.buffer, header.byteOffset).setUint32(
    16,
    crc32(payload, crc32(header.subarray(0, 16))),
    true,
  );
  return out;
}

Deno.test("rinr stores ranges in 4 bytes per layer", () => {
  const data = dataset(6, true);
  const packed = data.weights as QuantizedInrs;
  const file = parseRinr(encodeRinr(data), "q.rinr");
  const section = file.sections.find((s) => s.tag === "QR16")!;
  assertEquals(section.bytes, 6 * 3 * 4);
  assertEquals((file.weights as QuantizedInrs).ranges, packed.ranges);

  // Ranges from an older quantizer (scale with more than 8 significant bits)
  // keep the f32 section and read back unchanged.
  const older = { ...packed, ranges: packed.ranges.slice() };
  older.ranges[0] = Math.fround(older.ranges[0] * (1 + 2 ** -12));
  older.ranges[1] = 0;
  const olderFile = parseRinr(encodeRinr({ ...data, weights: older }), "old.rinr");
  assertEquals(olderFile.sections.map((s) => s.tag), ["HEAD", "LABL", "QRNG", "QCOD"]);
  assertEquals((olderFile.weights as QuantizedInrs).ranges, older.ranges);
});

Deno.test("rinr rejects corrupt compact ranges", () => {
  const bytes = encodeRinr(dataset(4, true));
  // Layer 2 of image 0 has 3 bits: a zero point of 9 cannot be one of its codes.
  const badZero = withPayload(
    bytes,
    "QR16",
    (p) => new DataView(p.buffer, p.byteOffset).setUint16(10, 9, true),
  );
  assertFormatError(badZero, "section QR16", "image 0, layer 2", "zero point 9", "3 bits");
  const badScale = withPayload(
    bytes,
    "QR16",
    (p) => new DataView(p.buffer, p.byteOffset).setUint16(4, 0xffc0, true),
  );
  assertFormatError(badScale, "section QR16", "image 0, layer 1", "NaN");
  assertFormatError(bytes.slice(0, bytes.length - 8), "QCOD");
});

Deno.test("rinr stores many classes as u32 labels", () => {
  const data = dataset(3, false);
  data.classNames = Array.from({ length: 70000 }, (_, i) => `c${i}`);
  data.labels = Uint32Array.from([0, 69999, 65536]);
  const file = parseRinr(encodeRinr(data), "big.rinr");
  assertEquals(file.header.labelType, "u32");
  assertEquals(file.labels, data.labels);
});

Deno.test("rinr rejects bad magic", () => {
  const bytes = encodeRinr(dataset(2, false));
  bytes[1] = 0x58;
  assertFormatError(bytes, "magic bytes", "not a .rinr file");
  assertFormatError(
    new TextEncoder().encode("PNG"),
    "file size",
    "shorter than the 16-byte preamble",
  );
});

Deno.test("rinr rejects unsupported versions", () => {
  const bytes = encodeRinr(dataset(2, false));
  new DataView(bytes.buffer).setUint32(8, 2, true);
  assertFormatError(bytes, "format version", "2 is newer", "Upgrade rapid-inr");
  new DataView(bytes.buffer).setUint32(8, 0, true);
  assertFormatError(bytes, "format version", "0 is invalid");
});

Deno.test("rinr rejects checksum mismatch", () => {
  const bytes = encodeRinr(dataset(2, true));
  const file = parseRinr(bytes, "ok.rinr");
  for (const section of file.sections) {
    const damaged = bytes.slice();
    damaged[section.offset + Math.floor(section.bytes / 2)] ^= 0x10;
    assertFormatError(damaged, `section ${section.tag}`, "checksum mismatch");
  }
  const flagFlipped = bytes.slice();
  flagFlipped[file.sections[1].offset - 24 + 4] ^= 1;
  assertFormatError(flagFlipped, "section LABL", "checksum mismatch");
});

Deno.test("rinr rejects truncation", () => {
  const bytes = encodeRinr(dataset(3, true));
  for (const length of [0, 15, 16, 30, 40, 100, bytes.length - 9, bytes.length - 1]) {
    const error = assertThrows(
      () => parseRinr(bytes.subarray(0, length), "cut.rinr"),
      FormatError,
    ) as FormatError;
    assert(/truncated|shorter|missing/.test(error.message), `length ${length}: ${error.message}`);
  }
  const extended = new Uint8Array(bytes.length + 8);
  extended.set(bytes);
  assertFormatError(extended, "file size", "8 unexpected bytes");
});

Deno.test("rinr rejects absurd sizes", () => {
  const bytes = encodeRinr(dataset(2, false));
  const huge = bytes.slice();
  new DataView(huge.buffer).setBigUint64(16 + 8, 2n ** 60n, true);
  assertFormatError(huge, "section HEAD", "declares 1152921504606846976 bytes");
  const manySections = bytes.slice();
  new DataView(manySections.buffer).setUint32(12, 5_000_000, true);
  assertFormatError(manySections, "section count", "outside 1..1024");
});

Deno.test("rinr checks header against sections", () => {
  const bytes = encodeRinr(dataset(3, true));
  assertFormatError(
    withHeader(bytes, (h) => h.imageCount = 4),
    "header.psnr",
    "array of 4 numbers",
  );
  assertFormatError(
    withHeader(bytes, (h) => (h.imageCount = 4, h.psnr.push(1))),
    "section LABL",
    "4 u16 labels",
  );
  assertFormatError(withHeader(bytes, (h) => h.paramCount = 5), "header.paramCount", `Q = ${Q}`);
  assertFormatError(
    withHeader(bytes, (h) => h.weights.bits = [6, 8, 17]),
    "header.weights.bits",
    "got 17",
  );
  assertFormatError(
    withHeader(bytes, (h) => h.weights.bits = [6, 8, 4]),
    "header.weights.wordsPerImage",
    "need",
  );
  assertFormatError(withHeader(bytes, (h) => h.arch.width = 6), "header.paramCount");
  assertFormatError(
    withHeader(bytes, (h) => h.classNames = ["cat"]),
    "section LABL",
    "label of image 1 is 1",
  );
  assertFormatError(
    withHeader(bytes, (h) => h.weights.encoding = "f32"),
    "section QR16",
    "does not belong",
  );
  assertFormatError(
    withHeader(bytes, (h) => h.weights = { encoding: "zstd" }),
    "header.weights.encoding",
    '"zstd"',
  );
  assertFormatError(withHeader(bytes, (h) => h.resolution = 0), "header.resolution", "got 0");
  assertFormatError(withHeader(bytes, (h) => delete h.arch), "header.arch", "missing");
  assertFormatError(withHeader(bytes, (h) => h.psnr[0] = "high"), "header.psnr", "entry 0");
});

Deno.test("rinr rejects invalid header JSON", () => {
  const bytes = encodeRinr(dataset(2, false));
  const file = parseRinr(bytes, "ok.rinr");
  const head = file.sections[0];
  const damaged = bytes.slice();
  damaged[head.offset] = "[".charCodeAt(0);
  const view = new DataView(damaged.buffer);
  const payload = damaged.subarray(head.offset, head.offset + head.bytes);
  view.setUint32(
    head.offset - 24 + 16,
    crc32(payload, crc32(damaged.subarray(head.offset - 24, head.offset - 8))),
    true,
  );
  assertFormatError(damaged, "header", "not valid UTF-8 JSON");
});

Deno.test("rinr unknown sections by flag", () => {
  const data = dataset(2, false);
  const optional = encodeRinr(data, {
    extraSections: [{ tag: "NOTE", required: false, payload: new Uint8Array(5) }],
  });
  const file = parseRinr(optional, "opt.rinr");
  assertEquals(file.unknownSections.map((s) => s.tag), ["NOTE"]);
  assertEquals(file.weights, data.weights);
  const required = encodeRinr(data, {
    extraSections: [{ tag: "MASK", required: true, payload: new Uint8Array(9) }],
  });
  assertFormatError(required, "section MASK", "is required", "does not know it");
  assertThrows(
    () =>
      encodeRinr(data, {
        extraSections: [{ tag: "HEAD", required: false, payload: new Uint8Array(1) }],
      }),
    RangeError,
  );
});

Deno.test("rinr writer validates the dataset", () => {
  const data = dataset(3, false);
  assertThrows(
    () => encodeRinr({ ...data, labels: Uint32Array.from([0, 1, 3]) }),
    RangeError,
    "image 2 is 3",
  );
  assertThrows(() => encodeRinr({ ...data, psnr: [1, 2] }), RangeError, "PSNR has 2 entries");
  assertThrows(
    () => encodeRinr({ ...data, weights: new Float32Array(Q) }),
    RangeError,
    "expected 3 images",
  );
  assertThrows(() => encodeRinr({ ...data, resolution: 2.5 }), RangeError, "Resolution");
  const quantized = dataset(2, true);
  assertThrows(
    () => encodeRinr({ ...quantized, labels: Uint32Array.from([0, 1, 2]), psnr: [1, 2, 3] }),
    RangeError,
    "do not match",
  );
});

Deno.test("rinr write is atomic and refuses overwrite", async () => {
  const folder = await Deno.makeTempDir();
  const path = `${folder}/set.rinr`;
  const first = dataset(2, false);
  await writeRinr(path, first);
  assertEquals(await listFolder(folder), ["set.rinr"]);
  const before = await Deno.readFile(path);

  const second = dataset(3, true);
  await assertRejects(() => writeRinr(path, second), Deno.errors.AlreadyExists, "already exists");
  assertEquals(await Deno.readFile(path), before);
  assertEquals(await listFolder(folder), ["set.rinr"]);

  await writeRinr(path, second, { overwrite: true });
  assertEquals((await readRinr(path)).labels.length, 3);
  assertEquals(await listFolder(folder), ["set.rinr"]);

  await assertRejects(
    () => writeRinr(path, { ...second, resolution: 0 }, { overwrite: true }),
    RangeError,
  );
  await assertRejects(() => writeRinr(`${folder}/missing/x.rinr`, first), Deno.errors.NotFound);
  assertEquals(await listFolder(folder), ["set.rinr"]);
  await Deno.remove(folder, { recursive: true });
});

Deno.test("readRinr names a missing file", async () => {
  await assertRejects(
    () => readRinr("/nonexistent/none.rinr"),
    FormatError,
    "/nonexistent/none.rinr: file: not found",
  );
});

Deno.test("summarizeRinr reports sizes and quality", async () => {
  const folder = await Deno.makeTempDir();
  const path = `${folder}/set.rinr`;
  const data = dataset(6, true);
  const extra = { tag: "NOTE", required: false, payload: new Uint8Array(3) };
  await writeRinr(path, data, { extraSections: [extra] });
  const summary = await summarizeRinr(path);
  const size = (await Deno.stat(path)).size;
  const file = await readRinr(path);
  assertEquals(summary.fileBytes, size);
  assertEquals(summary.imageCount, 6);
  assertEquals(summary.imagesPerClass, [2, 2, 2]);
  assertEquals(summary.bitsPerLayer, [6, 8, 3]);
  assertEquals(summary.percentOfRaw, (100 * size) / (6 * 8 * 8 * 3));
  assertEquals(summary.bitsPerPixel, (8 * size) / (6 * 8 * 8));
  const q = file.weights as QuantizedInrs;
  // Section QR16 takes 4 bytes per image and layer.
  assertEquals(summary.bitsPerWeight, ((q.codes.byteLength + 6 * 3 * 4) * 8) / (6 * Q));
  const finite = [30, 30.25, 30.37, 30.49, 30.62].map(Math.fround);
  assertEquals(summary.psnr!.mean, finite.reduce((a, b) => a + b) / 5);
  assertEquals(summary.psnr!.min, 30);
  // The 5th percentile of the six values (one infinite) lies a quarter of the way from the first to the second.
  assertAlmostEquals(summary.psnr!.p5, 30 + 0.25 * (finite[1] - 30), 1e-5);
  assertEquals(summary.residentBytes, residentDatasetBytes({ arch, count: 6, bits: [6, 8, 3] }));
  assertEquals(summary.residentBytesPerImage, summary.residentBytes / 6);
  assertEquals(summary.exactImages, 1);
  assertEquals(summary.ignoredSections, ["NOTE"]);
  assertEquals(summary.seed, 7);
  assertEquals(summary.sections.map((s) => s.tag), ["HEAD", "LABL", "QR16", "QCOD", "NOTE"]);
  const text = formatRinrSummary(summary);
  assert(text.includes("uniform, bits per layer [6, 8, 3]"), text);
  assert(text.includes("1 exact"), text);
  assertStringIncludes(text, `${summary.residentBytes} bytes resident during training`);
  assertStringIncludes(text, `5th percentile ${summary.psnr!.p5.toFixed(2)}`);
  assert(text.includes("NOTE"), text);
  await Deno.remove(folder, { recursive: true });
});

Deno.test("rinr summary lists classes briefly", () => {
  const data = dataset(30, false);
  data.classNames = Array.from({ length: 40 }, (_, i) => `c${i}`);
  data.labels = Uint32Array.from({ length: 30 }, (_, i) => i % 25);
  const text = formatRinrSummary(summarizeRinrFile(parseRinr(encodeRinr(data), "many.rinr")));
  const line = text.split("\n").find((l) => l.startsWith("classes"))!;
  assert(line.includes("c0 (2), c1 (2)"), line);
  assert(line.includes("c19 (1)"), line);
  assert(!line.includes("c20 ("), line);
  assert(line.includes("5 more classes with images"), line);
  assert(line.includes("15 classes have no images"), line);
});

Deno.test("rinr parses unaligned input bytes", () => {
  const data = dataset(3, true);
  const bytes = encodeRinr(data);
  const shifted = new Uint8Array(bytes.length + 1);
  shifted.set(bytes, 1);
  const file = parseRinr(shifted.subarray(1), "shifted.rinr");
  assertEquals((file.weights as QuantizedInrs).codes, (data.weights as QuantizedInrs).codes);
  assertEquals(file.labels, data.labels);
});
