// SIREN forward and backward through every layer, one invocation per pixel.
//
// Bindings (grid [P, N]: gid.x walks the pixel p, workgroup_id.y is the image
// n, so every invocation of a workgroup reads the same image's weights):
//   params: Params uniform (images N in the batch, image side R)
//   theta:  array<f32> [N][Q], read. Per image, layer by layer: W [out][in]
//           row-major, then b [out] (the layout of src/inr/siren.ts).
//   target_rgba: array<u32> [N][P], read. RGBA8 packed by unpack4x8unorm (R in
//           the low byte), pixels row-major (y, then x); alpha is ignored.
//   act:    array<f32> [N][S*D][P], read_write. Row l*D + j holds the output
//           A_l[j] = sin(w0 z_l[j]) of sine layer l.
//   delta:  array<f32> [N][S*D + 3][P], read_write. Row l*D + j holds
//           dLoss/dz_l[j] of sine layer l; rows S*D .. S*D + 2 hold the
//           gradient of the linear output layer's RGB.
//   sqerr:  array<f32> [N][P], read_write. Squared error summed over RGB.
//   rgb:    array<f32> [N][P][3], read_write. Output of `render` only.
// S = SINE_LAYERS, D = WIDTH. Pixel planes are P-contiguous so that
// neighbouring invocations touch neighbouring addresses.
//
// forward_backward: forward pass storing A_l and w0 cos(w0 z_l) in delta,
//   the loss MSE = sum(sqerr) / (3 P), then backward in the same invocation,
//   overwriting each stored derivative factor with dLoss/dz_l.
// render: forward pass only, writes RGB (not clamped).

struct Params {
  images: u32,
  side: u32,
}

override WG: u32 = 64;
override SINE_LAYERS: u32 = 3;
override WIDTH: u32 = 8;
override W0: f32 = 30.0;

// Function-scope arrays need a constant size in WGSL, so the width limit is a
// const. src/inr/siren_batch.ts rejects wider architectures before compiling.
const MAX_WIDTH: u32 = 64u;

// 2 pi split for Cody-Waite range reduction: TWO_PI_HI has few mantissa bits,
// so k * TWO_PI_HI is exact for the |k| < 2^15 that occur here.
const INV_TWO_PI: f32 = 0.15915494309189535;
const TWO_PI_HI: f32 = 6.28125;
const TWO_PI_LO: f32 = 0.0019353071795864769;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> theta: array<f32>;
@group(0) @binding(2) var<storage, read> target_rgba: array<u32>;
@group(0) @binding(3) var<storage, read_write> act: array<f32>;
@group(0) @binding(4) var<storage, read_write> delta: array<f32>;
@group(0) @binding(5) var<storage, read_write> sqerr: array<f32>;
@group(0) @binding(6) var<storage, read_write> rgb: array<f32>;

// Input of the current layer, then the gradient flowing back.
var<private> h: array<f32, MAX_WIDTH>;
// Pre-activation of the current layer, then the next gradient.
var<private> z: array<f32, MAX_WIDTH>;

fn param_count() -> u32 {
  return 3u * WIDTH + (SINE_LAYERS - 1u) * (WIDTH * WIDTH + WIDTH) + 3u * WIDTH + 3u;
}

fn weight_offset(layer: u32) -> u32 {
  if (layer == 0u) { return 0u; }
  return 3u * WIDTH + (layer - 1u) * (WIDTH * WIDTH + WIDTH);
}

fn coordinate(index: u32, side: u32) -> f32 {
  if (side == 1u) { return 0.0; }
  return -1.0 + 2.0 * f32(index) / f32(side - 1u);
}

// z = W h + b for one layer of image parameters starting at `base`.
fn affine(base: u32, layer: u32, outputs: u32) {
  let inputs = select(WIDTH, 2u, layer == 0u);
  let w = base + weight_offset(layer);
  let b = w + inputs * outputs;
  for (var o = 0u; o < outputs; o++) {
    var acc = theta[b + o];
    let row = w + o * inputs;
    for (var i = 0u; i < inputs; i++) {
      acc = fma(theta[row + i], h[i], acc);
    }
    z[o] = acc;
  }
}

