// Per-iteration bookkeeping of batched SIREN fitting: PSNR and best weights,
// the Adam update, and the step counter.
//
// Bindings:
//   params:     Params uniform
//   sqerr:      array<vec4f> [N][P4 / 4], read. Squared error per pixel, summed
//               over RGB, 4 pixels per element; zero for padding pixels past P.
//   score:      array<f32> [N][2], read_write. (PSNR of the latest forward pass,
//               best PSNR so far) in dB.
//   theta:      array<f32> [N][Q], read_write. Current weights.
//   best_theta: array<f32> [N][Q], read_write. Weights of the best PSNR.
//   grad_part:  array<f32> [N][chunks][Q], read. Gradient partials per pixel
//               chunk (see wgsl/siren_grad.wgsl).
//   moment1:    array<f32> [N][Q], read_write. Adam first moment m.
//   moment2:    array<f32> [N][Q], read_write. Adam second moment v.
//   schedule:   array<vec2f> [T], read. Per step t: (lr_t / (1 - beta1^(t+1)),
//               1 / sqrt(1 - beta2^(t+1))), computed in float64 on the CPU.
//   counter:    array<u32> [1], read_write. Adam steps taken.
//
// score:   one workgroup per image (workgroup_id.y = n); the invocations walk
//          the pixel quads with stride WG, then the weights when the PSNR
//          improved.
// adam:    one invocation per (n, q), 1-D over N * Q.
// advance: one invocation.
// The step lives on the GPU so that many iterations replay in one submit.

struct Params {
  images: u32,
  pixels: u32,
  param_count: u32,
  chunks: u32,
  steps: u32,
  beta1: f32,
  beta2: f32,
  epsilon: f32,
}

override WG: u32 = 64;

// -10 log10(mse) = LOG2_TO_DB * log2(mse) with LOG2_TO_DB = -10 / log2(10).
const LOG2_TO_DB: f32 = -3.0102999566398120;
// Keeps log2 finite for a perfect fit; caps the PSNR near 300 dB.
const MIN_MSE: f32 = 1e-30;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> sqerr: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> score: array<f32>;
@group(0) @binding(3) var<storage, read_write> theta: array<f32>;
@group(0) @binding(4) var<storage, read_write> best_theta: array<f32>;
@group(0) @binding(5) var<storage, read> grad_part: array<f32>;
@group(0) @binding(6) var<storage, read_write> moment1: array<f32>;
@group(0) @binding(7) var<storage, read_write> moment2: array<f32>;
@group(0) @binding(8) var<storage, read> schedule: array<vec2f>;
@group(0) @binding(9) var<storage, read_write> counter: array<u32>;

var<workgroup> partial: array<f32, WG>;
var<workgroup> improved: u32;

// Must run after the forward pass and before `adam`, so that the PSNR belongs
// to the weights that are copied.
@compute @workgroup_size(WG)
fn score_best(
  @builtin(local_invocation_index) lane: u32,
  @builtin(workgroup_id) wid: vec3u,
) {
  let n = wid.y;
  if (n >= params.images) { return; }
  let pixels = params.pixels;
  let quads = (pixels + 3u) / 4u;

  var sum = 0.0;
  for (var quad = lane; quad < quads; quad += WG) {
    sum += dot(sqerr[n * quads + quad], vec4f(1.0));
  }
  partial[lane] = sum;
  workgroupBarrier();

  if (lane == 0u) {
    var total = 0.0;
    for (var j = 0u; j < WG; j++) {
      total += partial[j];
    }
    let mse = max(total / (3.0 * f32(pixels)), MIN_MSE);
    let psnr = LOG2_TO_DB * log2(mse);
    score[2u * n] = psnr;
    // Strictly greater, so ties keep the earlier weights.
    let better = psnr > score[2u * n + 1u];
    if (better) {
      score[2u * n + 1u] = psnr;
    }
    improved = select(0u, 1u, better);
  }
  if (workgroupUniformLoad(&improved) == 0u) { return; }

  let q_count = params.param_count;
  for (var q = lane; q < q_count; q += WG) {
    best_theta[n * q_count + q] = theta[n * q_count + q];
  }
}

// Adam as PyTorch 1.13 implements it (no weight decay, no AMSGrad):
// theta -= lr_t / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
@compute @workgroup_size(WG)
fn adam(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  let q_count = params.param_count;
  if (i >= params.images * q_count) { return; }
  let n = i / q_count;
  let q = i % q_count;

  var g = 0.0;
  for (var c = 0u; c < params.chunks; c++) {
    g += grad_part[(n * params.chunks + c) * q_count + q];
  }
  let m = params.beta1 * moment1[i] + (1.0 - params.beta1) * g;
  let v = params.beta2 * moment2[i] + (1.0 - params.beta2) * g * g;
  moment1[i] = m;
  moment2[i] = v;
  let factors = schedule[min(counter[0], params.steps - 1u)];
  theta[i] -= factors.x * m / (sqrt(v) * factors.y + params.epsilon);
}

@compute @workgroup_size(1)
fn advance() {
  counter[0] += 1u;
}
