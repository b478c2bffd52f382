import { assertEquals, assertRejects, assertThrows } from "@std/assert";
import { compileKernel, parseShaderInterface, Plan, workgroupCount } from "../src/gpu/kernel.ts";
import { GpuError } from "../src/gpu/device.ts";
import { assertClose, testGpu } from "./_util.ts";

Deno.test("parseShaderInterface reads bindings, params and overrides", () => {
  const shader = parseShaderInterface(`
    struct Params { n: u32, alpha: f32, k: i32 }
    override WG: u32 = 64u;
    @group(0) @binding(0) var<uniform> params: Params;
    @group(0) @binding(1) var<storage, read> x: array<f32>;
    // @group(0) @binding(9) var<storage, read> commented: array<f32>;
    @group(0) @binding(2) var<storage, read_write> y: array<f32>;`);
  assertEquals(shader.params, [{ name: "n", type: "u32" }, { name: "alpha", type: "f32" }, { name: "k", type: "i32" }]);
  assertEquals(shader.bindings.get("x"), { index: 1, kind: "read" });
  assertEquals(shader.bindings.get("y"), { index: 2, kind: "read_write" });
  assertEquals(shader.bindings.has("commented"), false);
  assertEquals(shader.overrides.get("WG"), 64);
});

Deno.test("plan axpy matches reference across workgroup spill", async () => {
  const gpu = await testGpu();
  const axpy = await compileKernel(gpu, {
    name: "util.axpy", file: "util.wgsl", entry: "axpy", bindings: ["params", "x", "y"], workgroup: ["WG"],
    overrides: { WG: 1 },
  });
  const n = 70000; // more than 65535 workgroups of 1, so the grid spills into y
  const x = new Float32Array(n).map((_, i) => i % 97);
  const y = new Float32Array(n).map((_, i) => -(i % 13));
  const xb = gpu.buffer(n * 4, "x", x);
  const yb = gpu.buffer(n * 4, "y", y);
  const plan = new Plan(gpu, "axpy");
  plan.add(axpy, { x: xb, y: yb }, { n, alpha: 0.5 }, n);
  plan.submit(2);
  const expected = y.map((v, i) => v + 2 * 0.5 * x[i]);
  assertClose("y", await gpu.readF32(yb), expected, { atol: 1e-6, rtol: 0 });
  plan.destroy();
  gpu.release(xb);
  gpu.release(yb);
});

Deno.test("kernel errors name the kernel", async () => {
  const gpu = await testGpu();
  await assertRejects(
    () => compileKernel(gpu, { name: "util.bad", file: "util.wgsl", entry: "axpy", bindings: ["params", "nope"], workgroup: ["WG"] }),
    GpuError,
    'util.bad: binding "nope"',
  );
  await assertRejects(
    () => compileKernel(gpu, { name: "util.missing", file: "util.wgsl", entry: "no_such_entry", bindings: ["params"], workgroup: ["WG"] }),
    GpuError,
    "util.missing",
  );
  const fill = await compileKernel(gpu, { name: "util.fill", file: "util.wgsl", entry: "fill", bindings: ["params", "y"], workgroup: ["WG"] });
  assertThrows(() => fill.packParams({ n: 1 }), GpuError, '"alpha" is missing');
  assertThrows(() => fill.packParams({ n: 1, alpha: 0, beta: 2 }), GpuError, 'unknown parameter "beta"');
  assertEquals(workgroupCount(fill, 130), [3, 1, 1]);
});
