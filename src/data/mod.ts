// Public surface of the data layer: image codecs, resizing and dataset loaders.

import { fromFileUrl } from "@std/path";

export { DataError } from "./errors.ts";
export { type BadImageOptions, DEFAULT_MAX_BAD_FRACTION, type SkippedFile } from "./bad_images.ts";
export {
  decodeImage,
  detectImageFormat,
  encodePng,
  type ImageFormat,
  MAX_IMAGE_PIXELS,
  type RgbImage,
} from "./image.ts";
export {
  type ResizeFilter,
  resizeImage,
  type ResizeOptions,
  resizeToSquare,
  type SquareResizeOptions,
} from "./resize.ts";
export {
  type Dataset,
  type DatasetSummary,
  describeDataset,
  type LoadOptions,
  selectFirstSamples,
  selectSamples,
} from "./common.ts";
export {
  type DatasetKind,
  detectDatasetKind,
  IMAGE_EXTENSIONS,
  loadDataset,
  loadImageFolder,
  MAX_IMAGE_FILE_BYTES,
} from "./dataset.ts";
export { CIFAR10_CLASSES, loadCifar10Binary } from "./cifar.ts";
export {
  encodeIdx,
  type IdxArray,
  type IdxLoadOptions,
  type IdxPaths,
  loadIdx,
  parseIdx,
  readIdx,
} from "./idx.ts";

const demoFile = (name: string) =>
  fromFileUrl(new URL(`./fashion_mnist_demo/${name}`, import.meta.url));

/**
 * The Fashion-MNIST subset shipped with rapid-inr (MIT licence, see
 * fashion_mnist_demo/NOTICE.md): 28x28 grayscale, 10 classes, 100 training
 * and 50 test images per class, as gzipped IDX files. `root` works with
 * `loadDataset(root, { split: "train" | "test" })`.
 */
export const DEMO_DATASET = {
  root: fromFileUrl(new URL("./fashion_mnist_demo", import.meta.url)),
  train: {
    images: demoFile("train-images-idx3-ubyte.gz"),
    labels: demoFile("train-labels-idx1-ubyte.gz"),
  },
  test: {
    images: demoFile("t10k-images-idx3-ubyte.gz"),
    labels: demoFile("t10k-labels-idx1-ubyte.gz"),
  },
  /** One class name a line, in label order. */
  classesFile: demoFile("classes.txt"),
} as const;