// Reduces u to [-pi, pi]. Vulkan bounds the error of sin and cos only on
// that range, and w0 z reaches a few hundred.
fn reduce_angle(u: f32) -> f32 {
  let k = round(u * INV_TWO_PI);
  return fma(-k, TWO_PI_LO, fma(-k, TWO_PI_HI, u));
}

fn load_coordinates(p: u32, side: u32) {
  h[0] = coordinate(p % side, side);
  h[1] = coordinate(p / side, side);
}

@compute @workgroup_size(WG)
fn forward_backward(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(workgroup_id) wid: vec3u,
) {
  let side = params.side;
  let pixels = side * side;
  let p = gid.x;
  let n = wid.y;
  if (p >= pixels || n >= params.images) { return; }

  let base = n * param_count();
  let rows = SINE_LAYERS * WIDTH;
  let act_image = n * rows * pixels + p;
  let delta_image = n * (rows + 3u) * pixels + p;

  load_coordinates(p, side);
  for (var l = 0u; l < SINE_LAYERS; l++) {
    affine(base, l, WIDTH);
    for (var j = 0u; j < WIDTH; j++) {
      let angle = reduce_angle(W0 * z[j]);
      let a = sin(angle);
      let index = (l * WIDTH + j) * pixels;
      act[act_image + index] = a;
      delta[delta_image + index] = W0 * cos(angle);
      h[j] = a;
    }
  }
  affine(base, SINE_LAYERS, 3u);

  // MSE over 3 P values, so dLoss/dout = 2 (out - target_rgba) / (3 P).
  let expected = unpack4x8unorm(target_rgba[n * pixels + p]).rgb;
  let error = vec3f(z[0], z[1], z[2]) - expected;
  sqerr[n * pixels + p] = dot(error, error);
  let scale = 2.0 / (3.0 * f32(pixels));
  for (var c = 0u; c < 3u; c++) {
    let g = error[c] * scale;
    delta[delta_image + (rows + c) * pixels] = g;
    h[c] = g;
  }

  // h holds dLoss/dz of layer l + 1; dz_l = (W_{l+1}^T h) * w0 cos(w0 z_l).
  for (var back = 0u; back < SINE_LAYERS; back++) {
    let l = SINE_LAYERS - 1u - back;
    let outputs = select(WIDTH, 3u, l + 1u == SINE_LAYERS);
    let w = base + weight_offset(l + 1u);
    for (var i = 0u; i < WIDTH; i++) {
      var acc = 0.0;
      for (var o = 0u; o < outputs; o++) {
        acc = fma(theta[w + o * WIDTH + i], h[o], acc);
      }
      let index = delta_image + (l * WIDTH + i) * pixels;
      let dz = acc * delta[index];
      delta[index] = dz;
      z[i] = dz;
    }
    for (var i = 0u; i < WIDTH; i++) {
      h[i] = z[i];
    }
  }
}

@compute @workgroup_size(WG)
fn render(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(workgroup_id) wid: vec3u,
) {
  let side = params.side;
  let pixels = side * side;
  let p = gid.x;
  let n = wid.y;
  if (p >= pixels || n >= params.images) { return; }

  let base = n * param_count();
  load_coordinates(p, side);
  for (var l = 0u; l < SINE_LAYERS; l++) {
    affine(base, l, WIDTH);
    for (var j = 0u; j < WIDTH; j++) {
      h[j] = sin(reduce_angle(W0 * z[j]));
    }
  }
  affine(base, SINE_LAYERS, 3u);
  let out = (n * pixels + p) * 3u;
  rgb[out] = z[0];
  rgb[out + 1u] = z[1];
  rgb[out + 2u] = z[2];
}
