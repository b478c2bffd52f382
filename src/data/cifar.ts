// CIFAR-10 binary batches (the "binary version" of the dataset): files
// data_batch_1.bin .. data_batch_5.bin and test_batch.bin, each a sequence of
// 3073-byte records: one label byte (0..9), then a 32x32 image as 1024 red,
// 1024 green and 1024 blue bytes (CHW, rows top to bottom).

import { dirname, join } from "@std/path";
import {
  allocatePixels,
  checkSizeOption,
  type Dataset,
  type LoadOptions,
  selectFirstSamples,
} from "./common.ts";
import { DataError } from "./errors.ts";
import { describeFsError, readFileOrThrow, statOrThrow } from "./files.ts";
import { resizeToSquare } from "./resize.ts";

/** CIFAR-10 class names in label order, as in the dataset's batches.meta.txt. */
export const CIFAR10_CLASSES = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
];

const SIDE = 32;
const RECORD_BYTES = 1 + 3 * SIDE * SIDE;

/**
 * Lists the batch files of `split` in a CIFAR-10 binary folder: "train" gives
 * the data_batch_*.bin files in name order, "test" gives test_batch.bin. Also
 * looks inside a "cifar-10-batches-bin" subfolder, the archive's folder name.
 * Returns an empty list when the folder has none.
 */
export async function findCifarBatches(dir: string, split: string): Promise<string[]> {
  for (const folder of [dir, join(dir, "cifar-10-batches-bin")]) {
    let names: string[];
    try {
      names = [];
      for await (const entry of Deno.readDir(folder)) if (entry.isFile) names.push(entry.name);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        continue;
      }
      throw await describeFsError(error, folder, "folder") ?? error;
    }
    const pattern = split === "test" ? /^test_batch\.bin$/ : /^data_batch_\d+\.bin$/;
    const batches = names.filter((name) => pattern.test(name)).sort();
    if (batches.length > 0) return batches.map((name) => join(folder, name));
  }
  return [];
}

/**
 * Loads CIFAR-10 binary batches: one .bin file, a list of them, or a folder
 * holding them (then `split` picks "train" or "test" batches; default
 * "train"). Images keep the file order and are resized when `size` differs
 * from 32. Class names come from batches.meta.txt next to the files if
 * present, else {@linkcode CIFAR10_CLASSES}.
 */
export async function loadCifar10Binary(
  path: string | string[],
  options: LoadOptions = {},
): Promise<Dataset> {
  checkSizeOption(options.size);
  const files = Array.isArray(path)
    ? path
    : await resolveBatchFiles(path, options.split ?? "train");
  if (files.length === 0) throw new DataError(String(path), "no CIFAR-10 batch files given.");

  const buffers = await Promise.all(files.map((file) => readFileOrThrow(file)));
  buffers.forEach((bytes, i) => {
    if (bytes.length === 0 || bytes.length % RECORD_BYTES !== 0) {
      throw new DataError(
        files[i],
        `not a CIFAR-10 binary batch: ${bytes.length} bytes is not a multiple of the ${RECORD_BYTES}-byte record ` +
          "(CIFAR-100 batches, with 3074-byte records, are not supported).",
      );
    }
  });

  const records: { file: number; index: number }[] = [];
  const labels: number[] = [];
  buffers.forEach((bytes, file) => {
    for (let index = 0; index < bytes.length / RECORD_BYTES; index++) {
      const label = bytes[index * RECORD_BYTES];
      if (label >= CIFAR10_CLASSES.length) {
        throw new DataError(
          files[file],
          `record ${index} has label ${label}, expected 0..9. The file is corrupt or not CIFAR-10.`,
        );
      }
      records.push({ file, index });
      labels.push(label);
    }
  });

  const classNames = await readCifarClassNames(files[0]) ?? CIFAR10_CLASSES;
  const side = options.size ?? SIDE;
  const { indices: selected, selectedCount } = selectFirstSamples(labels, options);
  const images = allocatePixels(selected.length, side, files[0]);
  const outLabels = new Int32Array(selected.length);
  const paths: string[] = [];
  const rgb = new Uint8Array(SIDE * SIDE * 3);
  selected.forEach((recordIndex, slot) => {
    const { file, index } = records[recordIndex];
    const planes = buffers[file].subarray(index * RECORD_BYTES + 1, (index + 1) * RECORD_BYTES);
    for (let p = 0; p < SIDE * SIDE; p++) {
      for (let c = 0; c < 3; c++) rgb[p * 3 + c] = planes[c * SIDE * SIDE + p];
    }
    const square = resizeToSquare({ width: SIDE, height: SIDE, rgb }, {
      size: side,
      filter: options.filter,
    });
    images.set(square.rgb, slot * side * side * 3);
    outLabels[slot] = labels[recordIndex];
    paths.push(`${files[file]}#${index}`);
  });
  options.onProgress?.(selected.length, selected.length);
  return { images, labels: outLabels, classNames, paths, side, skipped: [], selectedCount };
}

async function resolveBatchFiles(path: string, split: string): Promise<string[]> {
  const info = await statOrThrow(path);
  if (info.isFile) return [path];
  const files = await findCifarBatches(path, split);
  if (files.length === 0) {
    const expected = split === "test" ? "test_batch.bin" : "data_batch_1.bin .. data_batch_5.bin";
    throw new DataError(
      path,
      `no CIFAR-10 batch files for split "${split}" (expected ${expected}).`,
    );
  }
  return files;
}

/** Reads batches.meta.txt (one class name a line) next to a batch file, if present. */
async function readCifarClassNames(batchFile: string): Promise<string[] | undefined> {
  const metaFile = join(dirname(batchFile), "batches.meta.txt");
  try {
    const text = await Deno.readTextFile(metaFile);
    const lines = text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line.length > 0);
    return lines.length >= CIFAR10_CLASSES.length
      ? lines.slice(0, CIFAR10_CLASSES.length)
      : undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw await describeFsError(error, metaFile, "file") ?? error;
  }
}
