// 2-D batch normalization over f32 NCHW tensors, with an optional fused ReLU.
//
// Training mode takes per-channel statistics over the N * H * W values of a
// channel. bn_stats computes them, with two passes over x for a stable
// variance, and updates the running statistics. bn_apply then normalizes.
// The backward also takes two dispatches. bn_backward_reduce forms the two
// per-channel sums that are dbeta and dgamma, and bn_backward_dx applies the
// closed-form dx.
//
// The per-channel kernels run one workgroup per channel (workgroup id x = c).
// Each workgroup's REDUCE_WG invocations walk the channel's N * H * W values, and a
// shared-memory tree adds their partial sums, so REDUCE_WG must be a power of
// two. Its default is larger than WG because only C workgroups exist.
// NOTE: C workgroups (64 in the ResNet stem) are too few to fill a large GPU.
// Splitting a channel over several workgroups would need a second pass.
// The elementwise kernels use a 3-D grid (x = pixel s of the H * W plane,
// y = channel c, z = image n, WG invocations along x), so that no invocation
// divides to find its channel.
//
// Bindings. S = H * W. x, y, dy and dx are [N][C][S] row-major, so element
// (n, c, s) is at (n * C + c) * S + s. Every other array is [C].
//   x:                   array<f32> [N][C][S], read        input of the forward
//   y:                   array<f32> [N][C][S], read_write  output of the forward
//   gamma, beta:         array<f32> [C], read              scale and shift
//   mean_out, invstd_out: array<f32> [C], read_write       batch mean and
//                        1 / sqrt(biased batch variance + eps), written by bn_stats
//   mean, invstd:        array<f32> [C], read              the same two, read back
//   running_mean, running_var: array<f32> [C], read_write  running statistics
//                        (unbiased variance), updated by bn_stats
//   running_mean_in, running_var_in: array<f32> [C], read  the same two, read by bn_eval
//   dy:                  array<f32> [N][C][S], read        gradient with respect to y
//   dx:                  array<f32> [N][C][S], read_write  gradient with respect to x
//   dgamma_out, dbeta_out: array<f32> [C], read_write      gradients of gamma and
//                        beta, overwritten by bn_backward_reduce
//   dgamma, dbeta:       array<f32> [C], read              the same two, read by bn_backward_dx
//
// With params.relu != 0 the forward writes max(z, 0) for z = gamma * xhat +
// beta, and the backward recomputes z from x to mask dy, which saves storing
// and reading a separate mask tensor.

struct Params {
  n: u32,
  c: u32,
  hw: u32,
  eps: f32,
  momentum: f32,
  relu: u32,
}

override WG: u32 = 64;
override REDUCE_WG: u32 = 256;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> invstd_out: array<f32>;
@group(0) @binding(7) var<storage, read> mean: array<f32>;
@group(0) @binding(8) var<storage, read> invstd: array<f32>;
@group(0) @binding(9) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(10) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(11) var<storage, read> running_mean_in: array<f32>;
@group(0) @binding(12) var<storage, read> running_var_in: array<f32>;
@group(0) @binding(13) var<storage, read> dy: array<f32>;
@group(0) @binding(14) var<storage, read_write> dx: array<f32>;
@group(0) @binding(15) var<storage, read_write> dgamma_out: array<f32>;
@group(0) @binding(16) var<storage, read_write> dbeta_out: array<f32>;
@group(0) @binding(17) var<storage, read> dgamma: array<f32>;
@group(0) @binding(18) var<storage, read> dbeta: array<f32>;

var<workgroup> partial: array<vec2f, REDUCE_WG>;

