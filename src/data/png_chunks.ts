// PNG chunk checks and the CRC-32 that PNG chunks carry.

let crcTable: Uint32Array | undefined;

/** CRC-32 as PNG chunks use it (ISO 3309 polynomial 0xEDB88320, reflected). */
export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/**
 * Returns the first damage that the decoder would not report, or undefined.
 * Damage is a chunk that runs past the end of the file, or a critical chunk
 * whose CRC does not match. Critical chunk types start with an upper-case
 * letter, such as IHDR, PLTE, IDAT and IEND. The WebAssembly decoder of @jsquash/png 3.1.1 decodes
 * chunks with a wrong CRC (tests/robust_input_test.ts has such a file), so
 * altered image data would load as wrong pixels. This follows libpng's
 * default (png_set_crc_action in pngrtran.c): an error for critical chunks,
 * a warning for ancillary ones, which are not checked here.
 */
export function findPngDamage(bytes: Uint8Array): string | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 8;
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = chunkType(bytes, offset + 4);
    const end = offset + 12 + length;
    if (end > bytes.length) {
      return `the file is truncated inside the ${type} chunk at byte ${offset} ` +
        `(the chunk needs ${end} bytes, the file has ${bytes.length}).`;
    }
    const critical = bytes[offset + 4] >= 0x41 && bytes[offset + 4] <= 0x5a;
    if (critical) {
      const stored = view.getUint32(offset + 8 + length);
      const computed = crc32(bytes.subarray(offset + 4, offset + 8 + length));
      if (stored !== computed) {
        return `the ${type} chunk at byte ${offset} fails its CRC check, so its bytes were altered.`;
      }
    }
    if (type === "IEND") return undefined;
    offset = end;
  }
  return undefined;
}

/**
 * Names the first structural problem of a PNG that the decoder rejected. The
 * WebAssembly decoder reports every failure as the same panic, so the reason
 * is found by walking the chunks here, only on the error path.
 */
export function diagnosePng(bytes: Uint8Array): string {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 8;
  let sawData = false;
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = chunkType(bytes, offset + 4);
    const end = offset + 12 + length;
    if (end > bytes.length) {
      return `the file is truncated inside the ${type} chunk at byte ${offset} ` +
        `(the chunk needs ${end} bytes, the file has ${bytes.length}).`;
    }
    const stored = view.getUint32(offset + 8 + length);
    const computed = crc32(bytes.subarray(offset + 4, offset + 8 + length));
    if (stored !== computed) {
      return `the ${type} chunk at byte ${offset} fails its CRC check, so its bytes were altered.`;
    }
    if (type === "IDAT") sawData = true;
    if (type === "IEND") {
      return sawData
        ? "the compressed image data (IDAT) is invalid or too short for the declared size."
        : "the file has no image data (IDAT) chunk.";
    }
    offset = end;
  }
  return sawData
    ? "the file is truncated: the image data does not end with an IEND chunk."
    : "the file is truncated before any image data (IDAT) chunk.";
}

/** Returns the 4-character type of the chunk whose type field starts at `offset`. */
export function chunkType(bytes: Uint8Array, offset: number): string {
  return String.fromCharCode(...bytes.subarray(offset, offset + 4));
}
