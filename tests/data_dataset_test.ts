// Dataset loaders on folders and files made here: image folders (order,
// labels, limits, resizing, errors), IDX files, CIFAR-10 binary batches, the
// shipped Fashion-MNIST demo subset, and the tiny real folder when present.

import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { join } from "@std/path";
import {
  CIFAR10_CLASSES,
  DataError,
  DEMO_DATASET,
  describeDataset,
  detectDatasetKind,
  encodeIdx,
  encodePng,
  loadCifar10Binary,
  loadDataset,
  loadIdx,
  loadImageFolder,
  readIdx,
  type RgbImage,
  selectFirstSamples,
  selectSamples,
} from "../src/data/mod.ts";
import { assertClose } from "./_util.ts";

/** Returns a width x height image filled with one color. */
function solid(width: number, height: number, color: [number, number, number]): RgbImage {
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) rgb.set(color, p * 3);
  return { width, height, rgb };
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "rapid-inr-data-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function writePng(path: string, image: RgbImage): Promise<void> {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeFile(path, await encodePng(image));
}

/**
 * Writes <dir>/train/<class>/... with images whose red value encodes (class, file):
 * red = 10 * class index + file index, so the loaded pixels reveal the order.
 */
async function makeImageFolder(dir: string): Promise<void> {
  const layout: Record<string, string[]> = {
    // Deliberately not in sorted order, and with code-unit-order traps: "10" < "2", "a.png" < "a/b.png".
    dog: ["2.png", "10.png", "a/b.png", "a.png"],
    cat: ["x.jpg.png", "b.PNG"],
    bird: ["only.png"],
  };
  const sortedFiles: Record<string, string[]> = {
    bird: ["only.png"],
    cat: ["b.PNG", "x.jpg.png"],
    dog: ["10.png", "2.png", "a.png", "a/b.png"],
  };
  const classes = Object.keys(sortedFiles);
  for (const [className, files] of Object.entries(layout)) {
    for (const file of files) {
      const label = classes.indexOf(className);
      const rank = sortedFiles[className].indexOf(file);
      await writePng(
        join(dir, "train", className, file),
        solid(8, 8, [10 * label + rank, 100, 200]),
      );
    }
  }
  await Deno.writeTextFile(join(dir, "train", "dog", "notes.txt"), "not an image");
  await Deno.writeTextFile(join(dir, "train", "cat", ".DS_Store"), "hidden");
  await Deno.mkdir(join(dir, "train", ".cache"));
  await writePng(join(dir, "test", "bird", "t.png"), solid(8, 8, [1, 2, 3]));
  await writePng(join(dir, "test", "cat", "t.png"), solid(8, 8, [4, 5, 6]));
  await Deno.writeTextFile(join(dir, "README.txt"), "files at the root are not classes");
}

function redValues(images: Uint8Array, side: number): number[] {
  const count = images.length / (side * side * 3);
  return Array.from({ length: count }, (_, i) => images[i * side * side * 3]);
}

Deno.test("loadImageFolder order and labels", async () => {
  await withTempDir(async (dir) => {
    await makeImageFolder(dir);
    const warnings: string[] = [];
    const dataset = await loadImageFolder(dir, { onWarning: (message) => warnings.push(message) });
    assertEquals(dataset.classNames, ["bird", "cat", "dog"]);
    assertEquals(Array.from(dataset.labels), [0, 1, 1, 2, 2, 2, 2]);
    assertEquals(dataset.side, 8);
    assertEquals(redValues(dataset.images, 8), [0, 10, 11, 20, 21, 22, 23]);
    assertEquals(dataset.paths.map((path) => path.slice(dir.length + 1)), [
      "train/bird/only.png",
      "train/cat/b.PNG",
      "train/cat/x.jpg.png",
      "train/dog/10.png",
      "train/dog/2.png",
      "train/dog/a.png",
      "train/dog/a/b.png",
    ]);
    assertEquals(warnings.length, 1);
    assertStringIncludes(warnings[0], "notes.txt");
  });
});

Deno.test("loadImageFolder split selection", async () => {
  await withTempDir(async (dir) => {
    await makeImageFolder(dir);
    const test = await loadImageFolder(dir, { split: "test" });
    assertEquals(test.classNames, ["bird", "cat"]);
    assertEquals(Array.from(test.images.subarray(0, 3)), [1, 2, 3]);

    const direct = await loadImageFolder(join(dir, "test"));
    assertEquals(direct.classNames, ["bird", "cat"]);
    assertEquals(direct.paths, test.paths);

    const error = await assertRejects(() => loadImageFolder(dir, { split: "val" }), DataError);
    assertStringIncludes(error.message, `"val"`);
    assertStringIncludes(error.message, "test, train");
  });
});

