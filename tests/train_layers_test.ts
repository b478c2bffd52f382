// GPU layer kernels against their float64 references, finite-difference
// checks of every backward, and the binding and shape validation.
//
// Tolerances (absolute + relative):
//   FORWARD   GPU forward vs float64 reference, f32 sums of at most a few hundred terms
//   BACKWARD  GPU backward vs float64 reference
//   FD        GPU backward vs central finite differences of the float64 forward,
//             looser because it compares f32 rounding with the O(step^2) FD error

import { assertEquals, assertThrows } from "@std/assert";
import { type Gpu, GpuError } from "../src/gpu/device.ts";
import { type Binding, Plan } from "../src/gpu/kernel.ts";
import {
  avgPoolBackwardReference,
  avgPoolReference,
  batchNormBackwardReference,
  batchNormEvalReference,
  batchNormForwardReference,
  type BatchNormShape,
  buildDecayMask,
  crossEntropyReference,
  type LayerKernelOptions,
  LayerKernels,
  linearBackwardReference,
  linearReference,
  LOSS_STATS_BYTES,
  maxPoolBackwardReference,
  maxPoolOutputSize,
  maxPoolReference,
  type MaxPoolShape,
  readLossStats,
  reluBackwardReference,
  reluReference,
  resetLossStats,
  sgdReference,
} from "../src/train/layers.ts";
import { assertClose, finiteDifference, randomArray, seededRandom, testGpu } from "./_util.ts";

const FORWARD = { atol: 1e-5, rtol: 1e-4 };
const BACKWARD = { atol: 1e-5, rtol: 1e-4 };
const FD = { atol: 2e-4, rtol: 2e-3 };

