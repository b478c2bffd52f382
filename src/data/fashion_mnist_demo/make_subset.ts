// Cuts the Fashion-MNIST demo subset in this folder from the full dataset.
//
// Usage (from the repository root):
//   apt-get install -y dataset-fashion-mnist
//   deno run --allow-read --allow-write src/data/fashion_mnist_demo/make_subset.ts [source folder]
//
// The source folder defaults to /usr/share/datasets/fashion-mnist, where the
// Debian package installs the four gzipped IDX files. The subset takes the
// first 100 images of each class from the training file and the first 50 of
// each class from the test file, in file order, so it is balanced and the
// same on every run. It writes gzipped IDX files with the original names and
// classes.txt next to this script.

import { dirname, fromFileUrl, join } from "@std/path";
import { selectSamples } from "../common.ts";
import { encodeIdx, type IdxArray, readIdx } from "../idx.ts";

const TRAIN_PER_CLASS = 100;
const TEST_PER_CLASS = 50;

/** Fashion-MNIST class names in label order, from the dataset's README. */
const CLASS_NAMES = [
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
];

/** Keeps the records `indices` (along the first dimension) of an IDX array. */
function takeRecords(array: IdxArray, indices: number[]): IdxArray {
  const recordBytes = array.data.length / array.dims[0];
  const data = new Uint8Array(indices.length * recordBytes);
  indices.forEach((index, slot) => {
    data.set(
      array.data.subarray(index * recordBytes, (index + 1) * recordBytes),
      slot * recordBytes,
    );
  });
  return { dims: [indices.length, ...array.dims.slice(1)], data };
}

async function gzip(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function cutSplit(
  source: string,
  target: string,
  prefix: string,
  perClass: number,
): Promise<number> {
  const images = await readIdx(join(source, `${prefix}-images-idx3-ubyte.gz`));
  const labels = await readIdx(join(source, `${prefix}-labels-idx1-ubyte.gz`));
  const selected = selectSamples(labels.data, { limitPerClass: perClass });
  await Deno.writeFile(
    join(target, `${prefix}-images-idx3-ubyte.gz`),
    await gzip(encodeIdx(takeRecords(images, selected))),
  );
  await Deno.writeFile(
    join(target, `${prefix}-labels-idx1-ubyte.gz`),
    await gzip(encodeIdx(takeRecords(labels, selected))),
  );
  return selected.length;
}

if (import.meta.main) {
  const source = Deno.args[0] ?? "/usr/share/datasets/fashion-mnist";
  const target = dirname(fromFileUrl(import.meta.url));
  const train = await cutSplit(source, target, "train", TRAIN_PER_CLASS);
  const test = await cutSplit(source, target, "t10k", TEST_PER_CLASS);
  await Deno.writeTextFile(join(target, "classes.txt"), CLASS_NAMES.join("\n") + "\n");
  console.log(`Wrote ${train} training and ${test} test images to ${target}.`);
}