Deno.test("loadImageFolder limitPerClass", async () => {
  await withTempDir(async (dir) => {
    await makeImageFolder(dir);
    const dataset = await loadImageFolder(dir, { limitPerClass: 2 });
    assertEquals(Array.from(dataset.labels), [0, 1, 1, 2, 2]);
    assertEquals(redValues(dataset.images, 8), [0, 10, 11, 20, 21]);
  });
});

Deno.test("loadImageFolder limit stays balanced", async () => {
  await withTempDir(async (dir) => {
    await makeImageFolder(dir);
    // Round-robin: bird 0, cat 0, dog 0, then cat 1, dog 1 (bird has no second image).
    const dataset = await loadImageFolder(dir, { limit: 5 });
    assertEquals(redValues(dataset.images, 8), [0, 10, 11, 20, 21]);
    const three = await loadImageFolder(dir, { limit: 3 });
    assertEquals(Array.from(three.labels), [0, 1, 2]);
  });
});

Deno.test("loadImageFolder resizes to size", async () => {
  await withTempDir(async (dir) => {
    // A 12x6 image: left half red, right half blue. The center 6x6 crop keeps columns 3..8.
    const image = solid(12, 6, [255, 0, 0]);
    for (let y = 0; y < 6; y++) {
      for (let x = 6; x < 12; x++) image.rgb.set([0, 0, 255], (y * 12 + x) * 3);
    }
    await writePng(join(dir, "a", "wide.png"), image);
    await writePng(join(dir, "b", "big.png"), solid(20, 20, [7, 8, 9]));

    const dataset = await loadImageFolder(dir, { size: 6, filter: "box" });
    assertEquals(dataset.side, 6);
    assertEquals(dataset.images.length, 2 * 6 * 6 * 3);
    const row = Array.from(dataset.images.subarray(0, 6 * 3));
    assertEquals(row, [255, 0, 0, 255, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 255, 0, 0, 255]);
    assertClose(
      "constant image resized",
      dataset.images.subarray(6 * 6 * 3),
      solid(6, 6, [7, 8, 9]).rgb,
      {
        atol: 0,
        rtol: 0,
      },
    );

    const error = await assertRejects(() => loadImageFolder(dir), DataError);
    assertStringIncludes(error.message, "12x6, not square");
    assertStringIncludes(error.message, "size option");
  });
});

Deno.test("loadImageFolder reports bad folders", async () => {
  await withTempDir(async (dir) => {
    const missing = join(dir, "nowhere");
    const notFound = await assertRejects(() => loadImageFolder(missing), DataError);
    assertStringIncludes(notFound.message, missing);
    assertStringIncludes(notFound.message, "not found");

    await Deno.mkdir(join(dir, "flat"));
    await writePng(join(dir, "flat", "loose.png"), solid(4, 4, [0, 0, 0]));
    const noClasses = await assertRejects(() => loadImageFolder(join(dir, "flat")), DataError);
    assertStringIncludes(noClasses.message, "no class folders");

    await writePng(join(dir, "classes", "full", "a.png"), solid(4, 4, [0, 0, 0]));
    await Deno.mkdir(join(dir, "classes", "empty"));
    await Deno.writeTextFile(join(dir, "classes", "empty", "readme.md"), "no images here");
    const empty = await assertRejects(() => loadImageFolder(join(dir, "classes")), DataError);
    assertStringIncludes(empty.message, `class "empty"`);

    await writePng(join(dir, "corrupt", "ok", "a.png"), solid(4, 4, [0, 0, 0]));
    await Deno.writeFile(
      join(dir, "corrupt", "ok", "b.jpg"),
      new Uint8Array([0xff, 0xd8, 0xff, 0xd9]),
    );
    const corrupt = await assertRejects(() => loadImageFolder(join(dir, "corrupt")), DataError);
    assertStringIncludes(corrupt.message, join(dir, "corrupt", "ok", "b.jpg"));

    const file = join(dir, "flat", "loose.png");
    const isFile = await assertRejects(() => loadImageFolder(file), DataError);
    assertStringIncludes(isFile.message, "is a file");
  });
});

Deno.test("loadImageFolder first decodes a prefix", async () => {
  await withTempDir(async (dir) => {
    await makeImageFolder(dir);
    const all = await loadImageFolder(dir, { limit: 5 });
    const part = await loadImageFolder(dir, { limit: 5, first: 2 });
    assertEquals(Array.from(part.labels), Array.from(all.labels.subarray(0, 2)));
    assertEquals(part.images, all.images.subarray(0, 2 * 8 * 8 * 3));
    assertEquals(part.selectedCount, 5);
    assertEquals(all.selectedCount, 5);
  });
});

