// Dataset loading: image folders (`<root>/<split>/<class>/<file>`), and one
// entry point, `loadDataset`, that also reads CIFAR-10 binary batches and IDX
// files, choosing the loader by what the path contains.
//
// Order is deterministic: classes sorted by folder name, files of a class
// sorted by their path below the class folder, both by UTF-16 code unit (so
// "10.png" sorts before "2.png", on every machine and locale).

import { basename, extname, join, relative } from "@std/path";
import { loadCifar10Binary } from "./cifar.ts";
import { checkSizeOption, type Dataset, type LoadOptions, selectSamples } from "./common.ts";
import { DataError } from "./errors.ts";
import { compareCodeUnits, listFolder, readFileOrThrow, readHead, statOrThrow } from "./files.ts";
import { idxLabelsPathFor, type IdxLoadOptions, loadIdx } from "./idx.ts";
import { decodeImage } from "./image.ts";
import { resizeToSquare } from "./resize.ts";

/** File extensions (lower case) that image folders are scanned for. */
export const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg"];

/** Files read ahead of the decoder, so that reading overlaps decoding. */
const READ_AHEAD = 8;

/** Kinds of dataset that {@linkcode loadDataset} recognizes. */
export type DatasetKind = "image-folder" | "cifar10-binary" | "idx";

interface ImageFile {
  path: string;
  label: number;
}

/**
 * Loads an image-folder dataset. `root` is either a dataset folder with split
 * folders (`<root>/<split>/<class>/<file>`) or a split folder itself
 * (`<root>/<class>/<file>`). Files are found recursively below each class
 * folder by extension (.png, .jpg, .jpeg, any case). Hidden entries (names
 * starting with ".") are ignored. Other files are skipped with a warning.
 * A corrupt image throws `DataError` naming the file.
 */
export async function loadImageFolder(root: string, options: LoadOptions = {}): Promise<Dataset> {
  checkSizeOption(options.size);
  const splitFolder = await resolveSplitFolder(root, options.split);
  const { classNames, files } = await scanClassFolders(splitFolder, options.onWarning);
  const selected = selectSamples(files.map((file) => file.label), options).map((index) =>
    files[index]
  );

  let side = options.size;
  let images = side === undefined ? undefined : new Uint8Array(selected.length * side * side * 3);
  const labels = new Int32Array(selected.length);
  const reads: Promise<Uint8Array>[] = [];
  const startRead = (index: number) => {
    if (index < selected.length && reads[index] === undefined) {
      reads[index] = readFileOrThrow(selected[index].path);
    }
  };
  for (let index = 0; index < Math.min(READ_AHEAD, selected.length); index++) startRead(index);

  for (let index = 0; index < selected.length; index++) {
    startRead(index + READ_AHEAD);
    const { path, label } = selected[index];
    const image = await decodeImage(await reads[index], path);
    delete reads[index];
    if (side === undefined || images === undefined) {
      if (image.width !== image.height) {
        throw new DataError(
          path,
          `the first image is ${image.width}x${image.height}, not square, so the output size is unknown. ` +
            "Pass the size option (for example 224).",
        );
      }
      side = image.width;
      images = new Uint8Array(selected.length * side * side * 3);
    }
    const square = resizeToSquare(image, { size: side, filter: options.filter });
    images.set(square.rgb, index * side * side * 3);
    labels[index] = label;
    options.onProgress?.(index + 1, selected.length);
  }

  return {
    images: images ?? new Uint8Array(0),
    labels,
    classNames,
    paths: selected.map((file) => file.path),
    side: side ?? 0,
  };
}

/** Returns the folder whose subfolders are the classes. */
async function resolveSplitFolder(root: string, split: string | undefined): Promise<string> {
  const rootInfo = await statOrThrow(root);
  if (!rootInfo.isDirectory) {
    throw new DataError(
      root,
      "is a file; expected a dataset folder (<root>/<split>/<class>/<image>).",
    );
  }
  if (split === undefined) {
    const train = join(root, "train");
    const trainInfo = await Deno.stat(train).catch(() => undefined);
    return trainInfo?.isDirectory ? train : root;
  }
  const folder = join(root, split);
  const info = await Deno.stat(folder).catch(() => undefined);
  if (!info?.isDirectory) {
    const subfolders = (await listFolder(root)).filter((entry) => entry.isDirectory).map((entry) =>
      entry.name
    );
    throw new DataError(
      root,
      `has no split folder "${split}". Its subfolders are: ${subfolders.join(", ") || "(none)"}. ` +
        "Pass one of them as the split.",
    );
  }
  return folder;
}

