// Static rANS (range asymmetric numeral systems) coding of 1..16-bit symbols.
//
// One coded block is a frequency table followed by the rANS byte stream:
//   varint alphabetSize  symbols 0..alphabetSize-1 have table entries
//   u8 scaleBits         frequencies sum to exactly 2^scaleBits
//   per symbol: varint frequency, where a 0 is followed by a varint count of
//     further zero frequencies, so sparse 16-bit alphabets stay small
//   the stream: the final encoder state as 4 bytes, most significant first,
//     then the renormalization bytes in the order the decoder reads them.
// Varints are unsigned LEB128 (7 bits per byte, lowest group first).
//
// The state is an integer in [2^23, 2^31) so every step fits the exact
// integer range of a JavaScript number and of 32-bit bitwise operators. The
// encoder starts from 2^23 and walks the symbols backwards. The decoder must
// therefore end in exactly that state with every byte consumed, so damage
// that the section CRC missed usually ends in another state and is reported.

import { FormatError } from "./rinr.ts";

/** Largest symbol width in bits. */
export const MAX_SYMBOL_BITS = 16;
/** Smallest and largest log2 of the frequency total. */
const MIN_SCALE_BITS = 12;
const MAX_SCALE_BITS = 20;
/** Lower bound of the coder state. Renormalization moves whole bytes. */
const STATE_LOW = 1 << 23;
const STATE_BYTES = 4;

/** Options of {@linkcode encodeRans}. */
export interface EncodeRansOptions {
  /** Symbol width in bits, 1..16. Every symbol must be below 2^bits. */
  bits: number;
}

/** Options of {@linkcode decodeRans}. */
export interface DecodeRansOptions {
  /** Number of symbols the block holds. */
  count: number;
  /** Symbol width in bits, 1..16, as given to the encoder. */
  bits: number;
  /** File name for error messages. Default: "rANS block". */
  file?: string;
  /** Field name for error messages. Default: "rANS stream". */
  field?: string;
}

/** A frequency table normalized to a power-of-two total. */
export interface FrequencyTable {
  /** log2 of the frequency total. */
  scaleBits: number;
  /** Frequency per symbol, nonzero exactly for the symbols that occur. */
  frequencies: Uint32Array;
}

/**
 * Counts `symbols` and scales the counts to a total of 2^scaleBits, keeping
 * every occurring symbol at a frequency of at least 1. The total grows with
 * the number of distinct symbols (at least 4 slots per distinct symbol), so
 * 16-bit alphabets still get a usable table.
 */
export function buildFrequencyTable(
  symbols: ArrayLike<number>,
  options: EncodeRansOptions,
): FrequencyTable {
  const bits = checkBits(options.bits);
  const alphabet = 2 ** bits;
  const counts = new Float64Array(alphabet);
  for (let i = 0; i < symbols.length; i++) {
    const symbol = symbols[i];
    if (!Number.isInteger(symbol) || symbol < 0 || symbol >= alphabet) {
      throw new RangeError(
        `Symbol ${i} is ${symbol}, outside 0..${alphabet - 1} for ${bits}-bit symbols.`,
      );
    }
    counts[symbol]++;
  }

  let distinct = 0;
  for (const count of counts) if (count > 0) distinct++;
  const scaleBits = Math.min(
    MAX_SCALE_BITS,
    Math.max(MIN_SCALE_BITS, Math.ceil(Math.log2(Math.max(1, distinct))) + 2),
  );
  const frequencies = new Uint32Array(alphabet);
  if (distinct === 0) return { scaleBits, frequencies };

  const total = 2 ** scaleBits;
  let sum = 0;
  for (let s = 0; s < alphabet; s++) {
    if (counts[s] === 0) continue;
    frequencies[s] = Math.max(1, Math.floor((counts[s] * total) / symbols.length));
    sum += frequencies[s];
  }

  // Flooring leaves the sum at most `total` before the raise to 1, and at
  // most `total + distinct` after it. Give any shortfall to the most frequent
  // symbol. Take any excess from the most frequent symbols first, which
  // always suffices because total >= 4 * distinct.
  const byCount = Array.from({ length: alphabet }, (_, s) => s).filter((s) => counts[s] > 0)
    .sort((a, b) => counts[b] - counts[a]);
  if (sum < total) frequencies[byCount[0]] += total - sum;
  let excess = sum - total;
  for (const s of byCount) {
    if (excess <= 0) break;
    const take = Math.min(excess, frequencies[s] - 1);
    frequencies[s] -= take;
    excess -= take;
  }
  return { scaleBits, frequencies };
}

