// Text form of a --dry-run plan: one heading line, then one line per fact.

import type { DryRunPlan } from "./plan.ts";
import type { DatasetPlan } from "./plan_dataset.ts";

/** Formats a byte count with binary units, such as "12.3 MiB". */
export function formatBytes(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

function describeDataset(dataset: DatasetPlan): string {
  const kind = {
    "image-folder": "image folder",
    "cifar10-binary": "CIFAR-10 binary batches",
    idx: "IDX files",
  }[dataset.kind];
  const split = dataset.split === null ? "" : `, split ${dataset.split}`;
  const first = dataset.firstImage
    ? `; the first image is ${dataset.firstImage.width}x${dataset.firstImage.height} px`
    : "";
  const side = {
    option: "set by --size",
    preset: "set by the preset",
    "encoded resolution": "at the encoded resolution",
    "classifier input": "resized to the classifier input",
    "first image": "from the first image",
    "dataset file": "from the dataset file",
  }[dataset.sideFrom];
  return `${dataset.path} (${kind}${split}): ${dataset.images} images in ${dataset.classNames.length} classes, ` +
    `counted by ${dataset.countedBy}; side ${dataset.side} px ${side}${first}`;
}

/** Formats `plan` as lines of text for stdout. */
export function formatPlan(plan: DryRunPlan): string {
  const lines = [`Dry run of ${plan.command}: inputs checked; nothing was run or written.`];
  const add = (label: string, text: string) => lines.push(`  ${`${label}:`.padEnd(16)} ${text}`);

  if (plan.input) {
    const { input } = plan;
    const bits = input.bitsPerLayer.every((b) => b === 32)
      ? "fp32 weights"
      : `${input.bitsPerLayer.join("/")}-bit weights`;
    add(
      "input",
      `${input.path}: ${input.images} INRs of ${input.resolution}x${input.resolution} px images in ${input.classes} classes, ${bits}`,
    );
  }
  if (plan.dataset) add("dataset", describeDataset(plan.dataset));
  if (plan.testDataset) add("test set", describeDataset(plan.testDataset));
  if (plan.siren) {
    const s = plan.siren;
    add(
      "SIREN",
      `${s.sineLayers} sine layers of width ${s.width}, w0 ${s.w0}, Q = ${s.paramsPerImage} parameters per image`,
    );
  }
  if (plan.encode) {
    const e = plan.encode;
    const batch = e.batchSize === null
      ? "batch size unknown without an adapter"
      : `${e.batchSize} image${e.batchSize === 1 ? "" : "s"} per batch, ${e.batches} batch${
        e.batches === 1 ? "" : "es"
      }` +
        (e.maxBatchImages === null ? "" : ` (at most ${e.maxBatchImages} fit)`);
    add(
      "encode",
      `${e.images} images at ${e.side}x${e.side} px, ${e.iterations} iterations, learning rate ${e.learningRate}, seed ${e.seed}; ${batch}`,
    );
  }
  if (plan.compress) {
    const c = plan.compress;
    const percent = ((100 * c.estimatedFileBytes) / c.rawBytes).toFixed(1);
    add(
      "compress",
      c.autoBits
        ? `bits per layer chosen at run time, estimated as ${c.bitsPerLayer.join("/")}; ` +
          `about ${formatBytes(c.estimatedFileBytes)}, ${percent}% of the raw RGB size (${formatBytes(c.rawBytes)}), before pruning`
        : `${c.bitsPerLayer.join("/")} bits per layer; about ${
          formatBytes(c.estimatedFileBytes)
        }, ${percent}% of the raw RGB size (${formatBytes(c.rawBytes)}), before pruning`,
    );
  }
  if (plan.decode) {
    const d = plan.decode;
    add(
      "decode",
      `${d.images} images to PNG at ${d.size}x${d.size} px${
        d.psnr ? ", with PSNR against the source" : ""
      }`,
    );
  }
  if (plan.train) {
    const t = plan.train;
    const dropped = t.droppedPerEpoch > 0
      ? ` (${t.droppedPerEpoch} images of the last partial batch are left out)`
      : "";
    add(
      "train",
      `input ${t.input}, ${t.images} images in ${t.classes} classes at ${t.inputSize}x${t.inputSize} px, ${t.epochs} epochs of ${t.stepsPerEpoch} steps of batch ${t.batch}${dropped}, seed ${t.seed}`,
    );
    add(
      "classifier",
      `ResNet-18 of width ${t.resnetWidth}, ${t.parameters} parameters; evaluated on ${t.testImages} test images per epoch`,
    );
  }
  if (plan.export) {
    // A classifier has about 120 tensors, so long lists show their first few and a count; --json has all of them.
    const all = plan.export.tensors;
    const shown = all.slice(0, 8).map((t) => `${t.name} [${t.shape.join(", ")}]`).join(", ");
    const tensors = all.length > 8 ? `${all.length} tensors: ${shown}, ...` : shown;
    add("export", `${tensors}; about ${formatBytes(plan.export.estimatedFileBytes)}`);
  }
  if (plan.adapter) {
    const a = plan.adapter;
    add(
      "adapter",
      a.available
        ? `${a.name}${a.software ? " (software)" : ""}, storage bindings up to ${
          formatBytes(a.maxStorageBufferBindingSize ?? 0)
        }`
        : `none: ${a.problem}`,
    );
  }
  if (plan.gpuMemory.length > 0) {
    lines.push("  GPU memory (estimates):");
    for (const m of plan.gpuMemory) {
      lines.push(`    ${`${m.stage} ${m.item}`.padEnd(40)} ${formatBytes(m.bytes)}`);
    }
    lines.push(`    ${"largest stage".padEnd(40)} ${formatBytes(plan.peakGpuBytes)}`);
  }
  for (const output of plan.outputs) {
    const state = output.reused
      ? " (finished; --resume reuses it)"
      : output.exists
      ? " (exists; --force replaces it)"
      : " (new)";
    add("output", `${output.path}${state}`);
  }
  for (const note of plan.notes) add("note", note);
  return lines.join("\n");
}
