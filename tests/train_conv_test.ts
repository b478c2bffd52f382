import { assertEquals, assertRejects, assertThrows } from "@std/assert";
import { Plan } from "../src/gpu/kernel.ts";
import {
  conv2dBackwardDataReference,
  conv2dBackwardWeightReference,
  conv2dReference,
  type ConvKernelOptions,
  ConvKernels,
  convOutputSize,
  type ConvShape,
} from "../src/train/conv.ts";
import { assertClose, finiteDifference, randomArray, seededRandom, testGpu } from "./_util.ts";

// Tolerance for f32 sums of at most a few hundred products of values in [-1, 1].
const TOLERANCE = { atol: 1e-4, rtol: 1e-4 };

// Every kernel size and stride of ResNet-18, odd sizes, and channel and pixel
// counts that leave tails for the default 8 x 8 tiles and for 3 x 4 tiles.
const SHAPES: [string, ConvShape][] = [
  ["3x3/1 pad 1", { n: 2, c: 3, h: 5, w: 7, k: 5, kernel: 3, stride: 1, pad: 1 }],
  ["3x3/2 pad 1 odd", { n: 2, c: 4, h: 7, w: 5, k: 9, kernel: 3, stride: 2, pad: 1 }],
  ["3x3/2 pad 1 even", { n: 3, c: 2, h: 8, w: 6, k: 3, kernel: 3, stride: 2, pad: 1 }],
  ["3x3/1 no pad", { n: 2, c: 2, h: 4, w: 6, k: 3, kernel: 3, stride: 1, pad: 0 }],
  ["1x1/2 pad 0", { n: 3, c: 5, h: 6, w: 5, k: 10, kernel: 1, stride: 2, pad: 0 }],
  ["1x1/1 pad 0", { n: 2, c: 10, h: 3, w: 3, k: 11, kernel: 1, stride: 1, pad: 0 }],
  ["7x7/2 pad 3", { n: 2, c: 3, h: 9, w: 11, k: 4, kernel: 7, stride: 2, pad: 3 }],
  ["7x7/1 pad 3", { n: 2, c: 2, h: 5, w: 4, k: 3, kernel: 7, stride: 1, pad: 3 }],
];

const SMALL_TILES: ConvKernelOptions = {
  forward: { rows: 3, columns: 4, workgroup: 8 },
  backwardData: { rows: 3, columns: 4, workgroup: 8 },
  backwardWeight: { rows: 3, columns: 4, workgroup: 8 },
  chunkPixels: 7,
};

interface Case {
  x: Float32Array;
  w: Float32Array;
  dy: Float32Array;
}

function randomCase(shape: ConvShape, seed: number): Case {
  const random = seededRandom(seed);
  const out = convOutputSize(shape);
  return {
    x: randomArray(random, shape.n * shape.c * shape.h * shape.w),
    w: randomArray(random, shape.k * shape.c * shape.kernel * shape.kernel),
    dy: randomArray(random, shape.n * shape.k * out.h * out.w),
  };
}

/** Runs the three GPU passes once and returns y, dx and dw. */
async function runOnGpu(kernels: ConvKernels, shape: ConvShape, data: Case) {
  const gpu = kernels.gpu;
  const x = gpu.buffer(data.x.byteLength, "x", data.x);
  const w = gpu.buffer(data.w.byteLength, "w", data.w);
  const dy = gpu.buffer(data.dy.byteLength, "dy", data.dy);
  const y = gpu.buffer(data.dy.byteLength, "y");
  const dx = gpu.buffer(data.x.byteLength, "dx");
  const dw = gpu.buffer(data.w.byteLength, "dw");
  // Garbage in the outputs checks that every pass overwrites rather than accumulates.
  gpu.write(y, new Float32Array(data.dy.length).fill(7));
  gpu.write(dx, new Float32Array(data.x.length).fill(7));
  gpu.write(dw, new Float32Array(data.w.length).fill(7));
  const scratchBytes = kernels.scratchBytes(shape);
  const scratch = scratchBytes > 0 ? gpu.buffer(scratchBytes, "scratch") : undefined;

  const plan = new Plan(gpu, "conv test");
  kernels.forward(plan, { x, w, y }, shape);
  kernels.backwardData(plan, { dy, w, dx }, shape);
  kernels.backwardWeight(plan, { x, dy, dw, scratch }, shape);
  plan.submit();
  const result = {
    y: await gpu.readF32(y),
    dx: await gpu.readF32(dx),
    dw: await gpu.readF32(dw),
    scratchBytes,
  };

  plan.destroy();
  for (const buffer of [x, w, dy, y, dx, dw, scratch]) gpu.release(buffer);
  return result;
}