Deno.test("selectFirstSamples cuts after selecting", () => {
  const labels = [0, 0, 0, 1, 2, 2, 1, 0];
  assertEquals(selectFirstSamples(labels, { limit: 5, first: 3 }), {
    indices: [0, 1, 3],
    selectedCount: 5,
  });
  assertEquals(selectFirstSamples(labels, { first: 20 }), {
    indices: [0, 1, 2, 3, 4, 5, 6, 7],
    selectedCount: 8,
  });
  assertThrows(() => selectFirstSamples(labels, { first: 0 }), RangeError, "first");
});

Deno.test("selectSamples limits", () => {
  const labels = [0, 0, 0, 1, 2, 2, 1, 0];
  assertEquals(selectSamples(labels, {}), [0, 1, 2, 3, 4, 5, 6, 7]);
  assertEquals(selectSamples(labels, { limitPerClass: 1 }), [0, 3, 4]);
  assertEquals(selectSamples(labels, { limitPerClass: 2 }), [0, 1, 3, 4, 5, 6]);
  assertEquals(selectSamples(labels, { limit: 4 }), [0, 1, 3, 4]);
  assertEquals(selectSamples(labels, { limit: 100 }).length, 8);
  assertEquals(selectSamples(labels, { limit: 5, limitPerClass: 2 }), [0, 1, 3, 4, 6]);
  let error: unknown;
  try {
    selectSamples(labels, { limit: 0 });
  } catch (caught) {
    error = caught;
  }
  assert(error instanceof RangeError, "limit 0 must be rejected");
});

// ---------------------------------------------------------------------------
// IDX