/** Lists class folders (sorted) and their image files (sorted by path). */
async function scanClassFolders(
  splitFolder: string,
  onWarning: ((message: string) => void) | undefined,
): Promise<{ classNames: string[]; files: ImageFile[] }> {
  const classNames: string[] = [];
  for (const entry of await listFolder(splitFolder)) {
    if (entry.name.startsWith(".")) continue;
    if (
      entry.isDirectory ||
      (entry.isSymlink && (await statOrThrow(join(splitFolder, entry.name))).isDirectory)
    ) {
      classNames.push(entry.name);
    }
  }
  if (classNames.length === 0) {
    throw new DataError(
      splitFolder,
      "has no class folders. Expected <split>/<class>/<image files>, with one folder per class.",
    );
  }

  const files: ImageFile[] = [];
  for (const [label, className] of classNames.entries()) {
    const classFolder = join(splitFolder, className);
    const paths = (await listFilesRecursively(classFolder)).sort((a, b) =>
      compareCodeUnits(relative(classFolder, a), relative(classFolder, b))
    );
    const images = paths.filter((path) => IMAGE_EXTENSIONS.includes(extname(path).toLowerCase()));
    const skipped = paths.filter((path) => !IMAGE_EXTENSIONS.includes(extname(path).toLowerCase()));
    if (skipped.length > 0) {
      onWarning?.(
        `${classFolder}: skipped ${skipped.length} file(s) without a .png, .jpg or .jpeg extension, ` +
          `such as "${basename(skipped[0])}".`,
      );
    }
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

async function listFilesRecursively(folder: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await listFolder(folder)) {
    if (entry.name.startsWith(".")) continue;
    const path = join(folder, entry.name);
    const isDirectory = entry.isDirectory ||
      (entry.isSymlink && (await statOrThrow(path)).isDirectory);
    if (isDirectory) found.push(...await listFilesRecursively(path));
    else found.push(path);
  }
  return found;
}

// ---------------------------------------------------------------------------
// One entry point for every supported layout

const CIFAR_BATCH = /^(data_batch_\d+|test_batch)\.bin$/;
const IDX_IMAGES = /^(.+)-images-idx[34]-ubyte(\.gz)?$/;

/**
 * Returns which loader `path` needs: a CIFAR-10 .bin file or a folder holding
 * batch files (directly or in "cifar-10-batches-bin"), an IDX image file or a
 * folder of "<split>-images-idx3-ubyte[.gz]" files, else an image folder.
 */
export async function detectDatasetKind(path: string): Promise<DatasetKind> {
  const info = await statOrThrow(path);
  if (info.isFile) {
    if (extname(path).toLowerCase() === ".bin") return "cifar10-binary";
    const head = await readHead(path, 3);
    const isGzip = head[0] === 0x1f && head[1] === 0x8b;
    const isIdx = head[0] === 0 && head[1] === 0 && head[2] === 0x08;
    if (isGzip || isIdx) return "idx";
    throw new DataError(
      path,
      "is a single file but not a CIFAR-10 .bin batch or an IDX file. " +
        "Pass a folder of class folders, a CIFAR-10 batch or an IDX image file.",
    );
  }
  const names = (await listFolder(path)).map((entry) => entry.name);
  if (names.some((name) => CIFAR_BATCH.test(name)) || names.includes("cifar-10-batches-bin")) {
    return "cifar10-binary";
  }
  if (names.some((name) => IDX_IMAGES.test(name))) return "idx";
  return "image-folder";
}

/**
 * Loads a dataset from any supported layout (see {@linkcode detectDatasetKind}).
 * For an IDX folder, `split` "train" reads train-images-*, and "test" reads
 * t10k-images-* or test-images-*.
 */
export async function loadDataset(path: string, options: IdxLoadOptions = {}): Promise<Dataset> {
  const kind = await detectDatasetKind(path);
  if (kind === "cifar10-binary") return loadCifar10Binary(path, options);
  if (kind === "image-folder") return loadImageFolder(path, options);

  const info = await statOrThrow(path);
  const images = info.isFile ? path : await findIdxImages(path, options.split ?? "train");
  const labels = idxLabelsPathFor(images);
  if (labels === undefined || !(await Deno.stat(labels).catch(() => undefined))?.isFile) {
    throw new DataError(
      images,
      `no label file found${labels ? ` at ${labels}` : ""}. Name the files like ` +
        "train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz, or call loadIdx with both paths.",
    );
  }
  return loadIdx({ images, labels }, options);
}

async function findIdxImages(folder: string, split: string): Promise<string> {
  const prefixes = split === "test" ? ["t10k", "test"] : [split];
  const candidates = (await listFolder(folder)).map((entry) => entry.name).filter((name) =>
    IDX_IMAGES.test(name)
  );
  for (const prefix of prefixes) {
    const match = candidates.find((name) => IDX_IMAGES.exec(name)?.[1] === prefix);
    if (match) return join(folder, match);
  }
  throw new DataError(
    folder,
    `has no IDX image file for split "${split}" (looked for ${
      prefixes.map((p) => `${p}-images-idx3-ubyte`).join(", ")
    }). ` +
      `Found: ${candidates.join(", ")}.`,
  );
}