async function checkAgainstReferences(options: ConvKernelOptions, seed: number) {
  const kernels = await ConvKernels.create(await testGpu(), options);
  for (const [label, shape] of SHAPES) {
    const data = randomCase(shape, seed);
    const result = await runOnGpu(kernels, shape, data);
    assertClose(`${label} y`, result.y, conv2dReference(data.x, data.w, shape), TOLERANCE);
    assertClose(
      `${label} dx`,
      result.dx,
      conv2dBackwardDataReference(data.dy, data.w, shape),
      TOLERANCE,
    );
    assertClose(
      `${label} dw`,
      result.dw,
      conv2dBackwardWeightReference(data.x, data.dy, shape),
      TOLERANCE,
    );
  }
}

Deno.test("conv matches references, default tiles", async () => {
  await checkAgainstReferences({}, 1);
});

Deno.test("conv matches references, 3x4 tiles, chunked", async () => {
  await checkAgainstReferences(SMALL_TILES, 2);
});

Deno.test("conv backward_weight uses scratch when chunked", async () => {
  const kernels = await ConvKernels.create(await testGpu(), SMALL_TILES);
  const shape = SHAPES[1][1];
  const rows = shape.n * convOutputSize(shape).h;
  const chunkRows = Math.ceil(7 / convOutputSize(shape).w);
  const dwBytes = shape.k * shape.c * 9 * 4;
  assertEquals(kernels.scratchBytes(shape), Math.ceil(rows / chunkRows) * dwBytes);

  const defaults = await ConvKernels.create(await testGpu());
  assertEquals(defaults.scratchBytes(shape), 0);
  const resnet = { n: 32, c: 64, h: 32, w: 32, k: 64, kernel: 3, stride: 1, pad: 1 };
  const chunks = defaults.scratchBytes(resnet) / (64 * 64 * 9 * 4);
  assertEquals(chunks > 1, true, `a 64-channel 32x32 layer should be split, got ${chunks} chunks`);
});

Deno.test("conv gradients match finite differences", async () => {
  const kernels = await ConvKernels.create(await testGpu());
  for (const [label, shape] of [SHAPES[0], SHAPES[1], SHAPES[4], SHAPES[6]]) {
    const data = randomCase(shape, 3);
    const g = data.dy;
    const result = await runOnGpu(kernels, shape, data);
    const x = Float64Array.from(data.x);
    const w = Float64Array.from(data.w);
    const loss = (xs: Float64Array, ws: Float64Array) => {
      const y = conv2dReference(xs, ws, shape);
      let sum = 0;
      for (let i = 0; i < y.length; i++) sum += y[i] * g[i];
      return sum;
    };

    const random = seededRandom(4);
    const xIndices = Array.from({ length: 6 }, () => Math.floor(random() * x.length));
    const wIndices = Array.from({ length: 6 }, () => Math.floor(random() * w.length));
    const dxNumeric = finiteDifference((xs) => loss(xs, w), x, xIndices);
    const dwNumeric = finiteDifference((ws) => loss(x, ws), w, wIndices);
    assertClose(`${label} dx`, xIndices.map((i) => result.dx[i]), dxNumeric, TOLERANCE);
    assertClose(`${label} dw`, wIndices.map((i) => result.dw[i]), dwNumeric, TOLERANCE);
  }
});

