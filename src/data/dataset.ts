// Dataset loading: image folders (`<root>/<split>/<class>/<file>`), and one
// entry point, `loadDataset`, that also reads CIFAR-10 binary batches and IDX
// files, choosing the loader by what the path contains.
//
// Order is deterministic: classes sorted by folder name, files of a class
// sorted by their path below the class folder, both by UTF-16 code unit (so
// "10.png" sorts before "2.png", on every machine and locale).

import { basename, extname, join, relative } from "@std/path";
import { BadImagePolicy, checkMaxBadFraction } from "./bad_images.ts";
import { loadCifar10Binary } from "./cifar.ts";
import {
  allocatePixels,
  checkSizeOption,
  type Dataset,
  type LoadOptions,
  selectFirstSamples,
} from "./common.ts";
import { DataError } from "./errors.ts";
import { compareCodeUnits, listFolder, readHead, readRegularFile, statOrThrow } from "./files.ts";
import { idxLabelsPathFor, type IdxLoadOptions, loadIdx } from "./idx.ts";
import { decodeImage, type RgbImage } from "./image.ts";
import { resizeToSquare } from "./resize.ts";

/** File extensions (lower case) that image folders are scanned for. */
export const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg"];

/**
 * Largest image file that is read: 1 GiB. The WebAssembly decoders copy the
 * whole file into a heap of at most 2 GiB that must also hold the decoded
 * pixels, so a larger file cannot decode.
 */
export const MAX_IMAGE_FILE_BYTES = 2 ** 30;

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
 * folder by extension (.png, .jpg, .jpeg, any case), so nested folders belong
 * to their class. A symbolic link to a folder is followed once, and a link
 * back to a folder already scanned is ignored with a warning. Hidden entries
 * (names starting with ".") are ignored. Other files are skipped with a
 * warning.
 *
 * A bad image (unreadable, not a PNG or JPEG, corrupt, too large) is skipped
 * with one warning and listed in `skipped`, unless `strict` is set or the
 * skipped images exceed `maxBadFraction` of the requested ones: then the load
 * throws a `DataError` naming the file. A class folder without image files,
 * or whose images are all bad, also throws.
 */
export async function loadImageFolder(root: string, options: LoadOptions = {}): Promise<Dataset> {
  checkSizeOption(options.size);
  checkMaxBadFraction(options.maxBadFraction);
  const splitFolder = await resolveSplitFolder(root, options.split);
  const { classNames, files } = await scanClassFolders(splitFolder, options.onWarning);
  const { indices, selectedCount } = selectFirstSamples(files.map((file) => file.label), options);
  const selected = indices.map((index) => files[index]);
  const policy = new BadImagePolicy(splitFolder, selected.length, options);

  let side = options.size;
  let images = side === undefined ? undefined : allocatePixels(selected.length, side, splitFolder);
  const labels = new Int32Array(selected.length);
  const paths: string[] = [];
  // Failed reads resolve to their DataError: a read-ahead promise that rejected
  // before the loop awaits it would be an unhandled rejection.
  const reads: Promise<Uint8Array | DataError>[] = [];
  const startRead = (index: number) => {
    if (index < selected.length && reads[index] === undefined) {
      reads[index] = readRegularFile(selected[index].path, MAX_IMAGE_FILE_BYTES)
        .catch((error: DataError) => error);
    }
  };
  for (let index = 0; index < Math.min(READ_AHEAD, selected.length); index++) startRead(index);

  for (let index = 0; index < selected.length; index++) {
    startRead(index + READ_AHEAD);
    const { path, label } = selected[index];
    const bytes = await reads[index];
    delete reads[index];
    const image = bytes instanceof DataError ? bytes : await decodeOrError(bytes, path);
    if (image instanceof DataError) {
      policy.skip(image);
      options.onProgress?.(index + 1, selected.length);
      continue;
    }
    if (side === undefined || images === undefined) {
      if (image.width !== image.height) {
        throw new DataError(
          path,
          `the first image is ${image.width}x${image.height}, not square, so the output size is unknown. ` +
            "Pass the size option (for example 224).",
        );
      }
      side = image.width;
      images = allocatePixels(selected.length, side, splitFolder);
    }
    const square = resizeToSquare(image, { size: side, filter: options.filter });
    images.set(square.rgb, paths.length * side * side * 3);
    labels[paths.length] = label;
    paths.push(path);
    options.onProgress?.(index + 1, selected.length);
  }

  checkClassesKept(selected, labels.subarray(0, paths.length), classNames, splitFolder);
  const keptCount = paths.length;
  return {
    // A view, not a copy: the unused tail is at most the skipped images.
    images: images?.subarray(0, keptCount * (side ?? 0) ** 2 * 3) ?? new Uint8Array(0),
    labels: labels.subarray(0, keptCount),
    classNames,
    paths,
    side: side ?? 0,
    skipped: policy.skipped,
    selectedCount,
  };
}