/** Creates buffers from arrays and releases them all at the end of a test. */
class Buffers {
  readonly gpu: Gpu;
  #all: GPUBuffer[] = [];
  constructor(gpu: Gpu) {
    this.gpu = gpu;
  }
  upload(label: string, data: Float32Array | Uint32Array): GPUBuffer {
    const buffer = this.gpu.buffer(data.byteLength, label, data);
    this.#all.push(buffer);
    return buffer;
  }
  zeros(label: string, elements: number): GPUBuffer {
    return this.upload(label, new Float32Array(elements));
  }
  release(): void {
    for (const buffer of this.#all) this.gpu.release(buffer);
  }
}

/** Records with `record`, submits `repeat` times in one submit, and releases the plan after `read`. */
async function runPlan<T>(
  gpu: Gpu,
  steps: { record: (plan: Plan) => void; read: () => Promise<T>; repeat?: number },
): Promise<T> {
  const plan = new Plan(gpu, "test");
  steps.record(plan);
  plan.submit(steps.repeat ?? 1);
  const result = await steps.read();
  plan.destroy();
  return result;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

function pick<T extends ArrayLike<number>>(values: T, indices: number[]): number[] {
  return indices.map((i) => values[i]);
}

/** Indices 0, stride, 2 stride, ... below `length`, plus the last one. */
function sampleIndices(length: number, count: number): number[] {
  const stride = Math.max(1, Math.floor(length / count));
  const indices = [];
  for (let i = 0; i < length; i += stride) indices.push(i);
  if (indices[indices.length - 1] !== length - 1) indices.push(length - 1);
  return indices;
}

// ---------------------------------------------------------------- batch norm

function batchNormInputs(shape: BatchNormShape, seed: number) {
  const random = seededRandom(seed);
  const size = shape.n * shape.c * shape.h * shape.w;
  // An offset of 3 makes E[x^2] - E[x]^2 lose digits in f32, which the
  // two-pass variance must not.
  const x = randomArray(random, size, 2, 4);
  return {
    x,
    gamma: randomArray(random, shape.c, 0.5, 1.5),
    beta: randomArray(random, shape.c, -0.5, 0.5),
    runningMean: randomArray(random, shape.c, -0.2, 0.2),
    runningVar: randomArray(random, shape.c, 0.5, 1.5),
    dy: randomArray(random, size),
  };
}

const BN_SHAPES: { shape: BatchNormShape; options?: LayerKernelOptions }[] = [
  { shape: { n: 3, c: 4, h: 5, w: 3 } }, // H * W = 15: the cursor steps several images at once
  { shape: { n: 2, c: 3, h: 9, w: 9, relu: true } }, // H * W = 81
  // A reduction step smaller than the plane, and a 3-D grid wider than one workgroup.
  {
    shape: { n: 2, c: 2, h: 5, w: 3, relu: true },
    options: { workgroupSize: 4, reductionWorkgroupSize: 8 },
  },
];

Deno.test("batchNorm forward matches reference", async () => {
  const gpu = await testGpu();
  for (const { shape, options } of BN_SHAPES) {
    const layers = await LayerKernels.create(gpu, options);
    const buffers = new Buffers(gpu);
    const input = batchNormInputs(shape, 11);
    // gamma and beta share one parameter buffer at a 256-byte offset, as in a flat model.
    const paramData = new Float32Array(64 + shape.c);
    paramData.set(input.gamma, 0);
    paramData.set(input.beta, 64);
    const paramBuffer = buffers.upload("bn params", paramData);
    const io = {
      x: buffers.upload("x", input.x),
      y: buffers.zeros("y", input.x.length),
      gamma: { buffer: paramBuffer, offset: 0, size: shape.c * 4 },
      beta: { buffer: paramBuffer, offset: 256, size: shape.c * 4 },
      mean: buffers.zeros("mean", shape.c),
      invStd: buffers.zeros("invStd", shape.c),
      runningMean: buffers.upload("runningMean", input.runningMean),
      runningVar: buffers.upload("runningVar", input.runningVar),
    };
    const [y, mean, invStd] = await runPlan(gpu, {
      record: (plan) => layers.batchNorm.forward(plan, io, shape),
      read: () => Promise.all([gpu.readF32(io.y), gpu.readF32(io.mean), gpu.readF32(io.invStd)]),
    });
    const expected = batchNormForwardReference(input, shape);
    const label = `${JSON.stringify(shape)} ${JSON.stringify(options ?? {})}`;
    assertClose(`y ${label}`, y, expected.y, FORWARD);
    assertClose(`mean ${label}`, mean, expected.mean, FORWARD);
    assertClose(`invStd ${label}`, invStd, expected.invStd, FORWARD);
    buffers.release();
  }
});

Deno.test("batchNorm running statistics update", async () => {
  const gpu = await testGpu();
  const layers = await LayerKernels.create(gpu);
  const buffers = new Buffers(gpu);
  const shape: BatchNormShape = { n: 4, c: 3, h: 3, w: 2, momentum: 0.1 };
  const input = batchNormInputs(shape, 12);
  const io = {
    x: buffers.upload("x", input.x),
    y: buffers.zeros("y", input.x.length),
    gamma: buffers.upload("gamma", input.gamma),
    beta: buffers.upload("beta", input.beta),
    mean: buffers.zeros("mean", shape.c),
    invStd: buffers.zeros("invStd", shape.c),
    runningMean: buffers.upload("runningMean", input.runningMean),
    runningVar: buffers.upload("runningVar", input.runningVar),
  };
  // Three steps on the same batch apply the momentum update three times.
  const [runningMean, runningVar] = await runPlan(gpu, {
    record: (plan) => layers.batchNorm.forward(plan, io, shape),
    read: () => Promise.all([gpu.readF32(io.runningMean), gpu.readF32(io.runningVar)]),
    repeat: 3,
  });
  let expected: { runningMean: ArrayLike<number>; runningVar: ArrayLike<number> } = input;
  for (let step = 0; step < 3; step++) {
    expected = batchNormForwardReference({ ...input, ...expected }, shape);
  }
  assertClose("runningMean", runningMean, expected.runningMean, FORWARD);
  assertClose("runningVar", runningVar, expected.runningVar, FORWARD);
  buffers.release();
});

Deno.test("batchNorm eval forward matches reference", async () => {
  const gpu = await testGpu();
  const layers = await LayerKernels.create(gpu);
  for (const relu of [false, true]) {
    const buffers = new Buffers(gpu);
    const shape: BatchNormShape = { n: 2, c: 3, h: 4, w: 5, relu };
    const input = batchNormInputs(shape, 13);
    const io = {
      x: buffers.upload("x", input.x.map((v) => v - 3)),
      y: buffers.zeros("y", input.x.length),
      gamma: buffers.upload("gamma", input.gamma),
      beta: buffers.upload("beta", input.beta),
      runningMean: buffers.upload("runningMean", input.runningMean),
      runningVar: buffers.upload("runningVar", input.runningVar),
    };
    const y = await runPlan(gpu, {
      record: (plan) => layers.batchNorm.evalForward(plan, io, shape),
      read: () => gpu.readF32(io.y),
    });
    const expected = batchNormEvalReference({ ...input, x: input.x.map((v) => v - 3) }, shape);
    assertClose(`y relu=${relu}`, y, expected, FORWARD);
    buffers.release();
  }
});

/** Runs the GPU forward and backward of batch norm and returns dx, dgamma, dbeta. */
async function gpuBatchNormBackward(
  gpu: Gpu,
  run: {
    input: ReturnType<typeof batchNormInputs>;
    shape: BatchNormShape;
    options?: LayerKernelOptions;
  },
): Promise<Float32Array[]> {
  const { input, shape } = run;
  const layers = await LayerKernels.create(gpu, run.options);
  const buffers = new Buffers(gpu);
  const size = input.x.length;
  const common = {
    x: buffers.upload("x", input.x),
    gamma: buffers.upload("gamma", input.gamma),
    beta: buffers.upload("beta", input.beta),
    mean: buffers.zeros("mean", shape.c),
    invStd: buffers.zeros("invStd", shape.c),
  };
  const forward = {
    ...common,
    y: buffers.zeros("y", size),
    runningMean: buffers.upload("runningMean", input.runningMean),
    runningVar: buffers.upload("runningVar", input.runningVar),
  };
  const backward = {
    ...common,
    dy: buffers.upload("dy", input.dy),
    dx: buffers.upload("dx", new Float32Array(size).fill(7)), // a sentinel the backward must overwrite
    dgamma: buffers.upload("dgamma", new Float32Array(shape.c).fill(7)),
    dbeta: buffers.upload("dbeta", new Float32Array(shape.c).fill(7)),
  };
  const result = await runPlan(gpu, {
    record: (plan) => {
      layers.batchNorm.forward(plan, forward, shape);
      layers.batchNorm.backward(plan, backward, shape);
    },
    read: () =>
      Promise.all([
        gpu.readF32(backward.dx),
        gpu.readF32(backward.dgamma),
        gpu.readF32(backward.dbeta),
      ]),
  });
  buffers.release();
  return result;
}

Deno.test("batchNorm backward matches reference", async () => {
  const gpu = await testGpu();
  for (const { shape, options } of BN_SHAPES) {
    const input = batchNormInputs(shape, 14);
    const [dx, dgamma, dbeta] = await gpuBatchNormBackward(gpu, { input, shape, options });
    const expected = batchNormBackwardReference(input, shape);
    const label = `${JSON.stringify(shape)} ${JSON.stringify(options ?? {})}`;
    assertClose(`dx ${label}`, dx, expected.dx, BACKWARD);
    assertClose(`dgamma ${label}`, dgamma, expected.dgamma, BACKWARD);
    assertClose(`dbeta ${label}`, dbeta, expected.dbeta, BACKWARD);
  }
});

Deno.test("batchNorm backward matches finite differences", async () => {
  const gpu = await testGpu();
  const shape: BatchNormShape = { n: 3, c: 2, h: 2, w: 3 };
  const input = batchNormInputs(shape, 15);
  const [dx, dgamma, dbeta] = await gpuBatchNormBackward(gpu, { input, shape });

  // L = sum(dy * y) has gradient dy with respect to y.
  const x = Float64Array.from(input.x);
  const gamma = Float64Array.from(input.gamma);
  const beta = Float64Array.from(input.beta);
  const loss = () =>
    dot(input.dy, batchNormForwardReference({ ...input, x, gamma, beta }, shape).y);
  const xIndices = sampleIndices(x.length, 12);
  const channels = [...Array(shape.c).keys()];
  assertClose("dx vs FD", pick(dx, xIndices), finiteDifference(loss, x, xIndices), FD);
  assertClose("dgamma vs FD", dgamma, finiteDifference(loss, gamma, channels), FD);
  assertClose("dbeta vs FD", dbeta, finiteDifference(loss, beta, channels), FD);
});

// ---------------------------------------------------------------- elementwise

Deno.test("elementwise ops match reference", async () => {
  const gpu = await testGpu();
  const layers = await LayerKernels.create(gpu);
  const ops = layers.elementwise;
  const buffers = new Buffers(gpu);
  const count = 1000; // not a multiple of the workgroup size
  const random = seededRandom(21);
  const a = randomArray(random, count);
  const b = randomArray(random, count);
  const dy = randomArray(random, count);
  const shape = { count };
  const io = {
    a: buffers.upload("a", a),
    b: buffers.upload("b", b),
    dy: buffers.upload("dy", dy),
    relu: buffers.zeros("relu", count),
    reluInPlace: buffers.upload("reluInPlace", a),
    dx: buffers.zeros("dx", count),
    dxInPlace: buffers.upload("dxInPlace", dy),
    sum: buffers.zeros("sum", count),
    sumRelu: buffers.zeros("sumRelu", count),
    into: buffers.upload("into", b),
    intoRelu: buffers.upload("intoRelu", b),
    copied: buffers.zeros("copied", count),
    filled: buffers.zeros("filled", count + 5),
  };
  const results = await runPlan(gpu, {
    record: (plan) => {
      ops.relu(plan, { x: io.a, y: io.relu }, shape);
      ops.reluInPlace(plan, { y: io.reluInPlace }, shape);
      ops.reluBackward(plan, { activation: io.relu, dy: io.dy, dx: io.dx }, shape);
      ops.reluBackwardInPlace(plan, { activation: io.relu, dx: io.dxInPlace }, shape);
      ops.add(plan, { a: io.a, b: io.b, y: io.sum }, shape);
      ops.add(plan, { a: io.a, b: io.b, y: io.sumRelu }, { count, relu: true });
      ops.addInto(plan, { src: io.a, dst: io.into }, shape);
      ops.addInto(plan, { src: io.a, dst: io.intoRelu }, { count, relu: true });
      ops.copy(plan, { src: io.a, dst: io.copied }, shape);
      ops.fill(plan, { dst: io.filled }, { count, value: -2.5 });
    },
    read: async () => {
      const out: Record<string, Float32Array> = {};
      for (const [name, buffer] of Object.entries(io)) out[name] = await gpu.readF32(buffer);
      return out;
    },
  });
  const relu = reluReference(a);
  const sum = a.map((v, i) => v + b[i]);
  assertClose("relu", results.relu, relu, FORWARD);
  assertClose("reluInPlace", results.reluInPlace, relu, FORWARD);
  assertClose(
    "reluBackward",
    results.dx,
    reluBackwardReference({ activation: relu, dy }),
    BACKWARD,
  );
  assertClose(
    "reluBackwardInPlace",
    results.dxInPlace,
    reluBackwardReference({ activation: relu, dy }),
    BACKWARD,
  );
  assertClose("add", results.sum, sum, FORWARD);
  assertClose("add relu", results.sumRelu, reluReference(sum), FORWARD);
  assertClose("addInto", results.into, sum, FORWARD);
  assertClose("addInto relu", results.intoRelu, reluReference(sum), FORWARD);
  assertClose("copy", results.copied, a, { atol: 0, rtol: 0 });
  const filled = new Float32Array(count + 5).fill(-2.5).fill(0, count);
  assertClose("fill stops at count", results.filled, filled, { atol: 0, rtol: 0 });
  buffers.release();
});

// ---------------------------------------------------------------- pooling

/** Distinct values 0.01 apart in random order, so that no FD step changes an argmax. */
function distinctValues(count: number, seed: number): Float32Array {
  const random = seededRandom(seed);
  const values = Float32Array.from({ length: count }, (_, i) => (i - count / 2) * 0.01);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [values[i], values[j]] = [values[j], values[i]];
  }
  return values;
}

const POOL_SHAPES: MaxPoolShape[] = [
  { n: 2, c: 3, h: 7, w: 7 }, // the ResNet stem window: kernel 3, stride 2, pad 1
  { n: 1, c: 2, h: 8, w: 6 },
  { n: 2, c: 1, h: 6, w: 5, kernel: 2, stride: 2, pad: 0 },
];

async function gpuMaxPool(
  gpu: Gpu,
  input: { x: Float32Array; dy: Float32Array },
  shape: MaxPoolShape,
) {
  const layers = await LayerKernels.create(gpu);
  const buffers = new Buffers(gpu);
  const io = {
    x: buffers.upload("x", input.x),
    y: buffers.zeros("y", input.dy.length),
    argmax: buffers.zeros("argmax", input.dy.length),
    dy: buffers.upload("dy", input.dy),
    dx: buffers.upload("dx", new Float32Array(input.x.length).fill(7)),
  };
  const [y, argmax, dx] = await runPlan(gpu, {
    record: (plan) => {
      layers.pool.maxPoolForward(plan, io, shape);
      layers.pool.maxPoolBackward(plan, io, shape);
    },
    read: () => Promise.all([gpu.readF32(io.y), gpu.readU32(io.argmax), gpu.readF32(io.dx)]),
  });
  buffers.release();
  return { y, argmax, dx };
}

Deno.test("maxPool forward and backward match reference", async () => {
  const gpu = await testGpu();
  for (const shape of POOL_SHAPES) {
    const { ho, wo } = maxPoolOutputSize(shape);
    const random = seededRandom(31);
    const x = randomArray(random, shape.n * shape.c * shape.h * shape.w);
    const dy = randomArray(random, shape.n * shape.c * ho * wo);
    const { y, argmax, dx } = await gpuMaxPool(gpu, { x, dy }, shape);
    const expected = maxPoolReference(x, shape);
    const label = JSON.stringify(shape);
    assertClose(`y ${label}`, y, expected.y, { atol: 0, rtol: 0 });
    assertEquals(Array.from(argmax), Array.from(expected.argmax), `argmax ${label}`);
    assertClose(
      `dx ${label}`,
      dx,
      maxPoolBackwardReference({ argmax: expected.argmax, dy }, shape),
      BACKWARD,
    );
  }
});

Deno.test("maxPool stem output size", () => {
  assertEquals(maxPoolOutputSize({ n: 1, c: 1, h: 112, w: 112 }), { ho: 56, wo: 56 });
  assertEquals(maxPoolOutputSize({ n: 1, c: 1, h: 7, w: 8 }), { ho: 4, wo: 4 });
});

Deno.test("maxPool ties keep the first pixel", async () => {
  const gpu = await testGpu();
  const shape: MaxPoolShape = { n: 1, c: 1, h: 3, w: 3 };
  const x = new Float32Array(9).fill(1);
  const { argmax } = await gpuMaxPool(gpu, { x, dy: new Float32Array(4) }, shape);
  assertEquals(Array.from(argmax), Array.from(maxPoolReference(x, shape).argmax));
  assertEquals(Array.from(argmax), [0, 1, 3, 4]);
});

Deno.test("maxPool backward matches finite differences", async () => {
  const gpu = await testGpu();
  for (const shape of POOL_SHAPES) {
    const { ho, wo } = maxPoolOutputSize(shape);
    const x = distinctValues(shape.n * shape.c * shape.h * shape.w, 32);
    const dy = randomArray(seededRandom(33), shape.n * shape.c * ho * wo);
    const { dx } = await gpuMaxPool(gpu, { x, dy }, shape);
    const x64 = Float64Array.from(x);
    const loss = (values: Float64Array) => dot(dy, maxPoolReference(values, shape).y);
    const indices = [...Array(x64.length).keys()];
    assertClose(
      `dx vs FD ${JSON.stringify(shape)}`,
      dx,
      finiteDifference(loss, x64, indices, 1e-4),
      FD,
    );
  }
});

Deno.test("avgPool forward and backward match reference and finite differences", async () => {
  const gpu = await testGpu();
  const layers = await LayerKernels.create(gpu);
  const buffers = new Buffers(gpu);
  const shape = { n: 3, c: 5, h: 3, w: 4 };
  const random = seededRandom(41);
  const x = randomArray(random, shape.n * shape.c * shape.h * shape.w);
  const dy = randomArray(random, shape.n * shape.c);
  const io = {
    x: buffers.upload("x", x),
    y: buffers.zeros("y", dy.length),
    dy: buffers.upload("dy", dy),
    dx: buffers.upload("dx", new Float32Array(x.length).fill(7)),
  };
  const [y, dx] = await runPlan(gpu, {
    record: (plan) => {
      layers.pool.avgPoolForward(plan, io, shape);
      layers.pool.avgPoolBackward(plan, io, shape);
    },
    read: () => Promise.all([gpu.readF32(io.y), gpu.readF32(io.dx)]),
  });
  assertClose("y", y, avgPoolReference(x, shape), FORWARD);
  assertClose("dx", dx, avgPoolBackwardReference(dy, shape), BACKWARD);
  const x64 = Float64Array.from(x);
  const indices = sampleIndices(x.length, 15);
  const fd = finiteDifference((values) => dot(dy, avgPoolReference(values, shape)), x64, indices);
  assertClose("dx vs FD", pick(dx, indices), fd, FD);
  buffers.release();
});

// ---------------------------------------------------------------- linear

Deno.test("linear forward and backward match reference and finite differences", async () => {
  const gpu = await testGpu();
  const layers = await LayerKernels.create(gpu);
  const buffers = new Buffers(gpu);
  const shape = { n: 3, c: 7, m: 5 };
  const random = seededRandom(51);
  const input = {
    x: randomArray(random, shape.n * shape.c),
    weight: randomArray(random, shape.m * shape.c),
    bias: randomArray(random, shape.m),
    dy: randomArray(random, shape.n * shape.m),
  };
  const io = {
    x: buffers.upload("x", input.x),
    weight: buffers.upload("weight", input.weight),
    bias: buffers.upload("bias", input.bias),
    y: buffers.zeros("y", shape.n * shape.m),
    dy: buffers.upload("dy", input.dy),
    dx: buffers.upload("dx", new Float32Array(shape.n * shape.c).fill(7)),
    dweight: buffers.upload("dweight", new Float32Array(shape.m * shape.c).fill(7)),
    dbias: buffers.upload("dbias", new Float32Array(shape.m).fill(7)),
  };
  const [y, dx, dweight, dbias] = await runPlan(gpu, {
    record: (plan) => {
      layers.linear.forward(plan, io, shape);
      layers.linear.backward(plan, io, shape);
    },
    read: () => Promise.all([io.y, io.dx, io.dweight, io.dbias].map((b) => gpu.readF32(b))),
  });
  assertClose("y", y, linearReference(input, shape), FORWARD);
  const expected = linearBackwardReference(input, shape);
  assertClose("dx", dx, expected.dx, BACKWARD);
  assertClose("dweight", dweight, expected.dweight, BACKWARD);
  assertClose("dbias", dbias, expected.dbias, BACKWARD);

  const x = Float64Array.from(input.x);
  const weight = Float64Array.from(input.weight);
  const bias = Float64Array.from(input.bias);
  const loss = () => dot(input.dy, linearReference({ x, weight, bias }, shape));
  const all = (length: number) => [...Array(length).keys()];
  assertClose("dx vs FD", dx, finiteDifference(loss, x, all(x.length)), FD);
  assertClose("dweight vs FD", dweight, finiteDifference(loss, weight, all(weight.length)), FD);
  assertClose("dbias vs FD", dbias, finiteDifference(loss, bias, all(bias.length)), FD);
  buffers.release();
});

// ---------------------------------------------------------------- cross-entropy

function crossEntropyInputs(shape: { n: number; m: number }, seed: number) {
  const random = seededRandom(seed);
  const logits = randomArray(random, shape.n * shape.m, -3, 3);
  const labels = Uint32Array.from({ length: shape.n }, () => Math.floor(random() * shape.m));
  // Make sample 0 correct, so that the count is not trivially zero.
  labels[0] = logits.subarray(0, shape.m).indexOf(Math.max(...logits.subarray(0, shape.m)));
  return { logits, labels };
}

async function gpuCrossEntropy(
  gpu: Gpu,
  input: { logits: Float32Array; labels: Uint32Array },
  shape: { n: number; m: number },
  repeat = 1,
) {
  const layers = await LayerKernels.create(gpu);
  const buffers = new Buffers(gpu);
  const io = {
    logits: buffers.upload("logits", input.logits),
    labels: buffers.upload("labels", input.labels),
    dlogits: buffers.upload("dlogits", new Float32Array(input.logits.length).fill(7)),
    sampleLoss: buffers.zeros("sampleLoss", shape.n),
    stats: buffers.zeros("stats", LOSS_STATS_BYTES / 4),
  };
  resetLossStats(gpu, io.stats);
  const [dlogits, sampleLoss, stats] = await runPlan(gpu, {
    record: (plan) => layers.loss.crossEntropy(plan, io, shape),
    read: () =>
      Promise.all([
        gpu.readF32(io.dlogits),
        gpu.readF32(io.sampleLoss),
        readLossStats(gpu, io.stats),
      ]),
    repeat,
  });
  buffers.release();
  return { dlogits, sampleLoss, stats };
}

Deno.test("crossEntropy matches reference and accumulates stats", async () => {
  const gpu = await testGpu();
  // M = 100 exceeds the workgroup size, so invocations stride over the row.
  for (const shape of [{ n: 5, m: 10 }, { n: 3, m: 100 }]) {
    const input = crossEntropyInputs(shape, 61);
    const { dlogits, sampleLoss, stats } = await gpuCrossEntropy(gpu, input, shape, 2);
    const expected = crossEntropyReference(input, shape);
    const label = JSON.stringify(shape);
    assertClose(`dlogits ${label}`, dlogits, expected.dlogits, BACKWARD);
    assertClose(`sampleLoss ${label}`, sampleLoss, expected.sampleLoss, FORWARD);
    assertClose(`lossSum ${label}`, [stats.lossSum], [2 * expected.meanLoss], FORWARD);
    assertClose(`meanLoss ${label}`, [stats.meanLoss], [expected.meanLoss], FORWARD);
    assertEquals(stats.correct, 2 * expected.correct, `correct ${label}`);
    assertEquals(stats.samples, 2 * shape.n, `samples ${label}`);
    assertEquals(stats.steps, 2, `steps ${label}`);
    assertEquals(stats.invalidLabels, 0, `invalidLabels ${label}`);
  }
});

Deno.test("crossEntropy gradient matches finite differences", async () => {
  const gpu = await testGpu();
  const shape = { n: 4, m: 6 };
  const input = crossEntropyInputs(shape, 62);
  const { dlogits } = await gpuCrossEntropy(gpu, input, shape);
  const logits = Float64Array.from(input.logits);
  const loss = (values: Float64Array) =>
    crossEntropyReference({ logits: values, labels: input.labels }, shape).meanLoss;
  const fd = finiteDifference(loss, logits, [...Array(logits.length).keys()]);
  assertClose("dlogits vs FD", dlogits, fd, FD);
});

Deno.test("crossEntropy counts ties and invalid labels", async () => {
  const gpu = await testGpu();
  const shape = { n: 3, m: 4 };
  // Row 0 ties at indices 1 and 2, row 1 at 0 and 2: the first maximum is the prediction.
  const logits = new Float32Array([1, 3, 3, 0, 3, 0, 3, 1, 0, 1, 2, 3]);
  const labels = new Uint32Array([1, 2, 9]);
  const { sampleLoss, stats } = await gpuCrossEntropy(gpu, { logits, labels }, shape);
  const expected = crossEntropyReference({ logits, labels }, shape);
  assertEquals(expected.correct, 1);
  assertEquals(stats.correct, 1);
  assertEquals(stats.invalidLabels, 1);
  assertEquals(sampleLoss[2], 0);
  assertClose("sampleLoss", sampleLoss, expected.sampleLoss, FORWARD);
});

Deno.test("crossEntropyEval counts correct predictions", async () => {
  const gpu = await testGpu();
  const layers = await LayerKernels.create(gpu);
  const buffers = new Buffers(gpu);
  const shape = { n: 7, m: 70 };
  const input = crossEntropyInputs(shape, 63);
  const io = {
    logits: buffers.upload("logits", input.logits),
    labels: buffers.upload("labels", input.labels),
    stats: buffers.zeros("stats", LOSS_STATS_BYTES / 4),
  };
  const stats = await runPlan(gpu, {
    record: (plan) => layers.loss.crossEntropyEval(plan, io, shape),
    read: () => readLossStats(gpu, io.stats),
    repeat: 3,
  });
  const expected = crossEntropyReference(input, shape);
  assertEquals(stats.correct, 3 * expected.correct);
  assertEquals(stats.samples, 3 * shape.n);
  assertEquals(stats.steps, 3);
  assertEquals(stats.lossSum, 0);
  assertEquals(stats.accuracy, expected.correct / shape.n);
  buffers.release();
});

// ---------------------------------------------------------------- SGD

Deno.test("buildDecayMask clears the no-decay ranges", () => {
  const mask = buildDecayMask({
    count: 40,
    noDecay: [{ offset: 3, length: 2 }, { offset: 31, length: 2 }],
  });
  assertEquals(mask.length, 2);
  assertEquals(mask[0], (0xffffffff & ~(0b11 << 3) & ~(1 << 31)) >>> 0);
  assertEquals(mask[1], 0xff & ~1);
  assertThrows(
    () => buildDecayMask({ count: 8, noDecay: [{ offset: 6, length: 3 }] }),
    RangeError,
    "not inside",
  );
});

Deno.test("sgd three steps with momentum and decay mask", async () => {
  const gpu = await testGpu();
  const layers = await LayerKernels.create(gpu);
  const buffers = new Buffers(gpu);
  const count = 100;
  const random = seededRandom(71);
  const weights = randomArray(random, count);
  const grads = randomArray(random, count);
  const decayMask = buildDecayMask({
    count,
    noDecay: [{ offset: 10, length: 20 }, { offset: 90, length: 10 }],
  });
  const io = {
    weights: buffers.upload("weights", weights),
    grads: buffers.upload("grads", grads),
    velocity: buffers.zeros("velocity", count),
    decayMask: buffers.upload("decayMask", decayMask),
  };
  const options = { count, learningRate: 0.1, momentum: 0.9, weightDecay: 0.05 };
  const plan = new Plan(gpu, "sgd");
  const step = layers.sgd.step(plan, io, options);
  const rates = [0.1, 0.05, 0.02];
  for (const rate of rates) {
    step.setLearningRate(rate);
    plan.submit();
  }
  const [w, v] = await Promise.all([gpu.readF32(io.weights), gpu.readF32(io.velocity)]);
  plan.destroy();

  const noMask = new Uint32Array(decayMask.length);
  const allDecay = buildDecayMask({ count, noDecay: [] });
  const threeSteps = (mask: Uint32Array) => {
    let state: { weights: ArrayLike<number>; velocity: ArrayLike<number> } = {
      weights,
      velocity: new Float64Array(count),
    };
    for (const rate of rates) {
      state = sgdReference({ ...state, grads, decayMask: mask }, {
        ...options,
        learningRate: rate,
      });
    }
    return state;
  };
  const masked = threeSteps(decayMask);
  assertClose("weights", w, masked.weights, FORWARD);
  assertClose("velocity", v, masked.velocity, FORWARD);

  // Inside the no-decay ranges the GPU result equals a run without decay, outside it one with decay everywhere.
  const undecayed = threeSteps(noMask);
  const decayed = threeSteps(allDecay);
  const inside = [10, 29, 90, 99];
  const outside = [0, 9, 30, 89];
  assertClose("no-decay range", pick(w, inside), pick(undecayed.weights, inside), FORWARD);
  assertClose("decayed range", pick(w, outside), pick(decayed.weights, outside), FORWARD);
  buffers.release();
});

// ---------------------------------------------------------------- validation

Deno.test("layer methods reject bad bindings and shapes", async () => {
  const gpu = await testGpu();
  const layers = await LayerKernels.create(gpu);
  const buffers = new Buffers(gpu);
  const plan = new Plan(gpu, "validation");
  const big = buffers.zeros("big", 256);
  const small = buffers.zeros("small", 4);
  const ops = layers.elementwise;

  assertThrows(
    () => ops.copy(plan, { src: { buffer: big, offset: 4 }, dst: small }, { count: 4 }),
    GpuError,
    "not a multiple of",
  );
  assertThrows(
    () => ops.copy(plan, { src: big, dst: small }, { count: 8 }),
    GpuError,
    "needs 8 elements",
  );
  assertThrows(
    () =>
      ops.copy(plan, {
        src: { buffer: big, offset: 0, size: 256 },
        dst: { buffer: big, offset: 256 },
      }, { count: 4 }),
    GpuError,
    "written",
  );
  assertThrows(() => ops.fill(plan, { dst: small }, { count: 0, value: 1 }), RangeError, "count");
  const stats: Binding = small;
  assertThrows(
    () =>
      layers.batchNorm.forward(plan, {
        x: big,
        y: small,
        gamma: big,
        beta: big,
        mean: stats,
        invStd: stats,
        runningMean: stats,
        runningVar: stats,
      }, { n: 1, c: 1, h: 1, w: 1 }),
    RangeError,
    "more than one value per channel",
  );
  assertThrows(
    () =>
      layers.pool.maxPoolForward(plan, { x: big, y: small, argmax: small }, {
        n: 1,
        c: 1,
        h: 4,
        w: 4,
        kernel: 2,
        pad: 2,
      }),
    RangeError,
    "pad",
  );
  await assertRejectsRange(() => LayerKernels.create(gpu, { workgroupSize: 48 }));
  assertEquals(plan.length, 0);
  plan.destroy();
  buffers.release();
});

async function assertRejectsRange(create: () => Promise<unknown>): Promise<void> {
  try {
    await create();
  } catch (error) {
    if (error instanceof RangeError && error.message.includes("power of two")) return;
    throw error;
  }
  throw new Error("expected a RangeError about the workgroup size");
}
