// Mutation fuzzing of the .rinr reader. Valid files are damaged in many ways:
// bit flips, byte overwrites, truncation, splices of two files, duplicated
// sections, extreme integer fields and edited header JSON. `parseRinr` must
// either return a consistent dataset or throw `FormatError`, never another
// error. The seed is fixed, so every run checks the same cases.

import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { join } from "@std/path";
import { crc32 } from "node:zlib";
import {
  encodeRinr,
  FormatError,
  parseRinr,
  readRinr,
  type RinrDataset,
  type RinrFile,
} from "../src/format/mod.ts";
import { quantize } from "../src/inr/quantize.ts";
import { type SirenArch, sirenInit, sirenLayers, sirenParamCount } from "../src/inr/siren.ts";
import { seededRandom } from "./_util.ts";

const CASES_PER_MUTATOR = 1000;
const SEED = 20240917;

/**
 * Upper bound for one parse of a file of a few kilobytes. It only catches a
 * hang (a parse normally takes well under a millisecond), not slowness.
 */
const HANG_LIMIT_MS = 2000;

/** Maximum length of an error message, because a damaged header must not be echoed in full. */
const MAX_MESSAGE_CHARS = 600;

type Random = () => number;

function makeDataset(
  arch: SirenArch,
  count: number,
  options: { bits?: number[]; classes?: number; seed: number },
): RinrDataset {
  const random = seededRandom(options.seed);
  const q = sirenParamCount(arch);
  const weights = new Float32Array(count * q);
  for (let i = 0; i < count; i++) weights.set(sirenInit(arch, random), i * q);
  const classes = options.classes ?? 3;
  return {
    arch,
    resolution: 8,
    classNames: Array.from({ length: classes }, (_, i) => `class ${i}`),
    labels: Uint32Array.from({ length: count }, (_, i) => i % classes),
    psnr: Array.from({ length: count }, (_, i) => (i === 0 ? Infinity : 25 + i / 7)),
    weights: options.bits ? quantize(arch, weights, options.bits) : weights,
    source: "images/train",
    encode: { seed: options.seed, iterations: 10 },
  };
}

/** Valid files of every layout the writer produces. */
function baseFiles(): Uint8Array[] {
  const small = { sineLayers: 2, width: 5, w0: 30 };
  const wide = { sineLayers: 1, width: 7, w0: 12.5 };
  return [
    encodeRinr(makeDataset(small, 3, { seed: 1 })),
    encodeRinr(makeDataset(small, 4, { bits: [6, 8, 3], seed: 2 })),
    encodeRinr(makeDataset(wide, 2, { bits: [32, 16], seed: 3 })),
    encodeRinr(makeDataset(wide, 1, { seed: 4, classes: 1 })),
    encodeRinr(makeDataset(small, 2, { seed: 5 }), {
      extraSections: [{ tag: "NOTE", required: false, payload: new Uint8Array([1, 2, 3]) }],
    }),
  ];
}

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)];
}

function randomInt(random: Random, lo: number, hi: number): number {
  return lo + Math.floor(random() * (hi - lo + 1));
}

// ---------------------------------------------------------------------------
// Section walking, best effort on damaged files

interface SectionSpan {
  /** Offset of the 24-byte section header. */
  start: number;
  /** Offset of the payload. */
  payload: number;
  length: number;
  /** Offset after the padding. */
  end: number;
}

/** Walks the section headers as far as they stay inside the file. */
function walkSections(bytes: Uint8Array): SectionSpan[] {
  const spans: SectionSpan[] = [];
  if (bytes.length < 16) return spans;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = Math.min(view.getUint32(12, true), 64);
  let position = 16;
  for (let s = 0; s < count && position + 24 <= bytes.length; s++) {
    const length = view.getBigUint64(position + 8, true);
    if (length > BigInt(bytes.length - position - 24)) break;
    const size = Number(length);
    const payload = position + 24;
    const end = payload + Math.ceil(size / 8) * 8;
    spans.push({ start: position, payload, length: size, end: Math.min(end, bytes.length) });
    position = end;
  }
  return spans;
}

/** Rewrites the CRC of every section that can be found, so that damage reaches the deeper checks. */
function fixChecksums(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const span of walkSections(bytes)) {
    const headerCrc = crc32(bytes.subarray(span.start, span.start + 16));
    const crc = crc32(bytes.subarray(span.payload, span.payload + span.length), headerCrc);
    view.setUint32(span.start + 16, crc, true);
  }
  return bytes;
}

