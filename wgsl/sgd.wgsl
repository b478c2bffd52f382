// SGD with momentum and weight decay over one flat parameter buffer, in the
// PyTorch convention (dampening 0, no Nesterov):
//   g = grad + weight_decay * w   (only where the decay bit is set)
//   v = momentum * v + g
//   w = w - lr * v
// With v starting at zero, the first step gives v = g, as PyTorch does.
//
// Bindings. E = params.n parameters, with one invocation per parameter i (1-D):
//   weights:    array<f32> [E], read_write  parameters, updated in place
//   grads:      array<f32> [E], read        gradients of the loss
//   velocity:   array<f32> [E], read_write  momentum buffers, updated in place
//   decay_mask: array<u32> [ceil(E / 32)], read  bit i % 32 of word i / 32 set
//               means parameter i gets weight decay
//
// A bit mask costs one read per 32 parameters and lets any layout of
// decayed (conv and linear weights) and undecayed parameters (batch-norm
// scales and shifts, biases) share one dispatch. The learning rate sits in
// Params so that a schedule rewrites a few uniform bytes per step.

struct Params {
  n: u32,
  lr: f32,
  momentum: f32,
  weight_decay: f32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> weights: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> velocity: array<f32>;
@group(0) @binding(4) var<storage, read> decay_mask: array<u32>;

@compute @workgroup_size(WG)
fn sgd_step(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n) { return; }
  let w = weights[i];
  let decays = (decay_mask[i / 32u] >> (i % 32u)) & 1u;
  let g = grads[i] + select(0.0, params.weight_decay * w, decays != 0u);
  let v = params.momentum * velocity[i] + g;
  velocity[i] = v;
  weights[i] = w - params.lr * v;
}
