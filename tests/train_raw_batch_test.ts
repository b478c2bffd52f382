import { assertEquals } from "@std/assert";
import { Plan } from "../src/gpu/kernel.ts";
import { type BatchTransform, RawImages, transformSample } from "../src/train/raw_batch.ts";
import { assertClose, seededRandom, testGpu } from "./_util.ts";

// GPU and CPU agree to f32 rounding of the same arithmetic.
const TOLERANCE = { atol: 1e-5, rtol: 1e-5 };

async function compare(resolution: number, transform: BatchTransform, order?: number[]) {
  const gpu = await testGpu();
  const count = 5;
  const random = seededRandom(resolution * 31 + transform.size);
  const images = new Uint8Array(count * resolution * resolution * 3).map(() => Math.floor(random() * 256));
  const labels = [4, 3, 2, 1, 0];
  const raw = await RawImages.create(gpu, { images, labels, resolution });
  const batch = 3;
  const s = transform.size;
  const output = gpu.buffer(batch * 3 * s * s * 4, "output");
  const labelsOut = gpu.buffer(batch * 4, "labels out");
  const indices = order ? gpu.buffer(order.length * 4, "indices", Uint32Array.from(order)) : undefined;
  const plan = new Plan(gpu, "raw batch test");
  const recorded = raw.recordBatch(plan, { output, labelsOut, indices }, { ...transform, batch });
  const first = 1, step = 9;
  recorded.update({ first, step });
  plan.submit();

  const expected = new Float32Array(batch * 3 * s * s);
  const expectedLabels: number[] = [];
  for (let j = 0; j < batch; j++) {
    const image = order ? order[first + j] : first + j;
    const bytes = images.subarray(image * resolution * resolution * 3, (image + 1) * resolution * resolution * 3);
    transformSample(bytes, { output: expected, sample: j, resolution, step }, transform);
    expectedLabels.push(labels[image]);
  }
  assertClose("output", await gpu.readF32(output), expected, TOLERANCE);
  assertEquals([...await gpu.readU32(labelsOut)], expectedLabels);
  plan.destroy();
  raw.destroy();
  for (const b of [output, labelsOut, indices]) gpu.release(b);
}

const base = { mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3], seed: 3 } as const;

Deno.test("raw batch plain copy matches CPU", () => compare(6, { ...base, size: 6, pad: 0, flip: false }));
Deno.test("raw batch crop and flip match CPU", () => compare(7, { ...base, size: 7, pad: 2, flip: true }, [4, 0, 3, 1, 2]));
Deno.test("raw batch resize matches CPU", () => compare(5, { ...base, size: 9, pad: 1, flip: true }));