/** Builds one section (header, payload, padding) with a correct CRC. */
function sectionBytes(tag: string, flags: number, payload: Uint8Array): Uint8Array {
  const padded = Math.ceil(payload.length / 8) * 8;
  const out = new Uint8Array(24 + padded);
  const view = new DataView(out.buffer);
  for (let i = 0; i < 4; i++) out[i] = tag.charCodeAt(i);
  view.setUint32(4, flags, true);
  view.setBigUint64(8, BigInt(payload.length), true);
  out.set(payload, 24);
  view.setUint32(16, crc32(payload, crc32(out.subarray(0, 16))), true);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let position = 0;
  for (const part of parts) {
    out.set(part, position);
    position += part.length;
  }
  return out;
}

/** Replaces the HEAD payload of a valid file with `json`, keeping every CRC correct. */
function replaceHeader(bytes: Uint8Array, json: Uint8Array): Uint8Array {
  const spans = walkSections(bytes);
  const head = spans[0];
  const flags = new DataView(bytes.buffer, bytes.byteOffset).getUint32(head.start + 4, true);
  return concat([
    bytes.subarray(0, head.start),
    sectionBytes("HEAD", flags, json),
    bytes.subarray(head.end),
  ]);
}

// ---------------------------------------------------------------------------
// Mutators: each returns a damaged copy

type Mutator = (random: Random, files: Uint8Array[]) => Uint8Array;

const INTERESTING_U32 = [
  0,
  1,
  2,
  7,
  8,
  0x7f,
  0x80,
  0xff,
  0xffff,
  0x7fffffff,
  0x80000000,
  0xffffffff,
];

const bitFlips: Mutator = (random, files) => {
  const bytes = pick(random, files).slice();
  const flips = randomInt(random, 1, 8);
  for (let i = 0; i < flips; i++) {
    bytes[randomInt(random, 0, bytes.length - 1)] ^= 1 << randomInt(random, 0, 7);
  }
  return random() < 0.5 ? fixChecksums(bytes) : bytes;
};

const byteOverwrites: Mutator = (random, files) => {
  const bytes = pick(random, files).slice();
  const writes = randomInt(random, 1, 16);
  for (let i = 0; i < writes; i++) {
    const value = random() < 0.5
      ? pick(random, [0x00, 0xff, 0x7f, 0x80, 0x22, 0x5b, 0x7b])
      : randomInt(random, 0, 255);
    bytes[randomInt(random, 0, bytes.length - 1)] = value;
  }
  return random() < 0.5 ? fixChecksums(bytes) : bytes;
};

const truncation: Mutator = (random, files) => {
  const bytes = pick(random, files);
  return bytes.slice(0, randomInt(random, 0, bytes.length - 1));
};

const splices: Mutator = (random, files) => {
  const first = pick(random, files);
  const second = pick(random, files);
  const cut = randomInt(random, 0, first.length);
  const from = randomInt(random, 0, second.length);
  const bytes = concat([first.subarray(0, cut), second.subarray(from)]);
  return random() < 0.5 ? fixChecksums(bytes) : bytes;
};

/** Repeats one whole section (with a correct CRC) and raises the section count to match, or not. */
const sectionDuplication: Mutator = (random, files) => {
  const bytes = pick(random, files);
  const spans = walkSections(bytes);
  const copied = pick(random, spans);
  const insertAt = pick(random, spans).end;
  const out = concat([
    bytes.subarray(0, insertAt),
    bytes.subarray(copied.start, copied.end),
    bytes.subarray(insertAt),
  ]);
  const view = new DataView(out.buffer);
  if (random() < 0.8) view.setUint32(12, view.getUint32(12, true) + 1, true);
  return out;
};

/** Overwrites an integer field of the preamble or of a section header with an extreme value. */
const integerFields: Mutator = (random, files) => {
  const bytes = pick(random, files).slice();
  const view = new DataView(bytes.buffer);
  const span = pick(random, walkSections(bytes));
  const field = pick(random, ["version", "count", "flags", "length-low", "length-high", "crc"]);
  const value = pick(random, INTERESTING_U32);
  if (field === "version") view.setUint32(8, value, true);
  else if (field === "count") view.setUint32(12, value, true);
  else if (field === "flags") view.setUint32(span.start + 4, value, true);
  else if (field === "length-low") view.setUint32(span.start + 8, value, true);
  else if (field === "length-high") view.setUint32(span.start + 12, value, true);
  else view.setUint32(span.start + 16, value, true);
  return field === "crc" ? bytes : fixChecksums(bytes);
};

/** An array nested 10000 levels deep, to catch recursion on header values. */
const DEEP_ARRAY: unknown[] = [];
{
  let inner = DEEP_ARRAY;
  for (let i = 0; i < 10_000; i++) {
    const next: unknown[] = [];
    inner.push(next);
    inner = next;
  }
}

