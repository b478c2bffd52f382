// SIREN forward and backward through every layer, one invocation per pixel
// quad (4 consecutive pixels held as the lanes of a vec4f).
//
// Bindings (grid [P4 / 4, N]: gid.x walks the quad, workgroup_id.y is the
// image n, so every invocation of a workgroup reads the same weights):
//   params:      Params uniform (images N in the batch, image side R)
//   theta:       array<f32> [N][Q], read. Per image, layer by layer: W
//                [out][in] row-major, then b [out] (src/inr/siren.ts layout).
//   target_rgba: array<u32> [N][P], read. RGBA8 as unpack4x8unorm reads it
//                (R in the low byte), pixels row-major (y, then x).
//   act:         array<vec4f> [N][S*D][P4 / 4], read_write. Row l*D + j holds
//                A_l[j] = sin(w0 z_l[j]) of sine layer l.
//   delta:       array<vec4f> [N][S*D + 3][P4 / 4], read_write. Row l*D + j
//                holds dLoss/dz_l[j]; rows S*D .. S*D + 2 hold dLoss/dRGB.
//   sqerr:       array<vec4f> [N][P4 / 4], read_write. Squared error summed
//                over RGB.
//   rgb:         array<f32> [N][P][3], read_write. Output of `render` only.
// S = SINE_LAYERS, D = WIDTH, P4 = P rounded up to a multiple of 4. Pixels
// past P repeat the last pixel's coordinate and get zero loss gradient and
// zero squared error, so the reductions over P4 need no bounds checks.
//
// Four pixels per invocation reuse every weight load four times; each weight
// address is the same for the whole workgroup. The invocation keeps one
// vec4f accumulator per unit of a layer and rereads its own earlier stores
// for the layer inputs, which bounds the registers to about 4 D floats.
//
// forward_backward: forward pass storing A_l, and w0 cos(w0 z_l) in delta;
//   then the MSE gradient (MSE = sum(sqerr) / (3 P)); then the backward pass,
//   which overwrites each derivative factor in delta with dLoss/dz_l.
// render: forward pass only; writes RGB (not clamped).

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

// pi / 2 split in three for Cody-Waite range reduction. PI_2_HI has 8
// significant bits, so k * PI_2_HI is exact for |k| < 2^16.
const TWO_OVER_PI: f32 = 0.6366197723675814;
const PI_2_HI: f32 = 1.5703125;
const PI_2_MID: f32 = 4.838267923332751e-4;
const PI_2_LO: f32 = 2.5632829192545614e-12;
// Polynomials for sin and cos on [-pi/4, pi/4], least-squares fitted on
// Chebyshev nodes (max error 6e-8 and 9e-8 when evaluated in float32).
const SIN_1: f32 = -0.16666650772094727;
const SIN_2: f32 = 0.008331958204507828;
const SIN_3: f32 = -0.0001949349680216983;
const COS_1: f32 = 0.04166664555668831;
const COS_2: f32 = -0.0013887342065572739;
const COS_3: f32 = 2.4435852537862957e-05;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> theta: array<f32>;
@group(0) @binding(2) var<storage, read> target_rgba: array<u32>;
@group(0) @binding(3) var<storage, read_write> act: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> delta: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> sqerr: array<vec4f>;
@group(0) @binding(6) var<storage, read_write> rgb: array<f32>;

// One accumulator per unit of the current layer, 4 pixels each.
var<private> acc: array<vec4f, MAX_WIDTH>;

fn param_count() -> u32 {
  return 3u * WIDTH + (SINE_LAYERS - 1u) * (WIDTH * WIDTH + WIDTH) + 3u * WIDTH + 3u;
}

fn weight_offset(layer: u32) -> u32 {
  if (layer == 0u) { return 0u; }
  return 3u * WIDTH + (layer - 1u) * (WIDTH * WIDTH + WIDTH);
}

fn coordinates(index: vec4u, side: u32) -> vec4f {
  if (side == 1u) { return vec4f(0.0); }
  return vec4f(-1.0) + 2.0 * vec4f(index) / f32(side - 1u);
}

