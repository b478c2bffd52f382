// Decoding SIREN INRs to pixels from the packed quantized weights resident on the GPU.
//
// Bindings:
//   params:     uniform Params
//   codes:      array<u32>   [N][params.words], read. Packed codes, layout below.
//   ranges:     array<vec2f> [N][L], read. (scale, offset) of each layer of each image.
//   layers:     array<vec2u> [L], read. Per layer: first word inside an image's codes, and the
//               bit width (1..16, or 32 for raw f32).
//   indices:    array<u32>   [*], read. Image order, e.g. one epoch's permutation. Sample j of
//               the batch is image indices[params.first + j], or image params.first + j when
//               params.direct is 1. Values must be < N.
//   labels:     array<u32>   [N], read. Class index per image.
//   weights:    array<vec4f> [B][vec4_count()], read_write. The batch's dequantized weights in
//               the padded layout below, written by `unpack`, read by the decode entries.
//   output:     array<f32>   [B][3][S][S] (NCHW), read_write. Normalized RGB for training.
//   labels_out: array<u32>   [B], read_write. Label of each sample's image.
//   pixels:     array<u32>   [B][S][S], read_write. RGBA8 per pixel, red in the lowest byte.
//
// Packed codes (the same layout as src/inr/quantize.ts): layer l of image n starts at word
// n * params.words + layers[l].x. Its values, W [out][in] row-major then b [out], form one bit
// stream in which value k occupies stream bits k*b .. k*b + b - 1, lowest bit first. Stream
// bit i is bit (i % 32) of the layer's word i / 32, so a code may straddle two words. The value
// is offset + code * scale. A layer with b = 32 stores raw f32 bit patterns instead.
//
// A batch takes two dispatches. `unpack` dequantizes each sample's weights once, with one
// invocation per vec4 of [B][vec4_count()]. A decode entry then runs one invocation per output
// pixel. Each workgroup covers WG consecutive pixels (row-major, y then x) of one sample, so all
// its invocations read the same weights; with CACHED it first copies them to workgroup memory.
//
// Coordinates: output pixel (x, y) of an S x S image, after augmentation, maps to the INR input
// (x * coord_scale + coord_bias, y * coord_scale + coord_bias). The host sets these so that the
// S grid spans the encoded R grid with pixel centres aligned, as image resizing does. When
// S = R, pixel i maps to -1 + 2 i / (R - 1), the coordinate it was fitted at.
//
// Augmentation (decode_batch only): a random crop with `pad` pixels of zero padding and a random
// horizontal flip, both drawn from a hash of (seed, step, j). Output pixel (x, y) reads pixel
// (x' + dx - pad, y + dy - pad) of the S x S image, where x' = S - 1 - x when flipped, else x,
// and dx, dy are uniform in [0, 2 pad]. Pixels outside the image are 0 before normalization.

struct Params {
  batch: u32,
  first: u32,
  direct: u32,
  words: u32,
  size: u32,
  pad: u32,
  flip: u32,
  seed: u32,
  step: u32,
  w0: f32,
  coord_scale: f32,
  coord_bias: f32,
  mean_r: f32,
  mean_g: f32,
  mean_b: f32,
  inv_std_r: f32,
  inv_std_g: f32,
  inv_std_b: f32,
}

override WG: u32 = 64;
// SIREN shape as overrides, so that drivers compile the loops with constant bounds.
override SINE_LAYERS: u32 = 5;
override WIDTH: u32 = 13;
// Copy each sample's weights to workgroup memory before evaluating; needs CACHE_VEC4 >= vec4_count().
override CACHED: bool = true;
override CACHE_VEC4: u32 = 297;

// Private arrays need a constant size in WGSL. It fits the widest SIREN that src/inr/siren.ts allows (256).
const MAX_VEC4: u32 = 64u;
// 2 pi split into a head whose multiples are exact in f32 up to 2^16 turns, and the rest.
const TWO_PI_HEAD: f32 = 6.28125;
const TWO_PI_TAIL: f32 = 0.0019353071795864769;
const INV_TWO_PI: f32 = 0.15915494309189535;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> ranges: array<vec2f>;
@group(0) @binding(3) var<storage, read> layers: array<vec2u>;
@group(0) @binding(4) var<storage, read> indices: array<u32>;
@group(0) @binding(5) var<storage, read> labels: array<u32>;
@group(0) @binding(6) var<storage, read_write> weights: array<vec4f>;
@group(0) @binding(7) var<storage, read_write> output: array<f32>;
@group(0) @binding(8) var<storage, read_write> labels_out: array<u32>;
@group(0) @binding(9) var<storage, read_write> pixels: array<u32>;

var<workgroup> cache: array<vec4f, CACHE_VEC4>;

