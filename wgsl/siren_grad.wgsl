// Weight and bias gradients of every SIREN layer, reduced over the pixels.
//
// For layer l with input rows X (the coordinates (x, y) for l = 0, else the
// activations A_{l-1}) and a constant 1 as the bias input:
//   dW_l[o][i] = sum_p dz_l[o][p] * X[i][p],  db_l[o] = sum_p dz_l[o][p].
// This is a GEMM with the pixels as the long inner dimension, so the pixels
// are split twice: over the WG invocations of a workgroup, and over `chunks`
// workgroups per tile when one image has many pixels. The chunk partials are
// summed by the Adam kernel (wgsl/siren_fit.wgsl).
//
// Bindings (one workgroup per (tile, chunk, image): workgroup_id.x is
// tile * chunks + chunk, workgroup_id.y the image n; the WG invocations walk
// the pixel quads of the chunk with stride WG):
//   params:    Params uniform (chunk_quads: pixel quads per chunk)
//   tiles:     array<vec4u> [T], read. (layer, first output row, first input
//              column, unused); input column `inputs` is the bias.
//   act:       array<vec4f> [N][S*D][P4 / 4], read (see wgsl/siren.wgsl)
//   delta:     array<vec4f> [N][S*D + 3][P4 / 4], read: dLoss/dz (see
//              wgsl/siren.wgsl); zero for the padding pixels past P.
//   grad_part: array<f32> [N][chunks][Q], read_write. Per chunk, the gradient
//              in the parameter layout of src/inr/siren.ts.
// Each invocation accumulates a TILE_ROWS x TILE_COLS block in registers, so
// every loaded quad is reused TILE_ROWS or TILE_COLS times.

struct Params {
  images: u32,
  side: u32,
  chunks: u32,
  chunk_quads: u32,
  tile_count: u32,
}

override WG: u32 = 64;
override TILE_ROWS: u32 = 4;
override TILE_COLS: u32 = 4;
override SINE_LAYERS: u32 = 3;
override WIDTH: u32 = 8;

// Function-scope arrays need a constant size; src/inr/siren_batch.ts keeps
// TILE_ROWS and TILE_COLS within these limits.
const MAX_TILE_SIDE: u32 = 8u;
const MAX_TILE: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> tiles: array<vec4u>;
@group(0) @binding(2) var<storage, read> act: array<vec4f>;
@group(0) @binding(3) var<storage, read> delta: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> grad_part: array<f32>;

var<workgroup> partial: array<f32, WG * TILE_ROWS * TILE_COLS>;

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

@compute @workgroup_size(WG)
fn weight_grad(
  @builtin(local_invocation_index) lane: u32,
  @builtin(workgroup_id) wid: vec3u,
) {
  let n = wid.y;
  let tile_index = wid.x / params.chunks;
  let chunk = wid.x % params.chunks;
  if (tile_index >= params.tile_count || n >= params.images) { return; }

  let tile = tiles[tile_index];
  let layer = tile.x;
  let row0 = tile.y;
  let col0 = tile.z;
  let inputs = select(WIDTH, 2u, layer == 0u);
  let outputs = select(WIDTH, 3u, layer == SINE_LAYERS);
  let side = params.side;
  let pixels = side * side;
  let quads = (pixels + 3u) / 4u;
  let rows = SINE_LAYERS * WIDTH;
  let delta_image = n * (rows + 3u) * quads;
  // Layer 0 reads coordinates instead; the clamp keeps its unused base in range.
  let act_image = n * rows * quads + (max(layer, 1u) - 1u) * WIDTH * quads;

  // Rows and columns past the layer's edge load a valid neighbour and are
  // never written, which keeps the inner loop free of bounds branches.
  var row_offset: array<u32, MAX_TILE_SIDE>;
  for (var r = 0u; r < TILE_ROWS; r++) {
    row_offset[r] = delta_image + (layer * WIDTH + min(row0 + r, outputs - 1u)) * quads;
  }
  var col_offset: array<u32, MAX_TILE_SIDE>;
  var col_is_input: array<bool, MAX_TILE_SIDE>;
  for (var c = 0u; c < TILE_COLS; c++) {
    col_offset[c] = act_image + min(col0 + c, inputs - 1u) * quads;
    col_is_input[c] = col0 + c < inputs;
  }

  var acc: array<f32, MAX_TILE>;
  for (var k = 0u; k < TILE_ROWS * TILE_COLS; k++) {
    acc[k] = 0.0;
  }

  let start = chunk * params.chunk_quads;
  let end = min(start + params.chunk_quads, quads);
  var x: array<vec4f, MAX_TILE_SIDE>;
  for (var quad = start + lane; quad < end; quad += WG) {
    if (layer == 0u) {
      // Padding pixels past P may get any coordinate: their dz is zero.
      let pixel = vec4u(4u * quad) + vec4u(0u, 1u, 2u, 3u);
      let cx = coordinates(pixel % side, side);
      let cy = coordinates(pixel / side, side);
      for (var c = 0u; c < TILE_COLS; c++) {
        x[c] = select(vec4f(1.0), select(cy, cx, col0 + c == 0u), col_is_input[c]);
      }
    } else {
      for (var c = 0u; c < TILE_COLS; c++) {
        x[c] = select(vec4f(1.0), act[col_offset[c] + quad], col_is_input[c]);
      }
    }
    for (var r = 0u; r < TILE_ROWS; r++) {
      let d = delta[row_offset[r] + quad];
      for (var c = 0u; c < TILE_COLS; c++) {
        acc[r * TILE_COLS + c] += dot(d, x[c]);
      }
    }
  }

  // One barrier, then invocation `lane` sums tile entries lane, lane + WG, ...
  // over the workgroup in a fixed order, so results are deterministic.
  for (var k = 0u; k < TILE_ROWS * TILE_COLS; k++) {
    partial[k * WG + lane] = acc[k];
  }
  workgroupBarrier();
  let out_base = (n * params.chunks + chunk) * param_count() + weight_offset(layer);
  for (var k = lane; k < TILE_ROWS * TILE_COLS; k += WG) {
    let row = row0 + k / TILE_COLS;
    let col = col0 + k % TILE_COLS;
    if (row >= outputs || col > inputs) { continue; }
    var sum = 0.0;
    for (var j = 0u; j < WG; j++) {
      sum += partial[k * WG + j];
    }
    // Column `inputs` is the bias, stored after the layer's weights.
    let q = select(row * inputs + col, inputs * outputs + row, col == inputs);
    grad_part[out_base + q] = sum;
  }
}
