// Batch norm with fused ReLU against batch norm followed by a separate ReLU
// pass, forward and backward, on one CIFAR-sized ResNet activation.
//
// Run: DENO_WEBGPU_BACKEND=vulkan deno bench -A bench/train_layers_bench.ts
// Each iteration submits the recorded plan REPEAT times in one submit and
// waits once, so the time per op is the reported time / REPEAT (the wait
// itself costs about 11 ms on llvmpipe). The setup checks that both forms
// produce the same output and gradients before anything is timed. On a
// machine shared with other jobs, compare the min column.

import { Gpu } from "../src/gpu/device.ts";
import { Plan } from "../src/gpu/kernel.ts";
import { type BatchNormShape, LayerKernels } from "../src/train/layers.ts";

const REPEAT = 10;
const SHAPE: BatchNormShape = { n: 32, c: 64, h: 32, w: 32 };
const COUNT = SHAPE.n * SHAPE.c * SHAPE.h * SHAPE.w;
const MIB = (COUNT * 4) / 2 ** 20;

const gpu = await Gpu.create({ notice: false });
const layers = await LayerKernels.create(gpu);

function randomData(count: number, seed: number): Float32Array {
  let state = seed;
  return Float32Array.from({ length: count }, () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32 - 0.5;
  });
}

const x = gpu.buffer(COUNT * 4, "x", randomData(COUNT, 1));
const dy = gpu.buffer(COUNT * 4, "dy", randomData(COUNT, 2));
const channel = (label: string, value: number) =>
  gpu.buffer(SHAPE.c * 4, label, new Float32Array(SHAPE.c).fill(value));
const state = {
  gamma: channel("gamma", 1),
  beta: channel("beta", 0.1),
  mean: channel("mean", 0),
  invStd: channel("invStd", 0),
  runningMean: channel("runningMean", 0),
  runningVar: channel("runningVar", 1),
};

function makePlans(fused: boolean) {
  const y = gpu.buffer(COUNT * 4, fused ? "y fused" : "y separate");
  const dx = gpu.buffer(COUNT * 4, fused ? "dx fused" : "dx separate");
  const dyMasked = gpu.buffer(COUNT * 4, "dy masked");
  const dgamma = channel("dgamma", 0);
  const dbeta = channel("dbeta", 0);
  const shape = { ...SHAPE, relu: fused };

  const forward = new Plan(gpu, "forward");
  layers.batchNorm.forward(forward, { ...state, x, y }, shape);
  if (!fused) layers.elementwise.reluInPlace(forward, { y }, { count: COUNT });

  const backward = new Plan(gpu, "backward");
  let gradient = dy;
  if (!fused) {
    layers.elementwise.reluBackward(backward, { activation: y, dy, dx: dyMasked }, {
      count: COUNT,
    });
    gradient = dyMasked;
  }
  layers.batchNorm.backward(backward, { ...state, x, dy: gradient, dx, dgamma, dbeta }, shape);
  return { forward, backward, y, dx };
}

const fused = makePlans(true);
const separate = makePlans(false);

// Correctness before timing: both forms must agree.
for (const plans of [fused, separate]) {
  plans.forward.submit();
  plans.backward.submit();
}
for (const name of ["y", "dx"] as const) {
  const a = await gpu.readF32(fused[name]);
  const b = await gpu.readF32(separate[name]);
  let maxError = 0;
  for (let i = 0; i < a.length; i++) maxError = Math.max(maxError, Math.abs(a[i] - b[i]));
  if (!(maxError <= 1e-5)) {
    throw new Error(
      `Fused and separate batch norm give different ${name} (max abs difference ${maxError}).`,
    );
  }
}

const tensor = `${SHAPE.n}x${SHAPE.c}x${SHAPE.h}x${SHAPE.w} (${MIB} MiB), x${REPEAT}`;

Deno.bench(
  `batchNorm forward, fused ReLU, ${tensor}`,
  { group: "forward", baseline: true },
  async () => {
    fused.forward.submit(REPEAT);
    await gpu.finish();
  },
);

Deno.bench(`batchNorm forward, separate ReLU, ${tensor}`, { group: "forward" }, async () => {
  separate.forward.submit(REPEAT);
  await gpu.finish();
});

Deno.bench(
  `batchNorm backward, fused ReLU mask, ${tensor}`,
  { group: "backward", baseline: true },
  async () => {
    fused.backward.submit(REPEAT);
    await gpu.finish();
  },
);

Deno.bench(
  `batchNorm backward, separate ReLU backward, ${tensor}`,
  { group: "backward" },
  async () => {
    separate.backward.submit(REPEAT);
    await gpu.finish();
  },
);