async function gzip(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Encodes six 3x3 grayscale images whose pixels are 40 * index + position, labels 2, 0, 1, 0, 2, 2. */
function idxFixture(): { images: Uint8Array<ArrayBuffer>; labels: Uint8Array<ArrayBuffer> } {
  const data = new Uint8Array(6 * 9);
  for (let i = 0; i < 6; i++) for (let p = 0; p < 9; p++) data[i * 9 + p] = 40 * i + p;
  return {
    images: encodeIdx({ dims: [6, 3, 3], data }),
    labels: encodeIdx({ dims: [6], data: new Uint8Array([2, 0, 1, 0, 2, 2]) }),
  };
}

Deno.test("loadIdx gzipped and plain", async () => {
  await withTempDir(async (dir) => {
    const fixture = idxFixture();
    const images = join(dir, "train-images-idx3-ubyte.gz");
    const labels = join(dir, "train-labels-idx1-ubyte");
    await Deno.writeFile(images, await gzip(fixture.images));
    await Deno.writeFile(labels, fixture.labels);

    const dataset = await loadIdx({ images, labels });
    assertEquals(dataset.side, 3);
    assertEquals(Array.from(dataset.labels), [2, 0, 1, 0, 2, 2]);
    assertEquals(dataset.classNames, ["0", "1", "2"]);
    // Grayscale becomes R = G = B; image 4, pixel 5 is 40 * 4 + 5.
    const offset = (4 * 9 + 5) * 3;
    assertEquals(Array.from(dataset.images.subarray(offset, offset + 3)), [165, 165, 165]);
    assertEquals(dataset.paths[1], `${images}#1`);

    const limited = await loadIdx({ images, labels }, { limitPerClass: 1 });
    assertEquals(Array.from(limited.labels), [2, 0, 1]);
    assertEquals(limited.paths.map((path) => path.split("#")[1]), ["0", "1", "2"]);

    const resized = await loadIdx({ images, labels }, { size: 6 });
    assertEquals(resized.side, 6);
    assertEquals(resized.images.length, 6 * 6 * 6 * 3);
  });
});

Deno.test("loadDataset reads IDX folders", async () => {
  await withTempDir(async (dir) => {
    const fixture = idxFixture();
    await Deno.writeFile(join(dir, "train-images-idx3-ubyte.gz"), await gzip(fixture.images));
    await Deno.writeFile(join(dir, "train-labels-idx1-ubyte.gz"), await gzip(fixture.labels));
    await Deno.writeFile(join(dir, "t10k-images-idx3-ubyte"), fixture.images);
    await Deno.writeFile(join(dir, "t10k-labels-idx1-ubyte"), fixture.labels);
    await Deno.writeTextFile(join(dir, "classes.txt"), "zero\none\ntwo\n");

    assertEquals(await detectDatasetKind(dir), "idx");
    const train = await loadDataset(dir, { split: "train" });
    assertEquals(train.classNames, ["zero", "one", "two"]);
    assertEquals(train.labels.length, 6);
    const test = await loadDataset(dir, { split: "test" });
    assertStringIncludes(test.paths[0], "t10k-images-idx3-ubyte#0");
    const single = await loadDataset(join(dir, "t10k-images-idx3-ubyte"));
    assertEquals(single.labels.length, 6);

    const error = await assertRejects(() => loadDataset(dir, { split: "val" }), DataError);
    assertStringIncludes(error.message, "val-images-idx3-ubyte");
  });
});

Deno.test("loadIdx rejects bad files", async () => {
  await withTempDir(async (dir) => {
    const fixture = idxFixture();
    const labels = join(dir, "labels");
    await Deno.writeFile(labels, fixture.labels);
    const cases: [string, Uint8Array, string][] = [
      ["magic", new Uint8Array([1, 2, 8, 1, 0, 0, 0, 0]), "does not start with two zero bytes"],
      ["truncated", fixture.images.subarray(0, fixture.images.length - 1), "truncated"],
      ["float", Uint8Array.from([0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]), "0x0d (float32)"],
      ["rank", encodeIdx({ dims: [6, 9], data: new Uint8Array(54) }), "expected [N][H][W]"],
      ["gzip", Uint8Array.from([0x1f, 0x8b, 8, 0, 1, 2, 3]), "corrupt gzip"],
    ];
    for (const [name, bytes, expected] of cases) {
      const path = join(dir, name);
      await Deno.writeFile(path, bytes);
      const error = await assertRejects(() => loadIdx({ images: path, labels }), DataError);
      assertStringIncludes(error.message, path);
      assertStringIncludes(error.message, expected);
    }

    const images = join(dir, "images");
    await Deno.writeFile(images, fixture.images);
    const shortLabels = join(dir, "short-labels");
    await Deno.writeFile(shortLabels, encodeIdx({ dims: [5], data: new Uint8Array(5) }));
    const mismatch = await assertRejects(() => loadIdx({ images, labels: shortLabels }), DataError);
    assertStringIncludes(mismatch.message, "one label per image, [6]");

    const names = await assertRejects(
      () => loadIdx({ images, labels }, { classNames: ["a", "b"] }),
      DataError,
    );
    assertStringIncludes(names.message, "label 2 has no class name");

    const missing = await assertRejects(
      () => loadIdx({ images: join(dir, "none"), labels }),
      DataError,
    );
    assertStringIncludes(missing.message, "not found");
  });
});

// ---------------------------------------------------------------------------
// CIFAR-10 binary

/** Builds a batch file where record r has label labels[r] and channel c of pixel p equals (r + 3c + p) mod 256. */
function cifarBatch(labels: number[], firstRecord: number): Uint8Array {
  const out = new Uint8Array(labels.length * 3073);
  labels.forEach((label, i) => {
    const r = firstRecord + i;
    out[i * 3073] = label;
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < 1024; p++) out[i * 3073 + 1 + c * 1024 + p] = (r + 3 * c + p) % 256;
    }
  });
  return out;
}

Deno.test("loadCifar10Binary folder and file", async () => {
  await withTempDir(async (dir) => {
    const folder = join(dir, "cifar-10-batches-bin");
    await Deno.mkdir(folder);
    await Deno.writeFile(join(folder, "data_batch_1.bin"), cifarBatch([6, 9, 9], 0));
    await Deno.writeFile(join(folder, "data_batch_2.bin"), cifarBatch([4, 1], 3));
    await Deno.writeFile(join(folder, "test_batch.bin"), cifarBatch([3], 100));

    assertEquals(await detectDatasetKind(dir), "cifar10-binary");
    const train = await loadCifar10Binary(dir);
    assertEquals(train.side, 32);
    assertEquals(train.classNames, CIFAR10_CLASSES);
    assertEquals(Array.from(train.labels), [6, 9, 9, 4, 1]);
    assertEquals(train.paths[3], join(folder, "data_batch_2.bin") + "#0");
    // CHW planes become HWC: record 4, pixel 37 is (4 + 37, 4 + 3 + 37, 4 + 6 + 37).
    const offset = (4 * 1024 + 37) * 3;
    assertEquals(Array.from(train.images.subarray(offset, offset + 3)), [41, 44, 47]);

    const test = await loadDataset(dir, { split: "test" });
    assertEquals(Array.from(test.labels), [3]);
    assertEquals(test.images[0], 100);

    const oneBatch = await loadDataset(join(folder, "data_batch_2.bin"), {
      size: 16,
      limitPerClass: 1,
    });
    assertEquals(oneBatch.side, 16);
    assertEquals(Array.from(oneBatch.labels), [4, 1]);

    await Deno.writeTextFile(
      join(folder, "batches.meta.txt"),
      CIFAR10_CLASSES.map((n) => n.toUpperCase()).join("\n"),
    );
    const named = await loadCifar10Binary(join(folder, "test_batch.bin"));
    assertEquals(named.classNames[0], "AIRPLANE");
  });
});

