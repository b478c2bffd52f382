// Training throughput of the three input pipelines on the same images:
// inr (8-bit SIRENs decoded on the GPU), raw (resident pixels on the GPU) and
// files (PNG/JPEG decoded on the CPU each batch, then uploaded).
//
//   DENO_WEBGPU_BACKEND=vulkan deno bench -A bench/train_bench.ts
//
// Each bench iteration trains one epoch of 128 CIFAR-10 images (batch 32,
// 4 steps) of a ResNet-18 of width 8 at 32 px; evaluation runs on 32 test
// images after the epoch and is included in the time. The images/s printed
// after each bench excludes evaluation. Needs ../shared/data/cifar10; skips
// otherwise.

import { Gpu } from "../src/gpu/device.ts";
import { loadDataset } from "../src/data/mod.ts";
import { encodeImages } from "../src/inr/encode.ts";
import { quantize } from "../src/inr/quantize.ts";
import { train, type TrainInput } from "../src/train/trainer.ts";

const ROOT = new URL("../../shared/data/cifar10", import.meta.url).pathname;
const available = await Deno.stat(ROOT).then(() => true, () => false);
if (!available) console.warn(`train bench skipped: ${ROOT} is absent.`);

const WIDTH = Number(Deno.env.get("TRAIN_BENCH_WIDTH") ?? 8);
const BATCH = 32;

if (available) {
  const gpu = await Gpu.create();
  const trainSet = await loadDataset(ROOT, { split: "train", limitPerClass: 13, limit: 128 });
  const testSet = await loadDataset(ROOT, { split: "test", limit: 32 });
  // A short fit is enough here: decode cost does not depend on fit quality.
  const fit = await encodeImages(gpu, { images: trainSet.images, count: trainSet.labels.length, side: 32 }, { iterations: 20 });
  const arch = fit.arch;
  const inr = quantize(arch, fit.weights, 8);
  const labels = Uint32Array.from(trainSet.labels);
  const inputs: Record<string, TrainInput> = {
    inr: { kind: "inr", source: { arch, resolution: 32, weights: inr, labels }, count: labels.length },
    raw: { kind: "raw", images: trainSet.images, labels, resolution: 32 },
    files: { kind: "files", paths: trainSet.paths, labels, resolution: 32 },
  };
  const test = { images: testSet.images, labels: testSet.labels, resolution: 32 };

  for (const [name, input] of Object.entries(inputs)) {
    const rates: number[] = [];
    Deno.bench({
      name: `train one epoch, input ${name}`,
      group: "train",
      baseline: name === "raw",
      n: 3,
      warmup: 1,
      async fn() {
        const result = await train(gpu, { input, test, classes: 10 }, {
          epochs: 1,
          batch: BATCH,
          learningRate: 0.05,
          width: WIDTH,
          seed: 1,
          statsEvery: 4,
        });
        rates.push(result.imagesPerSecond);
        result.net.destroy();
        if (rates.length === 4) {
          const best = Math.max(...rates.slice(1));
          console.log(`input ${name}: ${best.toFixed(1)} training images/s (best of 3, evaluation excluded)`);
        }
      },
    });
  }
}
