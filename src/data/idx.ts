// IDX files, the format of MNIST and Fashion-MNIST: a 4-byte magic (two zero
// bytes, the element type, the number of dimensions), one big-endian uint32
// per dimension, then the elements in row-major order. Files may be gzipped;
// gzip is recognized by its magic bytes (1f 8b), not by the ".gz" extension.

import { basename, dirname, join } from "@std/path";
import {
  allocatePixels,
  checkSizeOption,
  type Dataset,
  type LoadOptions,
  selectFirstSamples,
} from "./common.ts";
import { DataError } from "./errors.ts";
import { describeFsError, readMaybeGzip } from "./files.ts";
import { resizeToSquare } from "./resize.ts";

/** An IDX array of unsigned bytes (element type 0x08). */
export interface IdxArray {
  /** Dimension sizes, outermost first, such as [N, 28, 28] for images. */
  dims: number[];
  /** Elements in row-major order. */
  data: Uint8Array;
}

/** Paths of an IDX image file and its label file. */
export interface IdxPaths {
  images: string;
  labels: string;
}

/** Options of {@linkcode loadIdx}. */
export interface IdxLoadOptions extends LoadOptions {
  /**
   * Class names in label order. Default: the lines of `classes.txt` next to
   * the image file if it exists, else the label numbers "0", "1", ...
   */
  classNames?: string[];
}

const IDX_TYPE_NAMES: Record<number, string> = {
  0x08: "unsigned byte",
  0x09: "signed byte",
  0x0b: "int16",
  0x0c: "int32",
  0x0d: "float32",
  0x0e: "float64",
};

/** Parses IDX bytes (already gunzipped). `name` is used in error messages. */
export function parseIdx(bytes: Uint8Array, name: string): IdxArray {
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) {
    throw new DataError(name, "not an IDX file: it does not start with two zero bytes.");
  }
  const type = bytes[2];
  if (type !== 0x08) {
    const typeName = IDX_TYPE_NAMES[type] ?? "unknown";
    throw new DataError(
      name,
      `unsupported IDX element type 0x${type.toString(16).padStart(2, "0")} (${typeName}); ` +
        "only unsigned byte (0x08) files are supported.",
    );
  }
  const rank = bytes[3];
  const headerBytes = 4 + 4 * rank;
  if (rank === 0 || bytes.length < headerBytes) {
    throw new DataError(
      name,
      `invalid IDX header: ${rank} dimensions in a ${bytes.length}-byte file.`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i));
  const count = dims.reduce((product, dim) => product * dim, 1);
  if (bytes.length !== headerBytes + count) {
    throw new DataError(
      name,
      `invalid IDX file: dimensions ${dims.join("x")} need ${headerBytes + count} bytes, ` +
        `the file has ${bytes.length}. The file is truncated or not an IDX file.`,
    );
  }
  return { dims, data: bytes.subarray(headerBytes) };
}

/** Encodes an unsigned-byte IDX array (not gzipped). */
export function encodeIdx(array: IdxArray): Uint8Array<ArrayBuffer> {
  const count = array.dims.reduce((product, dim) => product * dim, 1);
  if (array.data.length !== count) {
    throw new RangeError(
      `encodeIdx: data has ${array.data.length} bytes, dims ${array.dims.join("x")} need ${count}.`,
    );
  }
  const headerBytes = 4 + 4 * array.dims.length;
  const out = new Uint8Array(headerBytes + count);
  const view = new DataView(out.buffer);
  out[2] = 0x08;
  out[3] = array.dims.length;
  array.dims.forEach((dim, i) => view.setUint32(4 + 4 * i, dim));
  out.set(array.data, headerBytes);
  return out;
}

/** Reads and parses an IDX file, gzipped or not. */
export async function readIdx(path: string): Promise<IdxArray> {
  return parseIdx(await readMaybeGzip(path), path);
}

/**
 * Loads an IDX image file ([N][H][W] grayscale, or [N][H][W][C] with C = 1 or
 * 3) and its IDX label file ([N]) as a dataset in file order. Grayscale
 * becomes RGB; images are resized when `size` differs from their side.
 */
