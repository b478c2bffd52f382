import { assert, assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import { join } from "@std/path";
import { crc32 } from "node:zlib";
import { decodeRans, encodeRans } from "../src/format/rans.ts";
import { decodeQans, encodeQans } from "../src/format/entropy.ts";
import {
  encodeRinr,
  FormatError,
  formatRinrSummary,
  parseRinr,
  type RinrDataset,
  summarizeRinrFile,
} from "../src/format/mod.ts";
import { quantize, type QuantizedInrs, readCode } from "../src/inr/quantize.ts";
import { sirenParamCount } from "../src/inr/siren.ts";
import { seededRandom } from "./_util.ts";
import { spawnCli, writeStripes } from "./_cli.ts";

function roundTrip(symbols: Uint16Array, bits: number): Uint8Array {
  const coded = encodeRans(symbols, { bits });
  const decoded = decodeRans(coded, { count: symbols.length, bits });
  assertEquals(decoded.length, symbols.length);
  const firstMismatch = decoded.findIndex((s, i) => s !== symbols[i]);
  assertEquals(firstMismatch, -1, `symbol ${firstMismatch} differs after a ${bits}-bit round trip`);
  return coded;
}

/** Laplace-distributed values with scale `b`: a peaked distribution that entropy coding shrinks. */
function laplace(count: number, b: number, random: () => number): Float32Array {
  return Float32Array.from({ length: count }, () => {
    const u = random() - 0.5;
    return -b * Math.sign(u) * Math.log(1 - 2 * Math.abs(u));
  });
}

function laplaceQuantized(count: number, bits: number | number[], seed: number): QuantizedInrs {
  const arch = { sineLayers: 2, width: 6, w0: 30 };
  const random = seededRandom(seed);
  return quantize(arch, laplace(count * sirenParamCount(arch), 0.05, random), bits);
}

function rinrDataset(weights: QuantizedInrs): RinrDataset {
  return {
    arch: weights.arch,
    resolution: 8,
    classNames: ["a", "b"],
    labels: Uint32Array.from({ length: weights.count }, (_, i) => i % 2),
    psnr: new Array(weights.count).fill(31.5),
    weights,
  };
}

Deno.test("rANS round trip on uniform streams", () => {
  const random = seededRandom(1);
  for (const bits of [1, 3, 8, 12, 16]) {
    const symbols = Uint16Array.from({ length: 3000 }, () => Math.floor(random() * 2 ** bits));
    roundTrip(symbols, bits);
  }
});

Deno.test("rANS round trip on skewed stream", () => {
  const random = seededRandom(2);
  const symbols = Uint16Array.from(
    { length: 20000 },
    () => Math.min(255, Math.floor(-Math.log(random()) * 3)),
  );
  const coded = roundTrip(symbols, 8);
  // The entropy of this geometric source (p = 1 - e^(-1/3)) is about 3.0 bits, far below 8.
  assert(
    coded.byteLength < symbols.length * 0.45,
    `coded ${coded.byteLength} bytes for ${symbols.length} symbols`,
  );
});

Deno.test("rANS round trip on single symbol", () => {
  const symbols = new Uint16Array(5000).fill(77);
  const coded = roundTrip(symbols, 7);
  assert(coded.byteLength < 32, `a constant stream coded to ${coded.byteLength} bytes`);
  roundTrip(new Uint16Array(1).fill(65535), 16);
});

Deno.test("rANS round trip on empty stream", () => {
  roundTrip(new Uint16Array(0), 8);
  roundTrip(new Uint16Array(0), 1);
});

Deno.test("rANS round trip with 1-bit and 16-bit alphabets", () => {
  const random = seededRandom(3);
  roundTrip(Uint16Array.from({ length: 4001 }, () => (random() < 0.9 ? 0 : 1)), 1);
  roundTrip(Uint16Array.from({ length: 4001 }, () => (random() < 0.5 ? 0 : 1)), 1);
  // Sparse and dense use of the 65536 symbols: the zero runs and the largest frequency total.
  roundTrip(Uint16Array.from({ length: 3000 }, () => Math.floor(random() * 40) * 1500), 16);
  roundTrip(Uint16Array.from({ length: 200000 }, () => Math.floor(random() * 65536)), 16);
});

Deno.test("rANS round trip on Laplace weight codes", () => {
  const random = seededRandom(4);
  for (const bits of [4, 8, 12]) {
    const values = laplace(20000, 1, random);
    let min = Infinity;
    let max = -Infinity;
    for (const v of values) {
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    const levels = 2 ** bits - 1;
    const symbols = Uint16Array.from(values, (v) => Math.round(((v - min) / (max - min)) * levels));
    const coded = roundTrip(symbols, bits);
    assert(
      coded.byteLength < (symbols.length * bits) / 8,
      `${bits}-bit Laplace codes did not shrink`,
    );
  }
});

Deno.test("rANS rejects symbols wider than bits", () => {
  assertThrows(() => encodeRans(Uint16Array.of(0, 4), { bits: 2 }), RangeError, "outside 0..3");
  assertThrows(() => encodeRans(Uint16Array.of(0), { bits: 17 }), RangeError, "1..16");
});

Deno.test("rANS truncated stream throws FormatError", () => {
  const random = seededRandom(5);
  const symbols = Uint16Array.from({ length: 2000 }, () => Math.floor(random() * random() * 64));
  const coded = encodeRans(symbols, { bits: 6 });
  for (const keep of [0, 1, 3, coded.length - 40, coded.length - 1]) {
    const error = assertThrows(
      () =>
        decodeRans(coded.subarray(0, keep), { count: symbols.length, bits: 6, field: "layer 2" }),
      FormatError,
    ) as FormatError;
    assertEquals(error.field, "layer 2");
  }
});

Deno.test("rANS corrupted stream throws FormatError", () => {
  const random = seededRandom(6);
  const symbols = Uint16Array.from({ length: 2000 }, () => Math.floor(random() * random() * 200));
  const coded = encodeRans(symbols, { bits: 8 });
  let caught = 0;
  const positions = [0, 1, 5, 20, 100, coded.length >> 1, coded.length - 10, coded.length - 1];
  for (const position of positions) {
    for (const flip of [0x01, 0x80]) {
      const damaged = coded.slice();
      damaged[position] ^= flip;
      try {
        const decoded = decodeRans(damaged, { count: symbols.length, bits: 8 });
        // A flip that happens to decode must still not return different symbols silently.
        assertEquals(
          decoded,
          symbols,
          `byte ${position} ^ ${flip} decoded to different symbols without an error`,
        );
      } catch (error) {
        assert(error instanceof FormatError, `byte ${position} ^ ${flip} threw ${error}`);
        caught++;
      }
    }
  }
  assert(
    caught >= positions.length,
    `only ${caught} of ${positions.length * 2} corruptions were detected`,
  );
  assertThrows(() => decodeRans(coded, { count: symbols.length + 1, bits: 8 }), FormatError);
  assertThrows(() => decodeRans(coded, { count: symbols.length - 1, bits: 8 }), FormatError);
});

Deno.test("QANS round trip of quantized weights", () => {
  for (const bits of [1, 5, 8, 16, [8, 32, 4]]) {
    const weights = laplaceQuantized(9, bits, 7);
    const payload = encodeQans(weights);
    const codes = decodeQans(payload, weights);
    assertEquals(codes, weights.codes, `bits ${bits}`);
  }
  const empty = laplaceQuantized(0, 8, 7);
  assertEquals(decodeQans(encodeQans(empty), empty), empty.codes);
});

Deno.test("QANS centres pruned codes on each image's zero point", () => {
  const arch = { sineLayers: 2, width: 6, w0: 30 };
  const random = seededRandom(21);
  const count = 30;
  // Ranges differ per image, so zero sits at a different code in each; half the weights are pruned.
  const values = laplace(count * sirenParamCount(arch), 0.05, random);
  values.forEach((v, i) => values[i] = v + (Math.floor(i / sirenParamCount(arch)) % 5) * 0.02);
  const mask = Uint8Array.from(values, () => random() < 0.5 ? 0 : 1);
  const weights = quantize(arch, values, { bits: 7, mask });
  const payload = encodeQans(weights);
  const view = new DataView(payload.buffer, payload.byteOffset);
  assertEquals(view.getUint32(4, true), 2, "layer 0 uses centred rANS");
  assertEquals(decodeQans(payload, weights), weights.codes);
  const uncentred = encodeRans(
    Uint16Array.from({ length: count * 18 }, (_, k) => {
      const image = Math.floor(k / 18);
      return readCode(weights.codes, image * weights.wordsPerImage, (k % 18) * 7, 7);
    }),
    { bits: 7 },
  );
  assert(view.getUint32(8, true) < uncentred.byteLength, "centring makes layer 0 smaller");
  const { ranges: _, ...withoutRanges } = weights;
  assertThrows(() => decodeQans(payload, withoutRanges), FormatError, "no ranges");
});

Deno.test("QANS damage names the layer", () => {
  const weights = laplaceQuantized(20, 8, 8);
  const payload = encodeQans(weights);
  const truncated = assertThrows(
    () => decodeQans(payload.subarray(0, payload.length - 7), weights),
    FormatError,
  ) as FormatError;
  assert(truncated.field.startsWith("section QANS layer 2"), truncated.field);
  const badMethod = payload.slice();
  badMethod[4] = 9;
  const error = assertThrows(() => decodeQans(badMethod, weights), FormatError) as FormatError;
  assertEquals(error.field, "section QANS layer 0 method");
  const extra = new Uint8Array(payload.length + 1);
  extra.set(payload);
  assertThrows(() => decodeQans(extra, weights), FormatError, "follow the last layer");
});

Deno.test("rinr with QANS reads back packed codes", () => {
  const weights = laplaceQuantized(40, [6, 8, 5], 9);
  const data = rinrDataset(weights);
  const packedFile = encodeRinr(data);
  const codedFile = encodeRinr(data, { entropy: "on" });
  assert(
    codedFile.length < packedFile.length,
    `QANS file ${codedFile.length} bytes, QCOD file ${packedFile.length}`,
  );
  const parsed = parseRinr(codedFile, "coded.rinr");
  assertEquals(parsed.sections.map((s) => s.tag), ["HEAD", "LABL", "QR16", "QANS"]);
  // Readers that predate QANS reject a required section they do not know.
  assertEquals(parsed.sections.find((s) => s.tag === "QANS")?.required, true);
  const read = parsed.weights as QuantizedInrs;
  assertEquals(read.codes, weights.codes);
  assertEquals(read.ranges, weights.ranges);
  assertEquals(read.layerWordOffsets, weights.layerWordOffsets);
  assertEquals(encodeRinr(data, { entropy: "auto" }), codedFile);
  assertEquals(parseRinr(packedFile, "packed.rinr").sections.map((s) => s.tag), [
    "HEAD",
    "LABL",
    "QR16",
    "QCOD",
  ]);
});

Deno.test("rinr auto keeps QCOD when coding does not help", () => {
  const random = seededRandom(10);
  const arch = { sineLayers: 1, width: 4, w0: 30 };
  const uniform = Float32Array.from({ length: 3 * sirenParamCount(arch) }, () => random());
  const data = rinrDataset(quantize(arch, uniform, 32));
  const tags = parseRinr(encodeRinr(data, { entropy: "auto" }), "f.rinr").sections.map((s) =>
    s.tag
  );
  assertEquals(tags, ["HEAD", "LABL", "QR16", "QCOD"]);
});

Deno.test("rinr summary shows coded size", () => {
  const weights = laplaceQuantized(300, 8, 11);
  const file = parseRinr(encodeRinr(rinrDataset(weights), { entropy: "on" }), "coded.rinr");
  const summary = summarizeRinrFile(file);
  assertEquals(summary.entropyCoded, true);
  const qans = file.sections.find((s) => s.tag === "QANS")!;
  const qr16 = file.sections.find((s) => s.tag === "QR16")!;
  assertEquals(summary.weightBytes, qans.bytes + qr16.bytes);
  assert(
    formatRinrSummary(summary).includes(`rANS-coded ${qans.bytes} B`),
    formatRinrSummary(summary),
  );
  const packed = summarizeRinrFile(parseRinr(encodeRinr(rinrDataset(weights)), "p.rinr"));
  assertEquals(packed.entropyCoded, false);
  assert(
    summary.bitsPerWeight < packed.bitsPerWeight,
    `coded ${summary.bitsPerWeight} bits per weight, packed ${packed.bitsPerWeight}`,
  );
});

Deno.test("rinr rejects QCOD and QANS together", () => {
  const weights = laplaceQuantized(4, 8, 12);
  const bytes = encodeRinr(rinrDataset(weights), {
    extraSections: [{ tag: "QANZ", required: false, payload: new Uint8Array(0) }],
  });
  // A file with both sections can only be made by hand: rename the extra tag to QANS.
  const text = new TextDecoder("latin1").decode(bytes);
  const at = text.indexOf("QANZ");
  const both = bytes.slice();
  both[at + 3] = "S".charCodeAt(0);
  const header = new DataView(both.buffer, at);
  header.setUint32(
    16,
    crc32(both.subarray(at + 24, at + 24), crc32(both.subarray(at, at + 16))),
    true,
  );
  assertThrows(() => parseRinr(both, "both.rinr"), FormatError, "both store the codes");
});

Deno.test("compress CLI entropy flag", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const data = join(dir, "stripes");
    await writeStripes(data, { train: 6, test: 0, side: 8 });
    const fp32 = join(dir, "fp32.rinr");
    const encoded = await spawnCli([
      "encode",
      data,
      "-o",
      fp32,
      "--size",
      "8",
      "--iterations",
      "20",
      "--layers",
      "2",
      "--width",
      "8",
      "--quiet",
    ]);
    assertEquals(encoded.code, 0, encoded.stderr);

    const run = async (output: string, ...flags: string[]) => {
      const result = await spawnCli([
        "compress",
        fp32,
        "-o",
        output,
        "--bits",
        "6",
        "--json",
        ...flags,
      ]);
      assertEquals(result.code, 0, result.stderr);
      return JSON.parse(result.stdout);
    };
    const coded = await run(join(dir, "coded.rinr"), "--entropy");
    const packed = await run(join(dir, "packed.rinr"), "--entropy=false");
    const auto = await run(join(dir, "auto.rinr"));
    assertEquals(coded.entropyCoded, true);
    assertEquals(packed.entropyCoded, false);
    assertEquals(auto.entropyCoded, coded.storedBytes < packed.storedBytes);
    assertEquals(auto.storedBytes, Math.min(coded.storedBytes, packed.storedBytes));
    assertEquals(coded.storedBytes, (await Deno.stat(join(dir, "coded.rinr"))).size);
    assertEquals(coded.percentOfRaw, (100 * coded.storedBytes) / coded.rawBytes);
    // Lossless coding of the same codes leaves the decoded images unchanged.
    assertEquals(coded.meanPsnr, packed.meanPsnr);

    const codedFile = parseRinr(await Deno.readFile(join(dir, "coded.rinr")), "coded.rinr");
    const packedFile = parseRinr(await Deno.readFile(join(dir, "packed.rinr")), "packed.rinr");
    assertEquals(
      (codedFile.weights as QuantizedInrs).codes,
      (packedFile.weights as QuantizedInrs).codes,
    );

    const info = await spawnCli(["info", join(dir, "coded.rinr")]);
    assertEquals(info.code, 0, info.stderr);
    assertStringIncludes(info.stdout, "rANS-coded");
    assertStringIncludes(info.stdout, "QANS");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