struct SinCos {
  sin: vec4f,
  cos: vec4f,
}

// sin(u) and cos(u), within 1e-7 for |u| < 1e3 (checked in float32 against
// float64). The built-ins are not used because Vulkan bounds their error only
// on [-pi, pi] and only to 2^-11, while w0 z reaches a few hundred; sharing
// one reduction also halves the cost on CPU adapters.
fn sin_cos(u: vec4f) -> SinCos {
  let k = round(u * TWO_OVER_PI);
  let r = fma(-k, vec4f(PI_2_LO), fma(-k, vec4f(PI_2_MID), fma(-k, vec4f(PI_2_HI), u)));
  let z = r * r;
  let s = fma(r * z, fma(z, fma(z, vec4f(SIN_3), vec4f(SIN_2)), vec4f(SIN_1)), r);
  let c = fma(z * z, fma(z, fma(z, vec4f(COS_3), vec4f(COS_2)), vec4f(COS_1)), fma(z, vec4f(-0.5), vec4f(1.0)));
  // u = k pi/2 + r: quadrant k mod 4 swaps and negates (two's complement & 3).
  let quadrant = vec4u(vec4i(k)) & vec4u(3u);
  let swap = (quadrant & vec4u(1u)) != vec4u(0u);
  let sin_negative = quadrant >= vec4u(2u);
  let cos_negative = ((quadrant + vec4u(1u)) & vec4u(2u)) != vec4u(0u);
  let sin_value = select(s, c, swap);
  let cos_value = select(c, s, swap);
  return SinCos(select(sin_value, -sin_value, sin_negative), select(cos_value, -cos_value, cos_negative));
}

// The pixels of one quad, clamped to the image, and their coordinates.
struct Quad {
  pixel: vec4u,
  valid: vec4<bool>,
  x: vec4f,
  y: vec4f,
}

fn load_quad(quad: u32, side: u32) -> Quad {
  let pixels = side * side;
  let raw = vec4u(4u * quad) + vec4u(0u, 1u, 2u, 3u);
  let pixel = min(raw, vec4u(pixels - 1u));
  return Quad(pixel, raw < vec4u(pixels), coordinates(pixel % side, side), coordinates(pixel / side, side));
}

// acc[o] = b[o] + W[o] . (x, y) for the first layer.
fn first_layer(base: u32, q: Quad) {
  let bias = base + 2u * WIDTH;
  for (var o = 0u; o < WIDTH; o++) {
    let w = base + 2u * o;
    acc[o] = fma(vec4f(theta[w]), q.x, fma(vec4f(theta[w + 1u]), q.y, vec4f(theta[bias + o])));
  }
}

// acc[o] = b[o] + sum_i W[o][i] X[i] with the inputs X read from `act` rows
// starting at `input_row` (this invocation's own stores).
fn hidden_layer(base: u32, layer: u32, outputs: u32, input_row: u32, quads: u32) {
  let w = base + weight_offset(layer);
  let bias = w + WIDTH * outputs;
  for (var o = 0u; o < outputs; o++) {
    acc[o] = vec4f(theta[bias + o]);
  }
  for (var i = 0u; i < WIDTH; i++) {
    let x = act[input_row + i * quads];
    for (var o = 0u; o < outputs; o++) {
      acc[o] = fma(vec4f(theta[w + o * WIDTH + i]), x, acc[o]);
    }
  }
}