// Dequantized weights use a padded vec4 layout so that the SIREN reads four at a time. With
// V = ceil(WIDTH / 4), and zeros in the rows and columns past WIDTH:
//   layer 0:         [V][3] vec4: weights of x, weights of y, biases, for outputs 4v .. 4v + 3
//   sine layer 1..:  [4V][V] vec4 rows of W, then [V] vec4 biases
//   output layer:    [3][V] vec4 rows of W, then one vec4 of biases (r, g, b, 0)
fn vec4_count() -> u32 {
  let v = (WIDTH + 3u) / 4u;
  return 3u * v + (SINE_LAYERS - 1u) * (4u * v * v + v) + 3u * v + 1u;
}

fn image_of(j: u32) -> u32 {
  if (params.direct == 1u) { return params.first + j; }
  return indices[params.first + j];
}

// Dequantizes value k of layer l of an image.
fn dequantize(image: u32, l: u32, k: u32) -> f32 {
  let bits = layers[l].y;
  let first_word = image * params.words + layers[l].x;
  if (bits == 32u) { return bitcast<f32>(codes[first_word + k]); }
  let bit = k * bits;
  let word = first_word + (bit >> 5u);
  let shift = bit & 31u;
  var code = codes[word] >> shift;
  if (shift + bits > 32u) { code |= codes[word + 1u] << (32u - shift); }
  code &= (1u << bits) - 1u;
  let range = ranges[image * (SINE_LAYERS + 1u) + l];
  return range.y + f32(code) * range.x;
}

// Returns component c of vec4 `slot` of an image's padded layout.
fn padded_value(image: u32, slot: u32, c: u32) -> f32 {
  let v = (WIDTH + 3u) / 4u;
  if (slot < 3u * v) {
    let o = 4u * (slot / 3u) + c;
    if (o >= WIDTH) { return 0.0; }
    let part = slot % 3u;
    return dequantize(image, 0u, select(2u * o + part, 2u * WIDTH + o, part == 2u));
  }
  let hidden_slots = 4u * v * v + v;
  let u = slot - 3u * v;
  let l = u / hidden_slots + 1u;
  if (l < SINE_LAYERS) {
    let w = u % hidden_slots;
    if (w < 4u * v * v) {
      let row = w / v;
      let column = 4u * (w % v) + c;
      if (row >= WIDTH || column >= WIDTH) { return 0.0; }
      return dequantize(image, l, row * WIDTH + column);
    }
    let o = 4u * (w - 4u * v * v) + c;
    if (o >= WIDTH) { return 0.0; }
    return dequantize(image, l, WIDTH * WIDTH + o);
  }
  let w = u - (SINE_LAYERS - 1u) * hidden_slots;
  if (w < 3u * v) {
    let column = 4u * (w % v) + c;
    if (column >= WIDTH) { return 0.0; }
    return dequantize(image, SINE_LAYERS, (w / v) * WIDTH + column);
  }
  if (c >= 3u) { return 0.0; }
  return dequantize(image, SINE_LAYERS, 3u * WIDTH + c);
}

fn padded_vec4(image: u32, slot: u32) -> vec4f {
  return vec4f(
    padded_value(image, slot, 0u),
    padded_value(image, slot, 1u),
    padded_value(image, slot, 2u),
    padded_value(image, slot, 3u),
  );
}

fn weight(j: u32, slot: u32) -> vec4f {
  if (CACHED) { return cache[slot]; }
  return weights[j * vec4_count() + slot];
}

// Vulkan bounds the error of sin only on [-pi, pi], and w0 * z spans tens of radians, so the
// argument is first reduced by whole turns.
fn sine(t: vec4f) -> vec4f {
  let turns = round(t * INV_TWO_PI);
  return sin((t - turns * TWO_PI_HEAD) - turns * TWO_PI_TAIL);
}

// Evaluates sample j's SIREN at input (x, y) and returns RGB, not clamped.
fn siren(j: u32, x: f32, y: f32) -> vec3f {
  var h: array<vec4f, MAX_VEC4>;
  var g: array<vec4f, MAX_VEC4>;
  let w0 = params.w0;
  let v = (WIDTH + 3u) / 4u;
  for (var o = 0u; o < v; o++) {
    h[o] = sine(w0 * (weight(j, 3u * o) * x + weight(j, 3u * o + 1u) * y + weight(j, 3u * o + 2u)));
  }
  var base = 3u * v;
  for (var l = 1u; l < SINE_LAYERS; l++) {
    let bias = base + 4u * v * v;
    for (var o = 0u; o < v; o++) {
      var z = weight(j, bias + o);
      let row = base + 4u * o * v;
      for (var i = 0u; i < v; i++) {
        let a = h[i];
        z += vec4f(
          dot(weight(j, row + i), a),
          dot(weight(j, row + v + i), a),
          dot(weight(j, row + 2u * v + i), a),
          dot(weight(j, row + 3u * v + i), a),
        );
      }
      g[o] = sine(w0 * z);
    }
    for (var o = 0u; o < v; o++) { h[o] = g[o]; }
    base = bias + v;
  }
  var rgb = weight(j, base + 3u * v).xyz;
  for (var i = 0u; i < v; i++) {
    let a = h[i];
    rgb += vec3f(
      dot(weight(j, base + i), a),
      dot(weight(j, base + v + i), a),
      dot(weight(j, base + 2u * v + i), a),
    );
  }
  return rgb;
}

