// Elementwise ops of the ResNet: ReLU, the residual add, gradient fan-out,
// copy and fill. Every entry is 1-D over E = params.n elements of a tensor of
// any shape, one invocation per element i.
//
// Bindings. Each entry uses the subset it names, and all arrays are flat [E]:
//   x:          array<f32> [E], read        input
//   b:          array<f32> [E], read        second addend of `add`
//   y:          array<f32> [E], read_write  output (or the tensor changed in place)
//   activation: array<f32> [E], read        output of the forward ReLU, used as its mask
//   dy:         array<f32> [E], read        gradient of the loss with respect to y
//   dx:         array<f32> [E], read_write  gradient with respect to x
//
// A buffer bound read-only and read_write in one dispatch is a WebGPU usage
// conflict, so the in-place variants bind the changed tensor once, read_write.
//
// relu_forward:          y = max(x, 0)
// relu_inplace:          y = max(y, 0)
// relu_backward:         dx = activation > 0 ? dy : 0
// relu_backward_inplace: dx = activation > 0 ? dx : 0
// add:                   y = x + b, then max(y, 0) when params.relu != 0
// add_into:              y = y + x, then max(y, 0) when params.relu != 0
// copy:                  y = x
// fill:                  y = params.value

struct Params {
  n: u32,
  value: f32,
  relu: u32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> activation: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

fn rectify(v: f32) -> f32 {
  return select(v, max(v, 0.0), params.relu != 0u);
}

@compute @workgroup_size(WG)
fn relu_forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  y[i] = max(x[i], 0.0);
}

@compute @workgroup_size(WG)
fn relu_inplace(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  y[i] = max(y[i], 0.0);
}

// The mask reads the forward output, not its input: y > 0 exactly when x > 0,
// and the output also exists after the in-place and fused forms.
@compute @workgroup_size(WG)
fn relu_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  dx[i] = select(0.0, dy[i], activation[i] > 0.0);
}

@compute @workgroup_size(WG)
fn relu_backward_inplace(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  dx[i] = select(0.0, dx[i], activation[i] > 0.0);
}

@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  y[i] = rectify(x[i] + b[i]);
}

@compute @workgroup_size(WG)
fn add_into(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  y[i] = rectify(y[i] + x[i]);
}

@compute @workgroup_size(WG)
fn copy(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  y[i] = x[i];
}

@compute @workgroup_size(WG)
fn fill(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  y[i] = params.value;
}