@compute @workgroup_size(WG)
fn forward_backward(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(workgroup_id) wid: vec3u,
) {
  let side = params.side;
  let pixels = side * side;
  let quads = (pixels + 3u) / 4u;
  let quad = gid.x;
  let n = wid.y;
  if (quad >= quads || n >= params.images) { return; }

  let q = load_quad(quad, side);
  let base = n * param_count();
  let rows = SINE_LAYERS * WIDTH;
  // Index of row 0 of this image and quad; row r is r * quads further.
  let act0 = n * rows * quads + quad;
  let delta0 = n * (rows + 3u) * quads + quad;

  for (var l = 0u; l < SINE_LAYERS; l++) {
    if (l == 0u) {
      first_layer(base, q);
    } else {
      hidden_layer(base, l, WIDTH, act0 + (l - 1u) * WIDTH * quads, quads);
    }
    for (var j = 0u; j < WIDTH; j++) {
      let sc = sin_cos(W0 * acc[j]);
      let row = (l * WIDTH + j) * quads;
      act[act0 + row] = sc.sin;
      delta[delta0 + row] = W0 * sc.cos;
    }
  }
  hidden_layer(base, SINE_LAYERS, 3u, act0 + (SINE_LAYERS - 1u) * WIDTH * quads, quads);

  // MSE over 3 P values, so dLoss/dRGB = 2 (out - target) / (3 P), and 0 for
  // the padding pixels.
  var expected: array<vec4f, 3>;
  for (var k = 0u; k < 4u; k++) {
    let colour = unpack4x8unorm(target_rgba[n * pixels + q.pixel[k]]);
    expected[0][k] = colour.r;
    expected[1][k] = colour.g;
    expected[2][k] = colour.b;
  }
  let scale = select(vec4f(0.0), vec4f(2.0 / (3.0 * f32(pixels))), q.valid);
  var squared = vec4f(0.0);
  for (var c = 0u; c < 3u; c++) {
    let error = select(vec4f(0.0), acc[c] - expected[c], q.valid);
    squared = fma(error, error, squared);
    delta[delta0 + (rows + c) * quads] = error * scale;
  }
  sqerr[n * quads + quad] = squared;

  // dz_l = (W_{l+1}^T dz_{l+1}) * w0 cos(w0 z_l), with dz_{l+1} reread from delta.
  for (var back = 0u; back < SINE_LAYERS; back++) {
    let l = SINE_LAYERS - 1u - back;
    let outputs = select(WIDTH, 3u, l + 1u == SINE_LAYERS);
    let w = base + weight_offset(l + 1u);
    for (var i = 0u; i < WIDTH; i++) {
      acc[i] = vec4f(0.0);
    }
    for (var o = 0u; o < outputs; o++) {
      let g = delta[delta0 + ((l + 1u) * WIDTH + o) * quads];
      for (var i = 0u; i < WIDTH; i++) {
        acc[i] = fma(vec4f(theta[w + o * WIDTH + i]), g, acc[i]);
      }
    }
    for (var i = 0u; i < WIDTH; i++) {
      let index = delta0 + (l * WIDTH + i) * quads;
      delta[index] = acc[i] * delta[index];
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
  let quads = (pixels + 3u) / 4u;
  let quad = gid.x;
  let n = wid.y;
  if (quad >= quads || n >= params.images) { return; }

  let q = load_quad(quad, side);
  let base = n * param_count();
  // Keeps the previous layer's output here, since render has no act buffer.
  var h: array<vec4f, MAX_WIDTH>;
  first_layer(base, q);
  for (var l = 1u; l <= SINE_LAYERS; l++) {
    for (var j = 0u; j < WIDTH; j++) {
      h[j] = sin_cos(W0 * acc[j]).sin;
    }
    let outputs = select(WIDTH, 3u, l == SINE_LAYERS);
    let w = base + weight_offset(l);
    for (var o = 0u; o < outputs; o++) {
      var sum = vec4f(theta[w + WIDTH * outputs + o]);
      for (var i = 0u; i < WIDTH; i++) {
        sum = fma(vec4f(theta[w + o * WIDTH + i]), h[i], sum);
      }
      acc[o] = sum;
    }
  }
  for (var k = 0u; k < 4u; k++) {
    if (q.valid[k]) {
      let out = (n * pixels + q.pixel[k]) * 3u;
      rgb[out] = acc[0][k];
      rgb[out + 1u] = acc[1][k];
      rgb[out + 2u] = acc[2][k];
    }
  }
}