/** Encodes `symbols` into one self-describing block: frequency table, then rANS stream. */
export function encodeRans(symbols: ArrayLike<number>, options: EncodeRansOptions): Uint8Array {
  const { scaleBits, frequencies } = buildFrequencyTable(symbols, options);
  const starts = cumulativeStarts(frequencies);
  const table = writeTable(frequencies, scaleBits);

  // Bytes come out in the reverse of the order the decoder reads them.
  const reversed = new ByteWriter(Math.ceil((symbols.length * options.bits) / 8) + 16);
  let state = STATE_LOW;
  const renormShift = 31 - scaleBits;
  for (let i = symbols.length - 1; i >= 0; i--) {
    const symbol = symbols[i];
    const frequency = frequencies[symbol];
    const limit = frequency * 2 ** renormShift;
    while (state >= limit) {
      reversed.push(state & 0xff);
      state >>>= 8;
    }
    state = Math.floor(state / frequency) * 2 ** scaleBits + (state % frequency) + starts[symbol];
  }
  for (let b = 0; b < STATE_BYTES; b++) {
    reversed.push(state & 0xff);
    state >>>= 8;
  }

  const stream = reversed.bytes().reverse();
  const out = new Uint8Array(table.length + stream.length);
  out.set(table);
  out.set(stream, table.length);
  return out;
}

/**
 * Decodes a block written by {@linkcode encodeRans} into `count` symbols.
 * Throws a `FormatError` naming `field` when the table is invalid, the
 * stream ends early, bytes are left over, or the final state shows damage.
 */
export function decodeRans(bytes: Uint8Array, options: DecodeRansOptions): Uint16Array {
  const file = options.file ?? "rANS block";
  const field = options.field ?? "rANS stream";
  const fail = (detail: string): never => {
    throw new FormatError(file, field, detail);
  };
  const bits = options.bits;
  if (!Number.isInteger(bits) || bits < 1 || bits > MAX_SYMBOL_BITS) {
    fail(`symbol width ${bits} is outside 1..16 bits.`);
  }
  if (!Number.isSafeInteger(options.count) || options.count < 0) {
    fail(`symbol count ${options.count} is not a count.`);
  }

  const reader = { bytes, position: 0 };
  const { scaleBits, frequencies } = readTable(reader, bits, fail);
  if (frequencies.every((f) => f === 0) && options.count > 0) {
    fail(`frequency table is empty, but ${options.count} symbols are expected.`);
  }
  const starts = cumulativeStarts(frequencies);
  const total = 2 ** scaleBits;
  const slotSymbol = new Uint16Array(total);
  for (let s = 0; s < frequencies.length; s++) {
    slotSymbol.fill(s, starts[s], starts[s] + frequencies[s]);
  }

  let position = reader.position;
  if (position + STATE_BYTES > bytes.length) {
    fail(`ends after ${bytes.length} bytes, before the 4-byte coder state. The data is truncated.`);
  }
  let state = 0;
  for (let b = 0; b < STATE_BYTES; b++) state = state * 256 + bytes[position++];
  if (state < STATE_LOW || state >= 2 ** 31) {
    fail(`initial coder state ${state} is outside [2^23, 2^31), so the data is damaged.`);
  }

  const out = new Uint16Array(options.count);
  const mask = total - 1;
  for (let i = 0; i < options.count; i++) {
    const slot = state & mask;
    const symbol = slotSymbol[slot];
    state = frequencies[symbol] * (state >>> scaleBits) + slot - starts[symbol];
    while (state < STATE_LOW) {
      if (position >= bytes.length) {
        fail(
          `ends after ${bytes.length} bytes while decoding symbol ${i} of ${options.count}. The data is truncated.`,
        );
      }
      state = (state << 8) | bytes[position++];
    }
    out[i] = symbol;
  }
  if (position !== bytes.length) {
    fail(
      `${
        bytes.length - position
      } bytes are left after ${options.count} symbols, so the data is damaged or the count is wrong.`,
    );
  }
  if (state !== STATE_LOW) {
    fail(`final coder state ${state} is not the start state ${STATE_LOW}, so the data is damaged.`);
  }
  return out;
}