export async function loadIdx(paths: IdxPaths, options: IdxLoadOptions = {}): Promise<Dataset> {
  checkSizeOption(options.size);
  const [images, labels] = await Promise.all([readIdx(paths.images), readIdx(paths.labels)]);
  const { dims } = images;
  const channels = dims.length === 4 ? dims[3] : 1;
  if (!(dims.length === 3 || (dims.length === 4 && (channels === 1 || channels === 3)))) {
    throw new DataError(
      paths.images,
      `IDX image file has dimensions ${
        dims.join("x")
      }; expected [N][H][W] or [N][H][W][C] with C = 1 or 3.`,
    );
  }
  if (dims[0] === 0) {
    throw new DataError(
      paths.images,
      "IDX image file contains no images (its first dimension is 0).",
    );
  }
  if (dims[1] === 0 || dims[2] === 0) {
    throw new DataError(
      paths.images,
      `IDX image file has dimensions ${dims.join("x")}: images of ${dims[2]}x${
        dims[1]
      } pixels are empty.`,
    );
  }
  if (labels.dims.length !== 1 || labels.dims[0] !== dims[0]) {
    throw new DataError(
      paths.labels,
      `IDX label file has dimensions ${labels.dims.join("x")}; expected one label per image, [${
        dims[0]
      }].`,
    );
  }

  const maxLabel = labels.data.reduce((max, label) => Math.max(max, label), 0);
  const classNames = options.classNames ?? await readClassNames(paths.images) ??
    Array.from({ length: maxLabel + 1 }, (_, label) => String(label));
  if (maxLabel >= classNames.length) {
    throw new DataError(
      paths.labels,
      `label ${maxLabel} has no class name: only ${classNames.length} names are given. ` +
        "Fix classes.txt or the classNames option.",
    );
  }

  const [, height, width] = dims;
  const side = options.size ?? (width === height ? width : undefined);
  if (side === undefined) {
    throw new DataError(
      paths.images,
      `images are ${width}x${height}, not square; pass the size option.`,
    );
  }
  const { indices: selected, selectedCount } = selectFirstSamples(labels.data, options);
  const pixels = allocatePixels(selected.length, side, paths.images);
  const outLabels = new Int32Array(selected.length);
  const sourcePaths: string[] = [];
  const rgb = new Uint8Array(width * height * 3);
  const imageBytes = width * height * channels;
  selected.forEach((index, slot) => {
    const source = images.data.subarray(index * imageBytes, (index + 1) * imageBytes);
    for (let p = 0; p < width * height; p++) {
      for (let c = 0; c < 3; c++) rgb[p * 3 + c] = source[p * channels + (channels === 3 ? c : 0)];
    }
    const square = resizeToSquare({ width, height, rgb }, { size: side, filter: options.filter });
    pixels.set(square.rgb, slot * side * side * 3);
    outLabels[slot] = labels.data[index];
    sourcePaths.push(`${paths.images}#${index}`);
  });
  options.onProgress?.(selected.length, selected.length);
  return {
    images: pixels,
    labels: outLabels,
    classNames,
    paths: sourcePaths,
    side,
    skipped: [],
    selectedCount,
  };
}

/** Returns the lines of `classes.txt` next to `file`, or undefined if there is none. */
export async function readClassNames(file: string): Promise<string[] | undefined> {
  const path = join(dirname(file), "classes.txt");
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw await describeFsError(error, path, "file") ?? error;
  }
  return text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line.length > 0);
}

/**
 * Returns the label file name that belongs to an IDX image file name, by the
 * MNIST naming convention: "train-images-idx3-ubyte.gz" pairs with
 * "train-labels-idx1-ubyte.gz". Returns undefined for other names.
 */
export function idxLabelsPathFor(imagesPath: string): string | undefined {
  const name = basename(imagesPath);
  const labelsName = name.replace("images-idx3", "labels-idx1").replace("images", "labels");
  return labelsName === name ? undefined : join(dirname(imagesPath), labelsName);
}