/** Values that a damaged or hostile header could contain in place of any field. */
function strangeValue(random: Random): unknown {
  return pick(random, [
    null,
    true,
    0,
    -1,
    0.5,
    1e308,
    -1e308,
    2 ** 32,
    2 ** 53 + 2,
    "",
    "x".repeat(100_000),
    "\u0000\ud800",
    [],
    [1, 2, 3],
    {},
    { encoding: "uniform" },
    { sineLayers: 64, width: 256, w0: 30 },
    DEEP_ARRAY,
  ]);
}

/** Replaces one field anywhere in the header JSON and stores it with a correct CRC. */
const headerFields: Mutator = (random, files) => {
  const bytes = pick(random, files);
  const head = walkSections(bytes)[0];
  const header = JSON.parse(
    new TextDecoder().decode(bytes.subarray(head.payload, head.payload + head.length)),
  );
  const paths: (string | number)[][] = [];
  const visit = (value: unknown, path: (string | number)[]) => {
    paths.push(path);
    if (Array.isArray(value)) value.slice(0, 4).forEach((item, i) => visit(item, [...path, i]));
    else if (value !== null && typeof value === "object") {
      for (const [key, item] of Object.entries(value)) visit(item, [...path, key]);
    }
  };
  visit(header, []);
  const path = pick(random, paths);
  const value = random() < 0.1 ? undefined : strangeValue(random);
  let edited: unknown = value;
  if (path.length > 0) {
    let parent: any = header;
    for (const key of path.slice(0, -1)) parent = parent[key];
    parent[path[path.length - 1]] = value;
    edited = header;
  }
  return replaceHeader(bytes, new TextEncoder().encode(JSON.stringify(edited) ?? ""));
};

/** Damages the header JSON text itself (so it may stop being JSON or UTF-8) with a correct CRC. */
const headerText: Mutator = (random, files) => {
  const bytes = pick(random, files);
  const head = walkSections(bytes)[0];
  const json = bytes.slice(head.payload, head.payload + head.length);
  const edits = randomInt(random, 1, 4);
  for (let i = 0; i < edits; i++) {
    json[randomInt(random, 0, json.length - 1)] = pick(random, [
      0x22,
      0x2c,
      0x7d,
      0x5d,
      0x30,
      0x2d,
      0x65,
      0xc3,
      0xff,
    ]);
  }
  return replaceHeader(bytes, json);
};

const MUTATORS: Record<string, Mutator> = {
  "bit flips": bitFlips,
  "byte overwrites": byteOverwrites,
  truncation,
  "splices of two files": splices,
  "section duplication": sectionDuplication,
  "integer fields": integerFields,
  "header fields": headerFields,
  "header text": headerText,
};

// ---------------------------------------------------------------------------
// Checks

/** Asserts that a file the parser accepted is internally consistent, as the decoder relies on it. */
function assertConsistent(file: RinrFile, where: string): void {
  const n = file.header.imageCount;
  const q = sirenParamCount(file.arch);
  assertEquals(file.labels.length, n, `${where}: labels`);
  assertEquals(file.psnr.length, n, `${where}: psnr`);
  assert(file.labels.every((label) => label < file.classNames.length), `${where}: label range`);
  assert(file.classNames.every((name) => typeof name === "string"), `${where}: class names`);
  assertEquals(file.header.paramCount, q, `${where}: paramCount`);
  assert(Number.isInteger(file.resolution), `${where}: integer resolution`);
  assert(file.resolution >= 1, `${where}: positive resolution`);
  if (file.weights instanceof Float32Array) {
    assertEquals(file.weights.length, n * q, `${where}: f32 weights`);
  } else {
    const layers = sirenLayers(file.arch).length;
    assertEquals(file.weights.count, n, `${where}: quantized count`);
    assertEquals(file.weights.bits.length, layers, `${where}: bits`);
    assertEquals(file.weights.codes.length, n * file.weights.wordsPerImage, `${where}: codes`);
    assertEquals(file.weights.ranges.length, n * layers * 2, `${where}: ranges`);
  }
}