function checkBits(bits: number): number {
  if (!Number.isInteger(bits) || bits < 1 || bits > MAX_SYMBOL_BITS) {
    throw new RangeError(`Symbol width must be an integer in 1..16 bits, got ${bits}.`);
  }
  return bits;
}

function cumulativeStarts(frequencies: Uint32Array): Uint32Array {
  const starts = new Uint32Array(frequencies.length);
  let sum = 0;
  for (let s = 0; s < frequencies.length; s++) {
    starts[s] = sum;
    sum += frequencies[s];
  }
  return starts;
}

function writeTable(frequencies: Uint32Array, scaleBits: number): Uint8Array {
  let alphabetSize = frequencies.length;
  while (alphabetSize > 0 && frequencies[alphabetSize - 1] === 0) alphabetSize--;
  const writer = new ByteWriter(16 + alphabetSize);
  writeVarint(writer, alphabetSize);
  writer.push(scaleBits);
  for (let s = 0; s < alphabetSize;) {
    writeVarint(writer, frequencies[s]);
    if (frequencies[s] !== 0) {
      s++;
      continue;
    }
    let run = 1;
    while (s + run < alphabetSize && frequencies[s + run] === 0) run++;
    writeVarint(writer, run - 1);
    s += run;
  }
  return writer.bytes();
}

interface Reader {
  bytes: Uint8Array;
  position: number;
}

function readTable(reader: Reader, bits: number, fail: (detail: string) => never): FrequencyTable {
  const alphabet = 2 ** bits;
  const alphabetSize = readVarint(reader, "alphabet size", fail);
  if (alphabetSize > alphabet) {
    fail(`table lists ${alphabetSize} symbols, more than the ${alphabet} of ${bits}-bit codes.`);
  }
  if (reader.position >= reader.bytes.length) {
    fail("ends inside the frequency table. The data is truncated.");
  }
  const scaleBits = reader.bytes[reader.position++];
  if (scaleBits < MIN_SCALE_BITS || scaleBits > MAX_SCALE_BITS) {
    fail(
      `frequency total 2^${scaleBits} is outside 2^${MIN_SCALE_BITS}..2^${MAX_SCALE_BITS}, so the data is damaged.`,
    );
  }

  const frequencies = new Uint32Array(alphabet);
  const total = 2 ** scaleBits;
  let sum = 0;
  for (let s = 0; s < alphabetSize;) {
    const frequency = readVarint(reader, `frequency of symbol ${s}`, fail);
    if (frequency > total) {
      fail(`frequency ${frequency} of symbol ${s} exceeds the total 2^${scaleBits}.`);
    }
    if (frequency !== 0) {
      frequencies[s++] = frequency;
      sum += frequency;
      continue;
    }
    const run = 1 + readVarint(reader, `zero run at symbol ${s}`, fail);
    if (s + run > alphabetSize) {
      fail(`zero run at symbol ${s} passes the alphabet size ${alphabetSize}.`);
    }
    s += run;
  }
  if (alphabetSize > 0 && sum !== total) {
    fail(
      `frequencies sum to ${sum}, not to the total 2^${scaleBits} = ${total}, so the data is damaged.`,
    );
  }
  return { scaleBits, frequencies };
}

function writeVarint(writer: ByteWriter, value: number): void {
  while (value >= 0x80) {
    writer.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  writer.push(value);
}

/** Reads an unsigned LEB128 value of at most 5 bytes (values below 2^35). */
function readVarint(reader: Reader, what: string, fail: (detail: string) => never): number {
  let value = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (reader.position >= reader.bytes.length) {
      fail(`ends inside the ${what}. The data is truncated.`);
    }
    const byte = reader.bytes[reader.position++];
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return value;
  }
  return fail(`${what} is longer than 5 bytes, so the data is damaged.`);
}

/** A byte buffer that doubles its capacity when full. */
class ByteWriter {
  #buffer: Uint8Array;
  #length = 0;

  constructor(capacity: number) {
    this.#buffer = new Uint8Array(Math.max(16, capacity));
  }

  push(byte: number): void {
    if (this.#length === this.#buffer.length) {
      const grown = new Uint8Array(this.#buffer.length * 2);
      grown.set(this.#buffer);
      this.#buffer = grown;
    }
    this.#buffer[this.#length++] = byte;
  }

  /** Returns a copy of the bytes written so far. */
  bytes(): Uint8Array {
    return this.#buffer.slice(0, this.#length);
  }
}
