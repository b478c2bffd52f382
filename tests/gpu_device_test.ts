import { assertEquals, assertRejects, assertThrows } from "@std/assert";
import { Gpu, GpuError } from "../src/gpu/device.ts";
import { testGpu } from "./_util.ts";

Deno.test("gpu create reports a missing adapter", async () => {
  const gpu = navigator.gpu;
  const original = gpu.requestAdapter;
  gpu.requestAdapter = () => Promise.resolve(null);
  try {
    await assertRejects(() => Gpu.create({ notice: false }), GpuError, "No GPU adapter found");
  } finally {
    gpu.requestAdapter = original;
  }
});

Deno.test("gpu buffer rejects bindings over the limit", async () => {
  const gpu = await testGpu();
  const max = gpu.device.limits.maxStorageBufferBindingSize;
  assertThrows(() => gpu.buffer(max + 4, "too big"), GpuError, "Use a smaller batch size");
});

Deno.test("gpu requests the adapter's limits, not the defaults", async () => {
  const gpu = await testGpu();
  const adapter = await navigator.gpu.requestAdapter();
  assertEquals(gpu.device.limits.maxStorageBufferBindingSize, adapter!.limits.maxStorageBufferBindingSize);
  assertEquals(gpu.device.limits.maxComputeWorkgroupStorageSize, adapter!.limits.maxComputeWorkgroupStorageSize);
});

Deno.test("gpu round trip write and read", async () => {
  const gpu = await testGpu();
  const buffer = gpu.buffer(12, "round trip", new Float32Array([1.5, -2, 3]));
  assertEquals([...await gpu.readF32(buffer)], [1.5, -2, 3]);
  gpu.release(buffer);
});