Deno.test("parseRinr fuzz: FormatError or a valid file", () => {
  const files = baseFiles();
  for (const [index, bytes] of files.entries()) {
    assertConsistent(parseRinr(bytes, "base"), `base file ${index}`);
  }

  const random = seededRandom(SEED);
  const outcomes: Record<string, { accepted: number; rejected: number }> = {};
  let slowest = 0;
  for (const [name, mutate] of Object.entries(MUTATORS)) {
    outcomes[name] = { accepted: 0, rejected: 0 };
    for (let i = 0; i < CASES_PER_MUTATOR; i++) {
      const bytes = mutate(random, files);
      const where = `${name} case ${i} (${bytes.length} bytes)`;
      const started = performance.now();
      let file: RinrFile | undefined;
      try {
        file = parseRinr(bytes, "fuzz.rinr");
      } catch (error) {
        if (!(error instanceof FormatError)) {
          throw new Error(
            `${where}: parseRinr threw ${(error as Error)?.name}: ${(error as Error)?.message}`,
            {
              cause: error,
            },
          );
        }
        assert(
          error.message.startsWith("fuzz.rinr: "),
          `${where}: message names the file: ${error.message}`,
        );
        assert(error.field.length > 0, `${where}: error names a field`);
        assert(
          error.message.length <= MAX_MESSAGE_CHARS,
          `${where}: message of ${error.message.length} characters`,
        );
        outcomes[name].rejected++;
      }
      slowest = Math.max(slowest, performance.now() - started);
      if (file) {
        assertConsistent(file, where);
        outcomes[name].accepted++;
      }
    }
  }
  assert(slowest < HANG_LIMIT_MS, `one parse took ${slowest.toFixed(0)} ms`);
  // Every mutator must reach the parser's checks, not only the first one.
  for (const [name, counts] of Object.entries(outcomes)) {
    assert(counts.rejected > 0, `${name}: no case was rejected: ${JSON.stringify(counts)}`);
  }
});

// ---------------------------------------------------------------------------
// Cases the fuzzer found or cannot reach

function editHeader(bytes: Uint8Array, edit: (header: any) => void): Uint8Array {
  const head = walkSections(bytes)[0];
  const header = JSON.parse(
    new TextDecoder().decode(bytes.subarray(head.payload, head.payload + head.length)),
  );
  edit(header);
  return replaceHeader(bytes, new TextEncoder().encode(JSON.stringify(header)));
}

Deno.test("parseRinr quotes header values briefly", () => {
  const bytes = baseFiles()[1];
  const long = "u".repeat(50_000);
  const cases: [string, (header: any) => void, string][] = [
    ["header.labelType", (h) => h.labelType = long, "(50002 characters)"],
    ["header.weights.encoding", (h) => h.weights.encoding = long, "(50002 characters)"],
    ["header.weights.bits", (h) => h.weights.bits = new Array(20_000).fill(8), "characters)"],
    ["header.resolution", (h) => h.resolution = [[[[long]]]], "(50010 characters)"],
    ["header.encode.seed", (h) => h.encode.seed = "seven", 'got "seven"'],
    ["header.encode.seed", (h) => h.encode.seed = -1, "got -1"],
  ];
  for (const [field, edit, fragment] of cases) {
    const error = assertThrows(() => parseRinr(editHeader(bytes, edit), "t.rinr"), FormatError);
    assertEquals(error.field, field);
    assert(error.message.includes(fragment), `${field}: ${error.message}`);
    assert(
      error.message.length <= MAX_MESSAGE_CHARS,
      `${field}: ${error.message.length} characters`,
    );
  }
  const noSeed = parseRinr(editHeader(bytes, (h) => delete h.encode.seed), "t.rinr");
  assertEquals(noSeed.encode?.seed, undefined);
});

Deno.test("readRinr rejects paths that are not files", async () => {
  const folder = await Deno.makeTempDir({ prefix: "rapid-inr-fuzz-" });
  try {
    await assertRejects(() => readRinr(folder), FormatError, `${folder}: file: is a folder`);

    const dangling = join(folder, "dangling.rinr");
    await Deno.symlink(join(folder, "missing.rinr"), dangling);
    await assertRejects(() => readRinr(dangling), FormatError, "not found");

    const loop = join(folder, "loop.rinr");
    await Deno.symlink(loop, loop);
    await assertRejects(() => readRinr(loop), FormatError, "loop of symbolic links");

    // A device or FIFO is rejected before reading, where a read would never end.
    const device = join(folder, "zero.rinr");
    await Deno.symlink("/dev/zero", device);
    if (await Deno.stat("/dev/zero").catch(() => undefined)) {
      await assertRejects(() => readRinr(device), FormatError, "is not a regular file");
    }
    const fifo = join(folder, "fifo.rinr");
    const created = await new Deno.Command("mkfifo", {
      args: [fifo],
      stdout: "null",
      stderr: "null",
    })
      .output().then((output) => output.success, () => false);
    if (created) await assertRejects(() => readRinr(fifo), FormatError, "is not a regular file");
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});
