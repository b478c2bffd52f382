// Throughput of batched SIREN fitting at each preset's shape.
//
//   DENO_WEBGPU_BACKEND=vulkan deno bench -A bench/encode_bench.ts
//
// Each measured run records `iterations` fitting iterations of one batch into
// one submit and waits for the GPU. Work per image and iteration, counting a
// multiply-add as 2 FLOP and ignoring sines, Adam and the PSNR reduction:
//   forward       2 (2D + (S-1) D^2 + 3D) P
//   backward      2 ((S-1) D^2 + 3D) P      (no gradient for the coordinates)
//   weight grads  2 (3D + (S-1) (D^2 + D) + 3D + 3) P
// which the bench names sum up as GFLOP per run. Divide by the reported time
// for GFLOP/s, and images x iterations by it for image-iterations/s.
// Batches are as large as the adapter allows, capped so that a run stays
// short on software adapters.

import { Gpu } from "../src/gpu/device.ts";
import { initialWeights } from "../src/inr/encode.ts";
import { ENCODE_PRESETS, type EncodePresetName } from "../src/inr/presets.ts";
import { maxBatchImages, SirenFitBatch } from "../src/inr/siren_batch.ts";
import { type SirenArch, sirenParamCount } from "../src/inr/siren.ts";

/** FLOP of one fitting iteration of one image (see the formula above). */
function fitFlops(arch: SirenArch, pixels: number): number {
  const { sineLayers: s, width: d } = arch;
  const forward = 2 * (2 * d + (s - 1) * d * d + 3 * d);
  const backward = 2 * ((s - 1) * d * d + 3 * d);
  const gradients = 2 * (3 * d + (s - 1) * (d * d + d) + 3 * d + 3);
  return (forward + backward + gradients) * pixels;
}

const gpu = await Gpu.create();

// Images per batch and iterations per measured run: [software, hardware].
const RUNS: Record<EncodePresetName, { images: [number, number]; iterations: [number, number] }> = {
  cifar: { images: [64, 4096], iterations: [10, 50] },
  flowers: { images: [1, 64], iterations: [2, 10] },
  imagenet: { images: [1, 64], iterations: [2, 10] },
};

for (const preset of Object.values(ENCODE_PRESETS)) {
  const { arch, side } = preset;
  const pick = gpu.isSoftware ? 0 : 1;
  const capacity = Math.min(
    RUNS[preset.name].images[pick],
    maxBatchImages(gpu, { arch, side, memoryBytes: 8 * 1024 ** 3 }),
  );
  const iterations = RUNS[preset.name].iterations[pick];
  const pixels = side * side;
  const q = sirenParamCount(arch);

  const images = new Uint8Array(capacity * pixels * 3);
  for (let i = 0; i < images.length; i++) images[i] = (i * 2654435761) >>> 24;
  const weights = new Float32Array(capacity * q);
  for (let n = 0; n < capacity; n++) {
    weights.set(initialWeights(arch, { seed: 0, index: n }), n * q);
  }
  // Room for the warmup and every measured run in one cosine schedule.
  const batch = await SirenFitBatch.create(gpu, {
    arch,
    side,
    capacity,
    iterations: 1_000_000,
    learningRate: preset.learningRate,
  });
  batch.load({ images, weights });

  const gflop = (fitFlops(arch, pixels) * capacity * iterations) / 1e9;
  Deno.bench({
    name:
      `${preset.name} ${side}px ${arch.sineLayers}x${arch.width}: ${capacity} images x ${iterations} iterations, ${
        gflop.toPrecision(3)
      } GFLOP`,
    n: gpu.isSoftware ? 3 : 10,
    warmup: 1,
    async fn() {
      batch.run(iterations);
      await gpu.finish();
    },
  });
}