// MurmurHash3's 32-bit finalizer: a bijection with full avalanche.
fn mix32(value: u32) -> u32 {
  var h = value;
  h ^= h >> 16u;
  h *= 0x85ebca6bu;
  h ^= h >> 13u;
  h *= 0xc2b2ae35u;
  h ^= h >> 16u;
  return h;
}

// Returns (dx, dy, flip) of sample j. `augmentationOf` in src/inr/decode.ts computes the same.
fn augmentation(j: u32) -> vec3u {
  let key = mix32(mix32(mix32(params.seed + 0x9e3779b9u) ^ params.step) ^ j);
  let span = 2u * params.pad + 1u;
  return vec3u(mix32(key ^ 1u) % span, mix32(key ^ 2u) % span, mix32(key ^ 3u) & 1u);
}

// A workgroup's sample j and first pixel. j >= params.batch for workgroups past the end.
struct Tile {
  j: u32,
  first_pixel: u32,
}

fn tile_of(wid: vec3u, nwg: vec3u) -> Tile {
  let tiles = (params.size * params.size + WG - 1u) / WG;
  let group = wid.x + wid.y * nwg.x;
  return Tile(group / tiles, (group % tiles) * WG);
}

// Copies sample j's weights from `weights` into `cache`. Call from uniform control flow.
fn fill_cache(j: u32, local: u32) {
  if (!CACHED) { return; }
  let slots = vec4_count();
  for (var slot = local; slot < slots; slot += WG) { cache[slot] = weights[j * slots + slot]; }
  workgroupBarrier();
}

// Returns RGB in [0, 1] of output pixel p of sample j, augmentation included.
fn decode_pixel(j: u32, p: u32, augment: bool) -> vec3f {
  let s = i32(params.size);
  var x = i32(p % params.size);
  var y = i32(p / params.size);
  if (augment) {
    let random = augmentation(j);
    if (params.flip == 1u && random.z == 1u) { x = s - 1 - x; }
    x += i32(random.x) - i32(params.pad);
    y += i32(random.y) - i32(params.pad);
    if (x < 0 || y < 0 || x >= s || y >= s) { return vec3f(0.0); }
  }
  let cx = f32(x) * params.coord_scale + params.coord_bias;
  let cy = f32(y) * params.coord_scale + params.coord_bias;
  return clamp(siren(j, cx, cy), vec3f(0.0), vec3f(1.0));
}

// Writes the batch's dequantized weights [B][vec4_count()] in the padded layout, so that each
// image is dequantized once per batch rather than once per workgroup. One invocation per vec4.
@compute @workgroup_size(WG)
fn unpack(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  let slots = vec4_count();
  if (i >= params.batch * slots) { return; }
  weights[i] = padded_vec4(image_of(i / slots), i % slots);
}

// Training batch: normalized NCHW f32 with per-sample crop and flip, plus the labels.
@compute @workgroup_size(WG)
fn decode_batch(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let tile = tile_of(wid, nwg);
  if (tile.j >= params.batch) { return; }
  fill_cache(tile.j, lid.x);
  let plane = params.size * params.size;
  let p = tile.first_pixel + lid.x;
  if (p >= plane) { return; }

  let augment = params.pad > 0u || params.flip == 1u;
  let rgb = decode_pixel(tile.j, p, augment);
  let out = tile.j * 3u * plane + p;
  output[out] = (rgb.r - params.mean_r) * params.inv_std_r;
  output[out + plane] = (rgb.g - params.mean_g) * params.inv_std_g;
  output[out + 2u * plane] = (rgb.b - params.mean_b) * params.inv_std_b;
  if (p == 0u) { labels_out[tile.j] = labels[image_of(tile.j)]; }
}

// Plain decode to RGBA8 (alpha 255), for writing image files. No augmentation.
@compute @workgroup_size(WG)
fn decode_rgba8(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let tile = tile_of(wid, nwg);
  if (tile.j >= params.batch) { return; }
  fill_cache(tile.j, lid.x);
  let plane = params.size * params.size;
  let p = tile.first_pixel + lid.x;
  if (p >= plane) { return; }
  pixels[tile.j * plane + p] = pack4x8unorm(vec4f(decode_pixel(tile.j, p, false), 1.0));
}
