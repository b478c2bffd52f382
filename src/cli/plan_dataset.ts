// Dataset checks for --dry-run: counts images and classes the way the
// loaders select them, without decoding every image. Image folders are only
// listed, and the images up to the first readable one are decoded for its
// size, under the loader's rule for bad images. CIFAR-10 and IDX files hold
// raw pixels, so they are read with the loader (without resizing).

import { basename, extname, join, relative } from "@std/path";
import {
  DataError,
  type DatasetKind,
  decodeImage,
  detectDatasetKind,
  IMAGE_EXTENSIONS,
  loadDataset,
  MAX_IMAGE_FILE_BYTES,
  DEFAULT_MAX_BAD_FRACTION,
  selectSamples,
  type SkippedFile,
} from "../data/mod.ts";
import { BadImagePolicy } from "../data/bad_images.ts";
import { readRegularFile } from "../data/files.ts";
import type { Log } from "./log.ts";
import type { DatasetSpec } from "./stages.ts";

/** Facts that a dry run found about one dataset split. */
export interface DatasetPlan {
  path: string;
  kind: DatasetKind;
  /** Split folder or name that is read; null when an image folder is read as the split itself. */
  split: string | null;
  /** Images after --per-class and --limit, before unreadable ones are skipped. */
  images: number;
  classNames: string[];
  /** Side R in pixels of the loaded images. */
  side: number;
  /** Source of `side`. */
  sideFrom:
    | "option"
    | "preset"
    | "encoded resolution"
    | "classifier input"
    | "first image"
    | "dataset file";
  /** Width and height of the first image file, for image folders. */
  firstImage: { path: string; width: number; height: number } | null;
  /** Method that found `images`. */
  countedBy: "listing files" | "reading the dataset files";
  /**
   * Unreadable or corrupt images found before the first readable one, which
   * the run skips. The other images are not decoded by a dry run.
   */
  skipped: SkippedFile[];
}

interface ImageFile {
  path: string;
  label: number;
}

/** Counts the images of `spec` and finds their side; throws the loader's errors for bad paths. */
export async function planDataset(spec: DatasetSpec, log: Log): Promise<DatasetPlan> {
  const kind = await detectDatasetKind(spec.path);
  if (kind !== "image-folder") {
    // Without `size`, the loader keeps the native side and resizes nothing.
    const dataset = await loadDataset(spec.path, {
      split: spec.split,
      limitPerClass: spec.limitPerClass,
      limit: spec.limit,
    });
    return {
      path: spec.path,
      kind,
      split: spec.split ?? "train",
      images: dataset.labels.length,
      classNames: dataset.classNames,
      side: spec.size ?? dataset.side,
      sideFrom: spec.size !== undefined ? "option" : "dataset file",
      firstImage: null,
      countedBy: "reading the dataset files",
      skipped: [],
    };
  }

  const { folder, split } = await splitFolder(spec.path, spec.split);
  const { classNames, files } = await listClasses(folder, log);
  const selected = selectSamples(files.map((f) => f.label), {
    limitPerClass: spec.limitPerClass,
    limit: spec.limit,
  })
    .map((index) => files[index]);
  const policy = new BadImagePolicy(folder, selected.length, spec);
  const firstImage = await firstReadableImage(selected, {
    policy,
    maxBadFraction: spec.maxBadFraction ?? DEFAULT_MAX_BAD_FRACTION,
  }, log);
  if (spec.size === undefined && firstImage.width !== firstImage.height) {
    throw new DataError(
      firstImage.path,
      `the first image is ${firstImage.width}x${firstImage.height}, not square, so the output size is unknown. Pass --size (for example 224).`,
    );
  }
  return {
    path: spec.path,
    kind,
    split,
    images: selected.length,
    classNames,
    side: spec.size ?? firstImage.width,
    sideFrom: spec.size !== undefined ? "option" : "first image",
    firstImage,
    countedBy: "listing files",
    skipped: policy.skipped,
  };
}

/** Finds the folder of class folders as the image-folder loader does. */
async function splitFolder(
  root: string,
  split: string | undefined,
): Promise<{ folder: string; split: string | null }> {
  const info = await Deno.stat(root);
  if (!info.isDirectory) {
    throw new DataError(
      root,
      "is a file; expected a dataset folder (<root>/<split>/<class>/<image>).",
    );
  }
  if (split === undefined) {
    const train = await Deno.stat(join(root, "train")).catch(() => undefined);
    return train?.isDirectory
      ? { folder: join(root, "train"), split: "train" }
      : { folder: root, split: null };
  }
  const folder = join(root, split);
  const splitInfo = await Deno.stat(folder).catch(() => undefined);
  if (!splitInfo?.isDirectory) {
    const subfolders = (await readFolder(root)).filter((e) => e.isDirectory).map((e) => e.name)
      .sort();
    throw new DataError(
      root,
      `has no split folder "${split}". Its subfolders are: ${
        subfolders.join(", ") || "(none)"
      }. Pass one of them as the split.`,
    );
  }
  return { folder, split };
}

