// Throughput of the convolution kernels on the 3x3 layer shapes of a
// ResNet-18 fed 32x32 images at batch 32. Each shape is checked against
// sampled float64 reference values before it is timed. GFLOP/s counts
// 2 * N * K * OH * OW * C * KH * KW per pass (multiply and add), including
// the taps that fall on padding.
//
//   DENO_WEBGPU_BACKEND=vulkan deno bench -A bench/conv_bench.ts
//
// When the run ends it prints a table per pass and shape of GFLOP/s and of
// GFLOP per CPU-second of this process (all threads, llvmpipe's included).
// The second figure varies little when other processes compete for the cores.

import process from "node:process";
import { Gpu } from "../src/gpu/device.ts";
import { Plan } from "../src/gpu/kernel.ts";
import { ConvKernels, convOutputSize, type ConvShape } from "../src/train/conv.ts";

const BATCH = 32;
const LAYERS: [string, ConvShape][] = [
  ["64ch 32x32", { n: BATCH, c: 64, h: 32, w: 32, k: 64, kernel: 3, stride: 1, pad: 1 }],
  ["128ch 16x16", { n: BATCH, c: 128, h: 16, w: 16, k: 128, kernel: 3, stride: 1, pad: 1 }],
  ["256ch 8x8", { n: BATCH, c: 256, h: 8, w: 8, k: 256, kernel: 3, stride: 1, pad: 1 }],
  ["512ch 4x4", { n: BATCH, c: 512, h: 4, w: 4, k: 512, kernel: 3, stride: 1, pad: 1 }],
  ["64->128ch 32x32 /2", { n: BATCH, c: 64, h: 32, w: 32, k: 128, kernel: 3, stride: 2, pad: 1 }],
];
// Timed submits per case after one warm-up. A pass at batch 32 takes about
// half a second on a software adapter, so the ~11 ms wait for the GPU after
// each submit costs little.
const ITERATIONS = 3;
const SAMPLES = 48;
const TOLERANCE = { atol: 1e-4, rtol: 1e-4 };

const gpu = await Gpu.create({ notice: false });
const kernels = await ConvKernels.create(gpu);
const results: { pass: string; layer: string; gflops: number; gflopsPerCpu: number }[] = [];

for (const [layer, shape] of LAYERS) {
  const out = convOutputSize(shape);
  const flops = 2 * shape.n * shape.k * out.h * out.w * shape.c * shape.kernel * shape.kernel;
  const tensors = makeTensors(shape);
  const buffers = {
    x: gpu.buffer(tensors.x.byteLength, "x", tensors.x),
    w: gpu.buffer(tensors.w.byteLength, "w", tensors.w),
    dy: gpu.buffer(tensors.dy.byteLength, "dy", tensors.dy),
    y: gpu.buffer(tensors.dy.byteLength, "y"),
    dx: gpu.buffer(tensors.x.byteLength, "dx"),
    dw: gpu.buffer(tensors.w.byteLength, "dw"),
  };
  const scratchBytes = kernels.scratchBytes(shape);
  const scratch = scratchBytes > 0 ? gpu.buffer(scratchBytes, "scratch") : undefined;

  const passes: [string, (plan: Plan) => void, () => Promise<void>][] = [
    ["forward", (plan) => kernels.forward(plan, buffers, shape), async () => {
      const y = await gpu.readF32(buffers.y);
      checkSamples("y", y, (i) => referenceY(tensors, shape, i));
    }],
    ["backward_data", (plan) => kernels.backwardData(plan, buffers, shape), async () => {
      const dx = await gpu.readF32(buffers.dx);
      checkSamples("dx", dx, (i) => referenceDx(tensors, shape, i));
    }],
    [
      "backward_weight",
      (plan) => kernels.backwardWeight(plan, { ...buffers, scratch }, shape),
      async () => {
        const dw = await gpu.readF32(buffers.dw);
        checkSamples("dw", dw, (i) => referenceDw(tensors, shape, i));
      },
    ],
  ];

  for (const [pass, record, check] of passes) {
    const plan = new Plan(gpu, `${pass} ${layer}`);
    record(plan);
    plan.submit();
    await check();
    const result = { pass, layer, gflops: 0, gflopsPerCpu: 0 };
    results.push(result);
    Deno.bench({
      name: `${pass} ${layer}`,
      group: pass,
      n: ITERATIONS,
      warmup: 1,
      async fn(b) {
        b.start();
        const start = performance.now();
        const cpuStart = process.cpuUsage();
        plan.submit();
        await gpu.finish();
        const cpu = process.cpuUsage(cpuStart);
        const seconds = (performance.now() - start) / 1000;
        b.end();
        // The table keeps the fastest submit, the one least disturbed by other processes.
        result.gflops = Math.max(result.gflops, flops / seconds / 1e9);
        const cpuSeconds = (cpu.user + cpu.system) / 1e6;
        result.gflopsPerCpu = Math.max(result.gflopsPerCpu, flops / cpuSeconds / 1e9);
      },
    });
  }
}

