// Minimal kernels that tests/gpu_kernel_test.ts uses to exercise the kernel
// runtime (interface parsing, plans, workgroup spill); no stage dispatches them.
//
// Bindings (1-D, one invocation per element i of N):
//   x: array<f32> [N], read
//   y: array<f32> [N], read_write
// fill:  y[i] = alpha
// axpy:  y[i] = alpha * x[i] + y[i]

struct Params {
  n: u32,
  alpha: f32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  y[i] = params.alpha;
}

@compute @workgroup_size(WG)
fn axpy(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  y[i] = params.alpha * x[i] + y[i];
}
