// Classifier batches from raw 8-bit RGB images resident on the GPU: the
// upper-bound input pipeline that the INR pipeline is measured against, and
// the evaluation path for original test images.
//
// Bindings:
//   pixels:     array<u32> [N * R * R * 3 / 4], read. The dataset as tightly
//               packed bytes [N][R][R][3] (row-major, RGB last), four bytes per
//               word, little-endian; byte k is bits 8 (k % 4) .. of word k / 4.
//   labels:     array<u32> [N], read. Class index per image.
//   indices:    array<u32> [*], read. Image order (an epoch's permutation);
//               sample j reads indices[first + j]. Ignored when use_indices is 0,
//               then sample j is image first + j.
//   output:     array<f32> [B][3][S][S], read_write. Normalized NCHW input.
//   labels_out: array<u32> [B], read_write. Labels of the batch.
// Invocation: one per output pixel, grid (S * S, B); x walks pixels p, y the sample j.
//
// Augmentation matches wgsl/inr_decode.wgsl exactly (same hash, same crop and
// flip), so `raw` and `inr` training see identical sample transforms: output
// pixel (x, y) reads pixel (x' + dx - pad, y + dy - pad) of the S x S image,
// x' = S - 1 - x when flipped. When S differs from R the S x S image is a
// bilinear resampling of the R x R source (pixel centres aligned); pixels
// outside the image are 0 before normalization.

struct Params {
  batch: u32,
  first: u32,
  use_indices: u32,
  resolution: u32,
  size: u32,
  pad: u32,
  flip: u32,
  seed: u32,
  step: u32,
  mean_r: f32,
  mean_g: f32,
  mean_b: f32,
  inv_std_r: f32,
  inv_std_g: f32,
  inv_std_b: f32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> pixels: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> indices: array<u32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;
@group(0) @binding(5) var<storage, read_write> labels_out: array<u32>;

fn mix32(value: u32) -> u32 {
  var h = value;
  h ^= h >> 16u;
  h *= 0x85ebca6bu;
  h ^= h >> 13u;
  h *= 0xc2b2ae35u;
  h ^= h >> 16u;
  return h;
}

// Returns (dx, dy, flip) of sample j, as `augmentationOf` in src/inr/decode.ts.
fn augmentation(j: u32) -> vec3u {
  let key = mix32(mix32(mix32(params.seed + 0x9e3779b9u) ^ params.step) ^ j);
  let span = 2u * params.pad + 1u;
  return vec3u(mix32(key ^ 1u) % span, mix32(key ^ 2u) % span, mix32(key ^ 3u) & 1u);
}

fn byte_at(k: u32) -> f32 {
  return f32((pixels[k >> 2u] >> ((k & 3u) * 8u)) & 255u);
}

// RGB in [0, 1] of source pixel (x, y) of `image`; the caller keeps (x, y) inside.
fn source_rgb(image: u32, x: u32, y: u32) -> vec3f {
  let r = params.resolution;
  let k = ((image * r + y) * r + x) * 3u;
  return vec3f(byte_at(k), byte_at(k + 1u), byte_at(k + 2u)) / 255.0;
}

// RGB of pixel (x, y) of the S x S view of `image`, bilinear when S != R.
fn sample_rgb(image: u32, x: u32, y: u32) -> vec3f {
  let r = params.resolution;
  if (params.size == r) {
    return source_rgb(image, x, y);
  }
  let ratio = f32(r) / f32(params.size);
  let last = f32(r - 1u);
  let sx = clamp((f32(x) + 0.5) * ratio - 0.5, 0.0, last);
  let sy = clamp((f32(y) + 0.5) * ratio - 0.5, 0.0, last);
  let x0 = u32(floor(sx));
  let y0 = u32(floor(sy));
  let x1 = min(x0 + 1u, r - 1u);
  let y1 = min(y0 + 1u, r - 1u);
  let fx = sx - f32(x0);
  let fy = sy - f32(y0);
  let top = mix(source_rgb(image, x0, y0), source_rgb(image, x1, y0), fx);
  let bottom = mix(source_rgb(image, x0, y1), source_rgb(image, x1, y1), fx);
  return mix(top, bottom, fy);
}

@compute @workgroup_size(WG)
fn raw_batch(@builtin(global_invocation_id) gid: vec3u) {
  let s = params.size;
  let plane = s * s;
  let p = gid.x;
  let j = gid.y;
  if (p >= plane || j >= params.batch) { return; }

  var image = params.first + j;
  if (params.use_indices == 1u) { image = indices[params.first + j]; }

  var x = i32(p % s);
  var y = i32(p / s);
  if (params.pad > 0u || params.flip == 1u) {
    let random = augmentation(j);
    if (params.flip == 1u && random.z == 1u) { x = i32(s) - 1 - x; }
    x += i32(random.x) - i32(params.pad);
    y += i32(random.y) - i32(params.pad);
  }
  var rgb = vec3f(0.0);
  if (x >= 0 && y >= 0 && x < i32(s) && y < i32(s)) {
    rgb = sample_rgb(image, u32(x), u32(y));
  }

  let out = j * 3u * plane + p;
  output[out] = (rgb.r - params.mean_r) * params.inv_std_r;
  output[out + plane] = (rgb.g - params.mean_g) * params.inv_std_g;
  output[out + 2u * plane] = (rgb.b - params.mean_b) * params.inv_std_b;
  if (p == 0u) { labels_out[j] = labels[image]; }
}