globalThis.addEventListener("unload", () => {
  const layers = LAYERS.map(([name]) => name);
  const lines = [
    `${gpu.adapterName}, batch ${BATCH}, fastest submit out of ${ITERATIONS} and one warm-up`,
  ];
  const table = (title: string, value: (r: (typeof results)[number]) => number) => {
    lines.push("", [title.padEnd(24), ...layers.map((l) => l.padStart(19))].join(""));
    for (const pass of ["forward", "backward_data", "backward_weight"]) {
      const row = layers.map((layer) => {
        const result = results.find((r) => r.pass === pass && r.layer === layer)!;
        return value(result).toFixed(2).padStart(19);
      });
      lines.push([pass.padEnd(24), ...row].join(""));
    }
  };
  table("GFLOP/s", (r) => r.gflops);
  table("GFLOP per CPU-second", (r) => r.gflopsPerCpu);
  console.log(lines.join("\n"));
});

interface Tensors {
  x: Float32Array;
  w: Float32Array;
  dy: Float32Array;
}

function makeTensors(shape: ConvShape): Tensors {
  const out = convOutputSize(shape);
  let state = 12345;
  const fill = (count: number) => {
    const array = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      array[i] = state / 2 ** 31 - 1;
    }
    return array;
  };
  return {
    x: fill(shape.n * shape.c * shape.h * shape.w),
    w: fill(shape.k * shape.c * shape.kernel * shape.kernel),
    dy: fill(shape.n * shape.k * out.h * out.w),
  };
}

/** Compares SAMPLES evenly spread elements of `actual` with `expected(i)`. */
function checkSamples(name: string, actual: Float32Array, expected: (i: number) => number): void {
  for (let s = 0; s < SAMPLES; s++) {
    const i = Math.floor((s * (actual.length - 1)) / (SAMPLES - 1));
    const want = expected(i);
    if (!(Math.abs(actual[i] - want) <= TOLERANCE.atol + TOLERANCE.rtol * Math.abs(want))) {
      throw new Error(
        `${name}[${i}] is ${
          actual[i]
        }, expected ${want}. The kernel is wrong, so no timing is run.`,
      );
    }
  }
}

// Single elements of the float64 reference, written out per element because
// the full references take minutes at batch 32.

function referenceY({ x, w }: Tensors, shape: ConvShape, index: number): number {
  const out = convOutputSize(shape);
  const { c: channels, h, w: width, k: filters, kernel, stride, pad } = shape;
  const ox = index % out.w;
  const oy = Math.floor(index / out.w) % out.h;
  const k = Math.floor(index / (out.w * out.h)) % filters;
  const n = Math.floor(index / (out.w * out.h * filters));
  let sum = 0;
  for (let c = 0; c < channels; c++) {
    for (let ky = 0; ky < kernel; ky++) {
      for (let kx = 0; kx < kernel; kx++) {
        const iy = oy * stride - pad + ky;
        const ix = ox * stride - pad + kx;
        if (iy < 0 || iy >= h || ix < 0 || ix >= width) continue;
        sum += x[((n * channels + c) * h + iy) * width + ix] *
          w[((k * channels + c) * kernel + ky) * kernel + kx];
      }
    }
  }
  return sum;
}

function referenceDx({ w, dy }: Tensors, shape: ConvShape, index: number): number {
  const out = convOutputSize(shape);
  const { c: channels, h, w: width, k: filters, kernel, stride, pad } = shape;
  const ix = index % width;
  const iy = Math.floor(index / width) % h;
  const c = Math.floor(index / (width * h)) % channels;
  const n = Math.floor(index / (width * h * channels));
  let sum = 0;
  for (let k = 0; k < filters; k++) {
    for (let ky = 0; ky < kernel; ky++) {
      for (let kx = 0; kx < kernel; kx++) {
        const oyStride = iy + pad - ky;
        const oxStride = ix + pad - kx;
        if (oyStride % stride !== 0 || oxStride % stride !== 0) continue;
        const oy = oyStride / stride;
        const ox = oxStride / stride;
        if (oy < 0 || oy >= out.h || ox < 0 || ox >= out.w) continue;
        sum += dy[((n * filters + k) * out.h + oy) * out.w + ox] *
          w[((k * channels + c) * kernel + ky) * kernel + kx];
      }
    }
  }
  return sum;
}

function referenceDw({ x, dy }: Tensors, shape: ConvShape, index: number): number {
  const out = convOutputSize(shape);
  const { n: batch, c: channels, h, w: width, k: filters, kernel, stride, pad } = shape;
  const kx = index % kernel;
  const ky = Math.floor(index / kernel) % kernel;
  const c = Math.floor(index / (kernel * kernel)) % channels;
  const k = Math.floor(index / (kernel * kernel * channels));
  let sum = 0;
  for (let n = 0; n < batch; n++) {
    for (let oy = 0; oy < out.h; oy++) {
      for (let ox = 0; ox < out.w; ox++) {
        const iy = oy * stride - pad + ky;
        const ix = ox * stride - pad + kx;
        if (iy < 0 || iy >= h || ix < 0 || ix >= width) continue;
        sum += x[((n * channels + c) * h + iy) * width + ix] *
          dy[((n * filters + k) * out.h + oy) * out.w + ox];
      }
    }
  }
  return sum;
}