// Sums `partial` over the workgroup. Every invocation must call it because it
// contains barriers. The trailing barrier lets the caller refill `partial`.
fn workgroup_sum(lid: u32) -> vec2f {
  workgroupBarrier();
  for (var stride = REDUCE_WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}

// Walks element e = lid, lid + REDUCE_WG, ... of channel c's N * S values. The
// image index n and pixel s advance by the precomputed quotient and remainder
// of REDUCE_WG by S, which avoids an integer division per element.
struct ChannelCursor {
  n: u32,
  s: u32,
  step_n: u32,
  step_s: u32,
}

fn cursor_start(lid: u32) -> ChannelCursor {
  let hw = params.hw;
  return ChannelCursor(lid / hw, lid % hw, REDUCE_WG / hw, REDUCE_WG % hw);
}

fn cursor_address(cursor: ChannelCursor, c: u32) -> u32 {
  return (cursor.n * params.c + c) * params.hw + cursor.s;
}

fn cursor_advance(cursor: ptr<function, ChannelCursor>) {
  (*cursor).n += (*cursor).step_n;
  (*cursor).s += (*cursor).step_s;
  if ((*cursor).s >= params.hw) {
    (*cursor).s -= params.hw;
    (*cursor).n += 1u;
  }
}

@compute @workgroup_size(REDUCE_WG)
fn bn_stats(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let count = params.n * params.hw;

  var cursor = cursor_start(lid);
  var sum = 0.0;
  for (var e = lid; e < count; e += REDUCE_WG) {
    sum += x[cursor_address(cursor, c)];
    cursor_advance(&cursor);
  }
  partial[lid] = vec2f(sum, 0.0);
  let batch_mean = workgroup_sum(lid).x / f32(count);

  // Second pass over centred values: E[x^2] - E[x]^2 cancels badly in f32
  // when the mean is large compared with the spread.
  cursor = cursor_start(lid);
  var squares = 0.0;
  for (var e = lid; e < count; e += REDUCE_WG) {
    let d = x[cursor_address(cursor, c)] - batch_mean;
    squares += d * d;
    cursor_advance(&cursor);
  }
  partial[lid] = vec2f(squares, 0.0);
  let biased_var = workgroup_sum(lid).x / f32(count);

  if (lid == 0u) {
    mean_out[c] = batch_mean;
    invstd_out[c] = 1.0 / sqrt(biased_var + params.eps);
    // As in PyTorch, the running variance tracks the unbiased variance. The
    // host rejects count == 1, where it is undefined.
    let unbiased_var = biased_var * f32(count) / f32(count - 1u);
    let m = params.momentum;
    running_mean[c] = (1.0 - m) * running_mean[c] + m * batch_mean;
    running_var[c] = (1.0 - m) * running_var[c] + m * unbiased_var;
  }
}

@compute @workgroup_size(WG)
fn bn_apply(@builtin(global_invocation_id) gid: vec3u) {
  let s = gid.x;
  let c = gid.y;
  if (s >= params.hw) { return; }
  let i = (gid.z * params.c + c) * params.hw + s;
  let z = gamma[c] * (x[i] - mean[c]) * invstd[c] + beta[c];
  y[i] = select(z, max(z, 0.0), params.relu != 0u);
}

@compute @workgroup_size(WG)
fn bn_eval(@builtin(global_invocation_id) gid: vec3u) {
  let s = gid.x;
  let c = gid.y;
  if (s >= params.hw) { return; }
  let i = (gid.z * params.c + c) * params.hw + s;
  let scale = gamma[c] / sqrt(running_var_in[c] + params.eps);
  let z = (x[i] - running_mean_in[c]) * scale + beta[c];
  y[i] = select(z, max(z, 0.0), params.relu != 0u);
}

// Returns dy at element i, zeroed where the fused ReLU clipped the output.
fn masked_dy(i: u32, c: u32, xhat: f32) -> f32 {
  let g = dy[i];
  if (params.relu == 0u) { return g; }
  return select(0.0, g, gamma[c] * xhat + beta[c] > 0.0);
}

@compute @workgroup_size(REDUCE_WG)
fn bn_backward_reduce(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let count = params.n * params.hw;
  let m = mean[c];
  let r = invstd[c];

  var cursor = cursor_start(lid);
  var sums = vec2f(0.0);
  for (var e = lid; e < count; e += REDUCE_WG) {
    let i = cursor_address(cursor, c);
    let xhat = (x[i] - m) * r;
    let g = masked_dy(i, c, xhat);
    sums += vec2f(g, g * xhat);
    cursor_advance(&cursor);
  }
  partial[lid] = sums;
  let total = workgroup_sum(lid);

  if (lid == 0u) {
    dbeta_out[c] = total.x;
    dgamma_out[c] = total.y;
  }
}

// dx = gamma * invstd * (dy - dbeta / count - xhat * dgamma / count), the
// gradient through the batch mean and variance, with dy already masked.
@compute @workgroup_size(WG)
fn bn_backward_dx(@builtin(global_invocation_id) gid: vec3u) {
  let s = gid.x;
  let c = gid.y;
  if (s >= params.hw) { return; }
  let i = (gid.z * params.c + c) * params.hw + s;
  let count = f32(params.n * params.hw);
  let r = invstd[c];
  let xhat = (x[i] - mean[c]) * r;
  let g = masked_dy(i, c, xhat);
  dx[i] = gamma[c] * r * (g - dbeta[c] / count - xhat * dgamma[c] / count);
}