async function readFolder(folder: string): Promise<Deno.DirEntry[]> {
  try {
    return await Array.fromAsync(Deno.readDir(folder));
  } catch (error) {
    throw new DataError(folder, `could not be listed: ${(error as Error).message}`);
  }
}

function byCodeUnits(a: string, b: string): number {
  if (a < b) return -1;
  if (a > b) return 1;
  return 0;
}

/** Lists class folders (sorted) and their image files (sorted by path below the class folder). */
async function listClasses(
  folder: string,
  log: Log,
): Promise<{ classNames: string[]; files: ImageFile[] }> {
  const classNames: string[] = [];
  for (const entry of await readFolder(folder)) {
    if (entry.name.startsWith(".")) continue;
    const isFolder = entry.isDirectory ||
      (entry.isSymlink &&
        (await Deno.stat(join(folder, entry.name)).catch(() => undefined))?.isDirectory);
    if (isFolder) classNames.push(entry.name);
  }
  classNames.sort(byCodeUnits);
  if (classNames.length === 0) {
    throw new DataError(
      folder,
      "has no class folders. Expected <split>/<class>/<image files>, with one folder per class.",
    );
  }

  const files: ImageFile[] = [];
  for (const [label, className] of classNames.entries()) {
    const classFolder = join(folder, className);
    const paths = (await listFiles(classFolder, new Set())).sort((a, b) =>
      byCodeUnits(relative(classFolder, a), relative(classFolder, b))
    );
    const isImage = (path: string) => IMAGE_EXTENSIONS.includes(extname(path).toLowerCase());
    const others = paths.filter((path) => !isImage(path));
    if (others.length > 0) {
      log.warn(
        `${classFolder}: ${others.length} file(s) without a .png, .jpg or .jpeg extension will be skipped, such as "${
          basename(others[0])
        }".`,
      );
    }
    const images = paths.filter(isImage);
    if (images.length === 0) {
      throw new DataError(
        classFolder,
        `class "${className}" has no .png, .jpg or .jpeg files. Add images or remove the folder.`,
      );
    }
    for (const path of images) files.push({ path, label });
  }
  return { classNames, files };
}

/** Lists the files below `folder`, following each linked folder once. */
async function listFiles(folder: string, visited: Set<string>): Promise<string[]> {
  const real = await Deno.realPath(folder).catch(() => folder);
  if (visited.has(real)) return [];
  visited.add(real);
  const found: string[] = [];
  for (const entry of await readFolder(folder)) {
    if (entry.name.startsWith(".")) continue;
    const path = join(folder, entry.name);
    const isFolder = entry.isDirectory ||
      (entry.isSymlink && (await Deno.stat(path).catch(() => undefined))?.isDirectory);
    if (isFolder) found.push(...await listFiles(path, visited));
    else found.push(path);
  }
  return found;
}

/**
 * Decodes selected images in order until one succeeds, as the loader takes
 * its side from the first image it can read. Each failure goes through the
 * loader's `policy`, so the dry run fails where the run would fail on the
 * same images: in strict mode, or once they exceed the maximum bad fraction.
 * Otherwise it is a warning.
 */
async function firstReadableImage(
  selected: ImageFile[],
  rule: { policy: BadImagePolicy; maxBadFraction: number },
  log: Log,
): Promise<{ path: string; width: number; height: number }> {
  // BadImagePolicy fails once the skips exceed this count.
  const maxSkipped = Math.floor(rule.maxBadFraction * selected.length);
  for (const { path } of selected) {
    try {
      const image = await decodeImage(await readRegularFile(path, MAX_IMAGE_FILE_BYTES), path);
      return { path, width: image.width, height: image.height };
    } catch (error) {
      if (!(error instanceof DataError)) throw error;
      rule.policy.skip(error);
      log.warn(
        `${error.message} The run skips this image, and fails if more than ${maxSkipped} of the ` +
          `${selected.length} requested images are unreadable or corrupt (--max-bad-fraction ${rule.maxBadFraction}); ` +
          "the dry run decodes only the images up to the first readable one.",
      );
    }
  }
  throw new DataError(
    selected[0]?.path ?? "dataset",
    "none of the selected images could be read or decoded.",
  );
}