Deno.test("loadCifar10Binary rejects bad batches", async () => {
  await withTempDir(async (dir) => {
    const short = join(dir, "short.bin");
    await Deno.writeFile(short, new Uint8Array(3074));
    const sizeError = await assertRejects(() => loadCifar10Binary(short), DataError);
    assertStringIncludes(sizeError.message, "not a multiple of the 3073-byte record");

    const badLabel = join(dir, "label.bin");
    await Deno.writeFile(badLabel, cifarBatch([1, 12], 0));
    const labelError = await assertRejects(() => loadCifar10Binary(badLabel), DataError);
    assertStringIncludes(labelError.message, "record 1 has label 12");

    const emptyFolder = join(dir, "empty");
    await Deno.mkdir(emptyFolder);
    const folderError = await assertRejects(() => loadCifar10Binary(emptyFolder), DataError);
    assertStringIncludes(folderError.message, "data_batch_1.bin");
  });
});

// ---------------------------------------------------------------------------
// The shipped demo subset and the real tiny folder

Deno.test("DEMO_DATASET is balanced Fashion-MNIST", async () => {
  const train = await loadDataset(DEMO_DATASET.root, { split: "train" });
  const summary = describeDataset(train);
  assertEquals(summary.count, 1000);
  assertEquals(summary.side, 28);
  assertEquals(summary.classes.map((entry) => entry.count), new Array(10).fill(100));
  assertEquals(summary.classes[9].name, "Ankle boot");
  const test = await loadIdx(DEMO_DATASET.test);
  assertEquals(describeDataset(test).classes.map((entry) => entry.count), new Array(10).fill(50));

  let bytes = 0;
  for (
    const path of [
      DEMO_DATASET.train.images,
      DEMO_DATASET.train.labels,
      DEMO_DATASET.test.images,
      DEMO_DATASET.test.labels,
    ]
  ) {
    bytes += (await Deno.stat(path)).size;
  }
  assert(bytes <= 2 * 1024 * 1024, `demo files take ${bytes} bytes, more than 2 MiB`);
});

Deno.test("DEMO_DATASET matches the Debian files", async (t) => {
  const source = "/usr/share/datasets/fashion-mnist";
  let full: Awaited<ReturnType<typeof readIdx>>, fullLabels: Awaited<ReturnType<typeof readIdx>>;
  try {
    full = await readIdx(join(source, "train-images-idx3-ubyte.gz"));
    fullLabels = await readIdx(join(source, "train-labels-idx1-ubyte.gz"));
  } catch (error) {
    if (!(error instanceof DataError)) throw error;
    await t.step({
      name: `skipped: ${source} is absent (apt-get install dataset-fashion-mnist)`,
      ignore: true,
      fn: () => {},
    });
    return;
  }
  const demo = await readIdx(DEMO_DATASET.train.images);
  const demoLabels = await readIdx(DEMO_DATASET.train.labels);
  const selected = selectSamples(fullLabels.data, { limitPerClass: 100 });
  for (const [slot, index] of selected.entries()) {
    assertEquals(demoLabels.data[slot], fullLabels.data[index], `label of demo image ${slot}`);
    assertEquals(
      demo.data.subarray(slot * 784, slot * 784 + 784),
      full.data.subarray(index * 784, index * 784 + 784),
    );
  }
});

Deno.test("loadImageFolder on tiny CIFAR PNGs", async (t) => {
  const root = new URL("../../shared/data/tiny/cifar10-png", import.meta.url).pathname;
  if (!(await Deno.stat(root).catch(() => undefined))) {
    await t.step({ name: "skipped: ../shared/data/tiny is absent", ignore: true, fn: () => {} });
    return;
  }
  const dataset = await loadImageFolder(root);
  assertEquals(dataset.side, 32);
  assertEquals(dataset.classNames, [...CIFAR10_CLASSES].sort());
  assertEquals(describeDataset(dataset).classes.map((entry) => entry.count), new Array(10).fill(2));
  const first = await loadImageFolder(root, { limitPerClass: 1 });
  assertEquals(first.labels.length, 10);
  assertEquals(first.paths[0], join(root, "airplane", "30.png"));
});