Deno.test("conv forward spills grid into y", async () => {
  // 1 x 4 tiles and workgroups of 1 need 65536 workgroups: one more than a dimension allows.
  const gpu = await testGpu();
  const kernels = await ConvKernels.create(gpu, { forward: { rows: 1, columns: 4, workgroup: 1 } });
  const shape = { n: 1, c: 1, h: 512, w: 512, k: 1, kernel: 1, stride: 1, pad: 0 };
  const data = randomArray(seededRandom(5), 512 * 512);
  const x = gpu.buffer(data.byteLength, "x", data);
  const w = gpu.buffer(4, "w", new Float32Array([-2]));
  const y = gpu.buffer(data.byteLength, "y");
  const plan = new Plan(gpu, "spill");
  kernels.forward(plan, { x, w, y }, shape);
  plan.submit();
  assertClose("y", await gpu.readF32(y), data.map((v) => -2 * v), { atol: 1e-6, rtol: 0 });
  plan.destroy();
  for (const buffer of [x, w, y]) gpu.release(buffer);
});

Deno.test("conv binds buffer ranges at offsets", async () => {
  const gpu = await testGpu();
  const kernels = await ConvKernels.create(gpu);
  const shape = SHAPES[0][1];
  const data = randomCase(shape, 6);
  // Storage binding offsets must be multiples of 256 bytes.
  const wOffset = 256 * Math.ceil(data.x.byteLength / 256);
  const inputs = gpu.buffer(wOffset + data.w.byteLength, "inputs");
  gpu.write(inputs, data.x);
  gpu.write(inputs, data.w, wOffset);
  const outputs = gpu.buffer(256 + data.dy.byteLength, "outputs");
  const plan = new Plan(gpu, "offsets");
  kernels.forward(plan, {
    x: { buffer: inputs, size: data.x.byteLength },
    w: { buffer: inputs, offset: wOffset },
    y: { buffer: outputs, offset: 256 },
  }, shape);
  plan.submit();
  const y = await gpu.readF32(outputs, data.dy.length, 64);
  assertClose("y", y, conv2dReference(data.x, data.w, shape), TOLERANCE);
  plan.destroy();
  gpu.release(inputs);
  gpu.release(outputs);
});

Deno.test("conv rejects invalid shapes and bindings", async () => {
  const gpu = await testGpu();
  const kernels = await ConvKernels.create(gpu);
  const good = SHAPES[0][1];
  assertThrows(() => convOutputSize({ ...good, h: 0 }), RangeError, "h must be a positive integer");
  assertThrows(() => convOutputSize({ ...good, stride: 1.5 }), RangeError, "stride must be");
  assertThrows(() => convOutputSize({ ...good, pad: -1 }), RangeError, "pad must be");
  assertThrows(
    () => convOutputSize({ ...good, h: 2, pad: 0, kernel: 3 }),
    RangeError,
    "output would be 0 x 5",
  );
  assertEquals(convOutputSize({ n: 1, c: 3, h: 32, w: 32, k: 64, kernel: 7, stride: 2, pad: 3 }), {
    h: 16,
    w: 16,
  });

  const small = gpu.buffer(16, "small");
  const plan = new Plan(gpu, "invalid");
  assertThrows(
    () => kernels.forward(plan, { x: small, w: small, y: small }, good),
    RangeError,
    "forward: x has 16 bytes but the shape needs 840",
  );
  const chunked = await ConvKernels.create(gpu, { chunkPixels: 7 });
  const sizes = randomCase(good, 7);
  const x = gpu.buffer(sizes.x.byteLength, "x");
  const dy = gpu.buffer(sizes.dy.byteLength, "dy");
  const dw = gpu.buffer(sizes.w.byteLength, "dw");
  assertThrows(
    () => chunked.backwardWeight(plan, { x, dy, dw }, good),
    RangeError,
    "needs a scratch binding",
  );
  assertThrows(
    () => kernels.backwardData(plan, { dy, w: dw, dx: dy }, good),
    RangeError,
    "dx and dy share one buffer",
  );
  await assertRejects(
    () => ConvKernels.create(gpu, { forward: { rows: 9, columns: 8, workgroup: 64 } }),
    RangeError,
    "rows",
  );
  await assertRejects(
    () => ConvKernels.create(gpu, { backwardData: { rows: 8, columns: 6, workgroup: 64 } }),
    RangeError,
    "columns",
  );
  await assertRejects(() => ConvKernels.create(gpu, { chunkPixels: 0 }), RangeError, "chunkPixels");
  plan.destroy();
  for (const buffer of [small, x, dy, dw]) gpu.release(buffer);
});