async function decodeOrError(bytes: Uint8Array, path: string): Promise<RgbImage | DataError> {
  try {
    return await decodeImage(bytes, path);
  } catch (error) {
    if (error instanceof DataError) return error;
    throw error;
  }
}

/** Throws when every requested image of a class was skipped, since the class would have no examples. */
function checkClassesKept(
  selected: ImageFile[],
  keptLabels: Int32Array,
  classNames: string[],
  splitFolder: string,
): void {
  const requested = new Array<number>(classNames.length).fill(0);
  const kept = new Array<number>(classNames.length).fill(0);
  for (const file of selected) requested[file.label]++;
  for (const label of keptLabels) kept[label]++;
  const empty = requested.findIndex((count, label) => count > 0 && kept[label] === 0);
  if (empty >= 0) {
    throw new DataError(
      join(splitFolder, classNames[empty]),
      `all ${requested[empty]} requested images of class "${classNames[empty]}" are unreadable ` +
        "or corrupt (see the warnings). Fix the files or remove the class folder.",
    );
  }
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
    if (entry.isDirectory) {
      classNames.push(entry.name);
    } else if (entry.isSymlink) {
      const path = join(splitFolder, entry.name);
      const target = await Deno.stat(path).catch(() => undefined);
      if (target === undefined) {
        onWarning?.(`ignored ${path}: a symbolic link whose target is missing or unreadable.`);
      } else if (target.isDirectory) {
        classNames.push(entry.name);
      }
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
    const paths = (await listFilesRecursively(classFolder, new Set(), onWarning)).sort((a, b) =>
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

/**
 * Lists the files below `folder`. `visited` contains the real paths of the
 * folders already scanned, so a symbolic link back to one of them cannot loop.
 * A link that cannot be resolved is listed as a file, so that reading it
 * reports the reason and the image is skipped.
 */
async function listFilesRecursively(
  folder: string,
  visited: Set<string>,
  onWarning: ((message: string) => void) | undefined,
): Promise<string[]> {
  const realFolder = await Deno.realPath(folder).catch(() => folder);
  if (visited.has(realFolder)) {
    onWarning?.(`ignored ${folder}: it leads to a folder of this class that was already scanned.`);
    return [];
  }
  visited.add(realFolder);
  const found: string[] = [];
  for (const entry of await listFolder(folder)) {
    if (entry.name.startsWith(".")) continue;
    const path = join(folder, entry.name);
    const isDirectory = entry.isDirectory ||
      (entry.isSymlink && (await Deno.stat(path).catch(() => undefined))?.isDirectory);
    if (isDirectory) found.push(...await listFilesRecursively(path, visited, onWarning));
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
 * t10k-images-* or test-images-*. The label file must sit beside its image
 * file under the matching name; for other names, call `loadIdx` with both paths.
 */
export async function loadDataset(path: string, options: IdxLoadOptions = {}): Promise<Dataset> {
  checkMaxBadFraction(options.maxBadFraction);
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
        "train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz and put both in the same folder.",
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
