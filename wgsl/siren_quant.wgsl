// Fake quantization for quantization-aware fine-tuning: maps the latent f32
// weights that Adam updates to the values the compressed file will decode to,
// so that the forward pass sees the quantized and pruned network.
//
// Bindings:
//   params: Params uniform (images N, parameters Q per image)
//   layers: array<vec4u> [L], read. Per layer: first parameter inside an
//           image, value count (W then b), bit width (1..16, or 32 to copy
//           the layer unchanged), unused.
//   mask:   array<u32> [N][Q], read. 0 prunes the weight to exactly 0.
//   latent: array<f32> [N][Q], read. The weights Adam updates.
//   theta:  array<f32> [N][Q], read_write. The projected weights.
//
// project: one workgroup per (layer, image), workgroup_id = (l, n). Its
// invocations stride over the layer's values twice: once for the range of
// the kept values, once to write the projected values.
//
// The grid is the one of src/inr/quantize.ts: lo = min(0, kept values),
// hi = max(0, kept values), scale = (hi - lo) / (2^b - 1) rounded up to
// 8 significant bits, zero point z = round(-lo / scale), offset = -z *
// scale, and value = offset + clamp(round((v - offset) / scale)) * scale.
// WGSL's f32 division is not correctly rounded, so a value that sits within
// an ulp of a rounding boundary may get the neighbouring code here; the file
// always stores the codes that the CPU quantizer computes.

// Mantissa bits cleared in every scale: 23 - 16 leaves 8 significant bits,
// SCALE_SIGNIFICANT_BITS of quantize.ts.
const SCALE_DROPPED_BITS: u32 = 16u;

struct Params {
  images: u32,
  param_count: u32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> layers: array<vec4u>;
@group(0) @binding(2) var<storage, read> mask: array<u32>;
@group(0) @binding(3) var<storage, read> latent: array<f32>;
@group(0) @binding(4) var<storage, read_write> theta: array<f32>;

var<workgroup> low: array<f32, WG>;
var<workgroup> high: array<f32, WG>;

// Rounds a positive f32 up so that its lowest `drop` mantissa bits are clear.
fn round_up_mantissa(value: f32, drop: u32) -> f32 {
  let low_bits = (1u << drop) - 1u;
  let bits = bitcast<u32>(value);
  if ((bits & low_bits) == 0u) { return value; }
  return bitcast<f32>((bits | low_bits) + 1u);
}

@compute @workgroup_size(WG)
fn project(
  @builtin(local_invocation_index) lane: u32,
  @builtin(workgroup_id) wid: vec3u,
) {
  let n = wid.y;
  if (n >= params.images) { return; }
  let layer = layers[wid.x];
  let first = n * params.param_count + layer.x;
  let count = layer.y;
  let bits = layer.z;

  var lo = 0.0;
  var hi = 0.0;
  for (var k = lane; k < count; k += WG) {
    if (mask[first + k] != 0u) {
      lo = min(lo, latent[first + k]);
      hi = max(hi, latent[first + k]);
    }
  }
  low[lane] = lo;
  high[lane] = hi;
  // Tree reduction; WG is a power of two (checked on the host).
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (lane < stride) {
      low[lane] = min(low[lane], low[lane + stride]);
      high[lane] = max(high[lane], high[lane + stride]);
    }
  }
  workgroupBarrier();
  lo = low[0];
  hi = high[0];

  // The copy comes after the barriers because WGSL requires them in uniform
  // control flow, and the bit width is read from storage.
  if (bits == 32u) {
    for (var k = lane; k < count; k += WG) {
      theta[first + k] = latent[first + k];
    }
    return;
  }

  let levels = f32((1u << bits) - 1u);
  var scale = (hi - lo) / levels;
  var offset = 0.0;
  if (scale > 0.0) {
    scale = round_up_mantissa(scale, SCALE_DROPPED_BITS);
    let zero = clamp(floor(-lo / scale + 0.5), 0.0, levels);
    offset = 0.0 - zero * scale;
  }
  for (var k = lane; k < count; k += WG) {
    var value = 0.0;
    if (mask[first + k] != 0u && scale > 0.0) {
      let code = clamp(floor((latent[first + k] - offset) / scale + 0.5), 0.0, levels);
      value = offset + code * scale;
    }
    theta[first + k] = value;
  }
}
