// `deno task demo`: the whole chain on the Fashion-MNIST subset shipped in
// src/data/fashion_mnist_demo, sized to finish in about five minutes on a
// 2-core machine without a GPU, then a few lines on what happened.

import { DEMO_DATASET } from "../data/mod.ts";
import { Log } from "./log.ts";
import { parseCommand } from "./options.ts";
import { runCommand } from "./run.ts";

const ARGS = [
  DEMO_DATASET.root,
  "--size", "28",
  "--per-class", "20",
  "--iterations", "300",
  "--lr", "1e-3",
  "--tune-iterations", "30",
  "--prune", "0,0.1,0.2",
  "--epochs", "4",
  "--batch", "20",
  "--train-lr", "0.05",
  "--resnet-width", "8",
  "--test-per-class", "20",
  "--out-dir", "demo-out",
  "--force",
];

if (import.meta.main) {
  const started = performance.now();
  // The demo prints its own summary, so the stages print no result lines.
  const log = new Log(Deno.args.includes("--verbose") ? "normal" : "quiet", { json: true });
  console.log("rapid-inr demo: Fashion-MNIST subset (MIT licence), 200 training and 200 test images of 28x28 px.");
  const parsed = await parseCommand(runCommand.spec, ARGS);
  const result = await runCommand.execute(parsed, log) as any;
  const { encode, compress, train } = result;
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `1. encode: fitted ${encode.images} SIRENs (${encode.arch.sineLayers} sine layers of width ${encode.arch.width}, ` +
      `${encode.iterations} iterations) at ${encode.imagesPerSecond.toFixed(2)} images/s; mean PSNR ${encode.meanPsnr.toFixed(2)} dB.`,
  );
  console.log(
    `2. compress: ${compress.bitsPerLayer.join("/")} bits per layer, ${(100 * compress.sparsity).toFixed(1)}% of weights zero, ` +
      `fine-tuned; ${compress.storedBytes} bytes on disk = ${compress.percentOfRaw.toFixed(1)}% of the raw RGB size; ` +
      `mean PSNR ${compress.meanPsnrBefore.toFixed(2)} -> ${compress.meanPsnr.toFixed(2)} dB.`,
  );
  console.log(
    `3. train: ResNet-18 (width 8) for ${train.epochs.length} epochs on batches decoded from the INRs on the GPU, ` +
      `${train.imagesPerSecond.toFixed(1)} images/s; test accuracy ${(100 * train.testAccuracy).toFixed(1)}% on ${train.testImages} images (10 classes, chance 10%).`,
  );
  console.log(`Done in ${seconds.toFixed(0)} s. Outputs are in demo-out/: encoded.rinr, compressed.rinr, classifier.safetensors.`);
}
