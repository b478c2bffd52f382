// Fully connected layer y = x W^T + b, the ResNet classifier head. C is the
// number of input features (the channels of the pooled feature map).
//
// Bindings (all row-major):
//   x:      array<f32> [N][C], read        input
//   weight: array<f32> [M][C], read        weights
//   bias:   array<f32> [M], read           biases
//   y:      array<f32> [N][M], read_write  output
//   dy:     array<f32> [N][M], read        gradient with respect to y
//   dx:     array<f32> [N][C], read_write  gradient with respect to x (overwritten)
//   dweight: array<f32> [M][C], read_write gradient with respect to weight (overwritten)
//   dbias:  array<f32> [M], read_write     gradient with respect to bias (overwritten)
//
// Every entry is 1-D with one output element per invocation and a dot
// product of length C, M or N inside. The head is a fraction of a percent of
// the ResNet's FLOPs, so it keeps the simplest layout instead of a tiled one.
//   linear_forward:         i = n * M + m
//   linear_backward_input:  i = n * C + c
//   linear_backward_params: i = m * (C + 1) + k. k < C writes dweight[m][k]
//                           and k == C writes dbias[m], so one dispatch does both.

struct Params {
  n: u32,
  c: u32,
  m: u32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(8) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(WG)
fn linear_forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n * params.m) { return; }
  let n = i / params.m;
  let m = i - n * params.m;
  let x_row = n * params.c;
  let w_row = m * params.c;
  var sum = bias[m];
  for (var k = 0u; k < params.c; k++) {
    sum += x[x_row + k] * weight[w_row + k];
  }
  y[i] = sum;
}

@compute @workgroup_size(WG)
fn linear_backward_input(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n * params.c) { return; }
  let n = i / params.c;
  let k = i - n * params.c;
  var sum = 0.0;
  for (var m = 0u; m < params.m; m++) {
    sum += dy[n * params.m + m] * weight[m * params.c + k];
  }
  dx[i] = sum;
}

@compute @workgroup_size(WG)
fn linear_backward_params(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  let row = params.c + 1u;
  if (i >= params.m * row) { return; }
  let m = i / row;
  let k = i - m * row;
  var sum = 0.0;
  if (k < params.c) {
    for (var n = 0u; n < params.n; n++) {
      sum += dy[n * params.m + m] * x[n * params.c + k];
    }
    dweight[m * params.c + k] = sum;
  } else {
    for (var n = 0u; n < params.n; n++) {
      sum += dy[n * params.m + m];
    }
    dbias[m] = sum;
  }
}
