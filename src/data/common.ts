// The dataset type every loader returns, the options they share, and the
// sample selection (`limitPerClass`, `limit`) that all of them apply the same way.

import type { BadImageOptions, SkippedFile } from "./bad_images.ts";
import { DataError } from "./errors.ts";
import type { ResizeFilter } from "./resize.ts";

/** A labelled image dataset held in memory, every image square and of one size. */
export interface Dataset {
  /** Pixels, shape [N][R][R][3] (N images, side R, RGB), 8-bit, row-major HWC per image. */
  images: Uint8Array;
  /** Class index of each image, shape [N], each in 0 .. classNames.length - 1. */
  labels: Int32Array;
  /** Class names in label order. */
  classNames: string[];
  /** Source of each image: a file path, or `file#record` for records of a binary batch file. */
  paths: string[];
  /** Image side R in pixels. */
  side: number;
  /**
   * Images that were requested but skipped as unreadable or corrupt, in load
   * order. The loaders always set it (empty when none were skipped).
   */
  skipped?: SkippedFile[];
  /**
   * Images that `limitPerClass` and `limit` selected, before the `first`
   * option cut them. The loaders always set it.
   */
  selectedCount?: number;
}

/**
 * Options shared by all dataset loaders. `strict` and `maxBadFraction` decide
 * what happens to a bad image of an image folder (see bad_images.ts); CIFAR
 * and IDX files are checked as a whole, so any damage there fails the load.
 */
export interface LoadOptions extends BadImageOptions {
  /**
   * Split folder or split name, such as "train" or "test". Default: "train"
   * (an image folder without a "train" subfolder is read as the split itself).
   */
  split?: string;
  /**
   * Output side R in pixels. Images of another size are resized so that the
   * shorter side is R, then center-cropped. Default: the side of the first
   * image, which must then be square.
   */
  size?: number;
  /** Resize kernel when images need resizing. Default: "triangle". */
  filter?: ResizeFilter;
  /** Keep only the first K images of each class, in the loader's order. Default: all. */
  limitPerClass?: number;
  /**
   * Keep at most this many images in total, taken round-robin over the
   * classes (the first image of every class, then the second, ...), so the
   * classes stay balanced. The result keeps the loader's order. Default: all.
   */
  limit?: number;
  /**
   * After `limitPerClass` and `limit`, decode only the first N of the selected
   * images, in the loader's order. Default: all.
   */
  first?: number;
  /** Receives non-fatal problems, one line each, such as skipped files. Default: ignore them. */
  onWarning?: (message: string) => void;
  /** Receives (decoded images, images to decode) as decoding progresses. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Returns the indices (ascending) of the samples kept by `limitPerClass` and
 * `limit`. `labels` are given in the loader's order.
 */
export function selectSamples(
  labels: ArrayLike<number>,
  options: Pick<LoadOptions, "limitPerClass" | "limit">,
): number[] {
  const { limitPerClass, limit } = options;
  checkLimit("limitPerClass", limitPerClass);
  checkLimit("limit", limit);

  const byClass = new Map<number, number[]>();
  for (let i = 0; i < labels.length; i++) {
    const members = byClass.get(labels[i]) ?? [];
    if (limitPerClass === undefined || members.length < limitPerClass) members.push(i);
    byClass.set(labels[i], members);
  }
  const classes = [...byClass.keys()].sort((a, b) => a - b).map((label) => byClass.get(label)!);

  const selected: number[] = [];
  const total = classes.reduce((sum, members) => sum + members.length, 0);
  const keepCount = Math.min(limit ?? Infinity, total);
  for (let rank = 0; selected.length < keepCount; rank++) {
    for (const members of classes) {
      if (rank < members.length && selected.length < keepCount) selected.push(members[rank]);
    }
  }
  return selected.sort((a, b) => a - b);
}

/**
 * Selects samples as {@linkcode selectSamples} does, then keeps the first
 * `options.first` of them. Returns those indices and the count before the cut.
 */
export function selectFirstSamples(
  labels: ArrayLike<number>,
  options: Pick<LoadOptions, "limitPerClass" | "limit" | "first">,
): { indices: number[]; selectedCount: number } {
  checkLimit("first", options.first);
  const indices = selectSamples(labels, options);
  return {
    indices: indices.slice(0, options.first ?? indices.length),
    selectedCount: indices.length,
  };
}

function checkLimit(name: string, value: number | undefined): void {
  if (value !== undefined && (!Number.isInteger(value) || value < 1)) {
    throw new RangeError(`${name} must be a positive integer, got ${value}.`);
  }
}

/** Checks the `size` option: undefined or a positive integer. */
export function checkSizeOption(size: number | undefined): void {
  if (size !== undefined && (!Number.isInteger(size) || size < 1)) {
    throw new RangeError(`size must be a positive integer number of pixels, got ${size}.`);
  }
}

/**
 * Allocates the pixel array of `count` images of side `side` (8-bit RGB).
 * Throws a `DataError` about `source` with the size in bytes when the memory
 * cannot be allocated, in place of V8's bare RangeError.
 */
export function allocatePixels(count: number, side: number, source: string): Uint8Array {
  const bytes = count * side * side * 3;
  try {
    return new Uint8Array(bytes);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    throw new DataError(
      source,
      `${count} images of ${side}x${side} RGB pixels need ${bytes} bytes of memory, which could ` +
        "not be allocated. Load fewer images (limit, limitPerClass) or use a smaller size.",
    );
  }
}

/** Per-class image counts of a dataset, for printing a summary. */
export interface DatasetSummary {
  /** Number of images N. */
  count: number;
  /** Image side R in pixels. */
  side: number;
  /** Each class in label order with its image count. */
  classes: { name: string; count: number }[];
  /** Number of images skipped as unreadable or corrupt. */
  skipped: number;
}

/** Counts the images of each class. */
export function describeDataset(dataset: Dataset): DatasetSummary {
  const counts = new Array<number>(dataset.classNames.length).fill(0);
  for (const label of dataset.labels) counts[label]++;
  return {
    count: dataset.labels.length,
    side: dataset.side,
    classes: dataset.classNames.map((name, label) => ({ name, count: counts[label] })),
    skipped: dataset.skipped?.length ?? 0,
  };
}
