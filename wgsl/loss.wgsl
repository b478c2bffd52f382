// Softmax cross-entropy on logits, its gradient, and the loss and accuracy
// counters that training accumulates on the GPU so the host reads them only
// every few steps.
//
// Bindings (all row-major):
//   logits:      array<f32> [N][M], read        classifier output
//   labels:      array<u32> [N], read           class index of each sample
//   dlogits:     array<f32> [N][M], read_write  gradient of the batch mean loss (overwritten)
//   sample_loss: array<f32> [N], read_write     loss of each sample (overwritten)
//   sample_loss_in: array<f32> [N], read        the same, read by loss_reduce
//   counters:    LossCounters, read_write       running totals, only ever added to
//   stats:       LossStats, read_write          the same 20 bytes, bound without atomics
//
// cross_entropy and cross_entropy_eval run one workgroup per sample
// (workgroup id x = n). Its WG invocations stride over the M logits and
// combine through shared memory, so WG must be a power of two. loss_reduce is
// a single workgroup striding over the N samples.
//
// A label >= M is counted in invalid_labels and contributes loss 0 and the
// plain softmax to dlogits, so the host can reject the batch after reading
// the counters instead of training on memory outside the row.

struct Params {
  n: u32,
  m: u32,
}

// Both structs describe the same 20-byte buffer. The per-sample kernels add
// to the counters with atomics, and loss_reduce updates it from one
// invocation. loss_sum adds one batch mean loss per training step.
struct LossCounters {
  loss_sum: f32,
  correct: atomic<u32>,
  samples: atomic<u32>,
  steps: atomic<u32>,
  invalid_labels: atomic<u32>,
}

struct LossStats {
  loss_sum: f32,
  correct: u32,
  samples: u32,
  steps: u32,
  invalid_labels: u32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> sample_loss: array<f32>;
@group(0) @binding(5) var<storage, read> sample_loss_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> counters: LossCounters;
@group(0) @binding(7) var<storage, read_write> stats: LossStats;

var<workgroup> shared_value: array<f32, WG>;
var<workgroup> shared_index: array<u32, WG>;

// Returns the maximum logit of the row starting at `row` and its first index.
// Every invocation of the workgroup must call it because it contains barriers.
fn row_argmax(row: u32, lid: u32) -> vec2u {
  var best = -3.4028235e38;
  var best_index = 0xffffffffu;
  for (var m = lid; m < params.m; m += WG) {
    let v = logits[row + m];
    if (best_index == 0xffffffffu || v > best) {
      best = v;
      best_index = m;
    }
  }
  shared_value[lid] = best;
  shared_index[lid] = best_index;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) {
      let other_value = shared_value[lid + stride];
      let other_index = shared_index[lid + stride];
      let mine = shared_index[lid];
      // Invocations with no logit keep index 0xffffffff and lose every tie.
      let better = other_index != 0xffffffffu &&
        (mine == 0xffffffffu || other_value > shared_value[lid] ||
         (other_value == shared_value[lid] && other_index < mine));
      if (better) {
        shared_value[lid] = other_value;
        shared_index[lid] = other_index;
      }
    }
    workgroupBarrier();
  }
  let result = vec2u(bitcast<u32>(shared_value[0]), shared_index[0]);
  workgroupBarrier();
  return result;
}

fn workgroup_sum(value: f32, lid: u32) -> f32 {
  shared_value[lid] = value;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) {
      shared_value[lid] += shared_value[lid + stride];
    }
    workgroupBarrier();
  }
  let total = shared_value[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(WG)
fn cross_entropy(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n = wid.x;
  let row = n * params.m;
  let label = labels[n];

  let best = row_argmax(row, lid);
  let max_logit = bitcast<f32>(best.x);

  // Subtracting the maximum keeps every exp() in [0, 1].
  var local_sum = 0.0;
  for (var m = lid; m < params.m; m += WG) {
    local_sum += exp(logits[row + m] - max_logit);
  }
  let sum = workgroup_sum(local_sum, lid);

  let scale = 1.0 / (sum * f32(params.n));
  for (var m = lid; m < params.m; m += WG) {
    let p = exp(logits[row + m] - max_logit);
    dlogits[row + m] = p * scale - select(0.0, 1.0 / f32(params.n), m == label);
  }

  if (lid == 0u) {
    if (label < params.m) {
      sample_loss[n] = log(sum) + max_logit - logits[row + label];
    } else {
      sample_loss[n] = 0.0;
      atomicAdd(&counters.invalid_labels, 1u);
    }
    if (best.y == label) {
      atomicAdd(&counters.correct, 1u);
    }
  }
}

@compute @workgroup_size(WG)
fn cross_entropy_eval(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n = wid.x;
  let best = row_argmax(n * params.m, lid);
  if (lid == 0u) {
    let label = labels[n];
    if (best.y == label) {
      atomicAdd(&counters.correct, 1u);
    }
    if (label >= params.m) {
      atomicAdd(&counters.invalid_labels, 1u);
    }
    atomicAdd(&counters.samples, 1u);
    if (n == 0u) {
      atomicAdd(&counters.steps, 1u);
    }
  }
}

// Adds the batch mean loss to stats.loss_sum and counts the step and its
// samples. cross_entropy has already counted the correct predictions.
@compute @workgroup_size(WG)
fn loss_reduce(@builtin(local_invocation_index) lid: u32) {
  var local_sum = 0.0;
  for (var i = lid; i < params.n; i += WG) {
    local_sum += sample_loss_in[i];
  }
  let total = workgroup_sum(local_sum, lid);
  if (lid == 0u) {
    stats.loss_sum += total / f32(params.n);
    stats.samples += params.n;
    stats.steps += 1u;
  }
}
