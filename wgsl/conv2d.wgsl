// 2-D convolution (cross-correlation, no bias) for ResNet training, as a
// register-blocked implicit GEMM. Every invocation accumulates a TM x TN tile
// of the GEMM output in registers. The TM rows are channels taken from the
// workgroup id, so each weight (forward, backward_data) or output-gradient
// (backward_weight) load has one address for the whole workgroup: llvmpipe
// issues one scalar load instead of a gather, and a real GPU broadcasts it.
// The TN columns of an invocation are WG apart, so neighbouring invocations
// touch neighbouring pixels and a real GPU coalesces their loads. Columns go
// in groups of four as vec4 values because Mesa 22 llvmpipe keeps vec4
// arrays in registers but ran scalar per-column arrays about 2x slower.
//
// Bindings (all f32, row-major, last letter fastest):
//   x          [N][C][H][W]       read        input activations
//   w          [K][C][KH][KW]     read        weights, KH = KW = params.kernel
//   y          [N][K][OH][OW]     read_write  forward output (overwritten)
//   dy         [N][K][OH][OW]     read        gradient of the loss w.r.t. y
//   dx         [N][C][H][W]       read_write  backward_data output (overwritten)
//   dw_partial [S][K][C][KH][KW]  read_write  backward_weight output: one
//              partial sum per chunk, or dw itself when S = 1 (overwritten)
//   dw         [K][C][KH][KW]     read_write  backward_weight_reduce output
//
// Implicit GEMM of each entry point (rows x columns, reduced over):
//   forward:         K x N*OH*OW, over C*KH*KW
//   backward_data:   C x N*H*W,   over K and the taps that reach each pixel
//   backward_weight: K x C*KH*KW, over N*OH*OW, split into S chunks of whole
//                    output rows; backward_weight_reduce sums the chunks
//
// Grid: workgroup_id.z walks the row tiles (combined with the stride phase in
// backward_data and with the chunk in backward_weight). Column tiles use x
// and spill into y. A column past the end reads a clamped, valid address and
// skips its store, so any shape works.

struct Params {
  n: u32,
  c: u32,
  h: u32,
  w: u32,
  k: u32,
  kernel: u32,
  stride: u32,
  pad: u32,
  oh: u32,
  ow: u32,
  // Row tiles, ceil(rows / TM), so that z can also carry a phase or a chunk.
  row_tiles: u32,
  // backward_weight: output rows (pairs n, oy) summed by one chunk.
  chunk_rows: u32,
  // backward_weight_reduce: number S of partial sums to add.
  chunks: u32,
}

// WGSL sizes function-scope arrays with constants only, so the registers are
// declared at these bounds and the loops run to TM and TN / 4, which become
// constants at pipeline creation. TN must be 4 or 8.
const MAX_TM: u32 = 8u;
const MAX_GROUPS: u32 = 2u;

override WG: u32 = 64u;
override TM: u32 = 8u;
override TN: u32 = 8u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dw_partial: array<f32>;
@group(0) @binding(7) var<storage, read_write> dw: array<f32>;

const LANE = vec4u(0u, 1u, 2u, 3u);

// Column indices of group g of an invocation: first + (4 g + lane) * WG.
fn columns_of(first: u32, g: u32) -> vec4u {
  return vec4u(first) + (LANE + vec4u(4u * g)) * WG;
}

fn first_column(lid: u32, wid: vec3u, nwg: vec3u) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG * TN + lid;
}

// Zero where `ok` is false; the index is clamped so that no lane reads out of
// bounds, whatever the robustness mode of the backend.
fn load_x(index: vec4i, ok: vec4<bool>) -> vec4f {
  let i = max(index, vec4i(0));
  return select(vec4f(0.0), vec4f(x[i.x], x[i.y], x[i.z], x[i.w]), ok);
}

fn load_dy(index: vec4i, ok: vec4<bool>) -> vec4f {
  let i = max(index, vec4i(0));
  return select(vec4f(0.0), vec4f(dy[i.x], dy[i.y], dy[i.z], dy[i.w]), ok);
}

fn in_range(v: vec4i, end: u32) -> vec4<bool> {
  return (v >= vec4i(0)) & (v < vec4i(i32(end)));
}

@compute @workgroup_size(WG)
fn forward(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let p = params;
  let out_pixels = p.oh * p.ow;
  let columns = p.n * out_pixels;
  let first = first_column(lid, wid, nwg);
  if (first >= columns) { return; }

  let groups = TN / 4u;
  let taps = p.kernel * p.kernel;
  let in_pixels = p.h * p.w;
  let k0 = wid.z * TM;

  // Per column: the top-left input coordinate of its window (negative inside
  // the padding) and the input offset of that corner in channel 0.
  var iy0: array<vec4i, MAX_GROUPS>;
  var ix0: array<vec4i, MAX_GROUPS>;
  var base: array<vec4i, MAX_GROUPS>;
  for (var g = 0u; g < groups; g++) {
    let col = min(columns_of(first, g), vec4u(columns - 1u));
    let n = col / out_pixels;
    let rest = col - n * out_pixels;
    let oy = rest / p.ow;
    iy0[g] = vec4i(oy * p.stride) - i32(p.pad);
    ix0[g] = vec4i((rest - oy * p.ow) * p.stride) - i32(p.pad);
    base[g] = vec4i(n * p.c * in_pixels) + iy0[g] * i32(p.w) + ix0[g];
  }

  var acc: array<array<vec4f, MAX_GROUPS>, MAX_TM>;
  for (var c = 0u; c < p.c; c++) {
    for (var ky = 0u; ky < p.kernel; ky++) {
      var row_ok: array<vec4<bool>, MAX_GROUPS>;
      for (var g = 0u; g < groups; g++) {
        row_ok[g] = in_range(iy0[g] + i32(ky), p.h);
      }
      for (var kx = 0u; kx < p.kernel; kx++) {
        let shift = i32(c * in_pixels + ky * p.w + kx);
        var xv: array<vec4f, MAX_GROUPS>;
        for (var g = 0u; g < groups; g++) {
          xv[g] = load_x(base[g] + shift, row_ok[g] & in_range(ix0[g] + i32(kx), p.w));
        }
        let tap = (c * p.kernel + ky) * p.kernel + kx;
        for (var i = 0u; i < TM; i++) {
          // Rows past K re-read row K - 1 and are never stored.
          let wv = vec4f(w[min(k0 + i, p.k - 1u) * p.c * taps + tap]);
          for (var g = 0u; g < groups; g++) {
            acc[i][g] = fma(wv, xv[g], acc[i][g]);
          }
        }
      }
    }
  }

  // Stores name the vec4 components: a store loop over components kept the
  // accumulators in memory on llvmpipe and halved the speed of 8 x 8 tiles.
  for (var g = 0u; g < groups; g++) {
    let col = columns_of(first, g);
    let n = col / out_pixels;
    let index = n * p.k * out_pixels + col - n * out_pixels;
    let valid = col < vec4u(columns);
    for (var i = 0u; i < TM; i++) {
      if (k0 + i < p.k) {
        let at = index + vec4u((k0 + i) * out_pixels);
        if (valid.x) { y[at.x] = acc[i][g].x; }
        if (valid.y) { y[at.y] = acc[i][g].y; }
        if (valid.z) { y[at.z] = acc[i][g].z; }
        if (valid.w) { y[at.w] = acc[i][g].w; }
      }
    }
  }
}

// backward_data visits input pixels one stride phase at a time. A pixel iy
// receives dy[oy] through tap ky only when iy + pad - ky = oy * stride, so all
// pixels with the same (iy + pad) mod stride use the same taps
// ky = phase, phase + stride, ... With the phase taken from workgroup_id.z,
// stride-2 layers skip the 3 in 4 taps that miss instead of masking them.
@compute @workgroup_size(WG)
fn backward_data(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let p = params;
  let s = p.stride;
  let phase = wid.z / p.row_tiles;
  let ry = phase / s;
  let rx = phase - ry * s;

  // First pixel of the phase along each axis, how many follow it at the
  // stride, and the output coordinate that tap 0 maps that first pixel to.
  let iy_first = u32((i32(ry) - i32(p.pad % s) + i32(s)) % i32(s));
  let ix_first = u32((i32(rx) - i32(p.pad % s) + i32(s)) % i32(s));
  let count_y = select(0u, (p.h - iy_first + s - 1u) / s, p.h > iy_first);
  let count_x = select(0u, (p.w - ix_first + s - 1u) / s, p.w > ix_first);
  let oy_first = (iy_first + p.pad - ry) / s;
  let ox_first = (ix_first + p.pad - rx) / s;

  let phase_pixels = count_y * count_x;
  let columns = p.n * phase_pixels;
  let first = first_column(lid, wid, nwg);
  if (first >= columns) { return; }

  let groups = TN / 4u;
  let taps_y = select(0u, (p.kernel - ry + s - 1u) / s, p.kernel > ry);
  let taps_x = select(0u, (p.kernel - rx + s - 1u) / s, p.kernel > rx);
  let out_pixels = p.oh * p.ow;
  let c0 = (wid.z - phase * p.row_tiles) * TM;

  // Per column: the output coordinate reached through tap 0 of the phase and
  // its offset in dy for output channel 0.
  var oy0: array<vec4i, MAX_GROUPS>;
  var ox0: array<vec4i, MAX_GROUPS>;
  var base: array<vec4i, MAX_GROUPS>;
  for (var g = 0u; g < groups; g++) {
    let col = min(columns_of(first, g), vec4u(columns - 1u));
    let n = col / phase_pixels;
    let rest = col - n * phase_pixels;
    let a = rest / count_x;
    oy0[g] = vec4i(a + oy_first);
    ox0[g] = vec4i(rest - a * count_x + ox_first);
    base[g] = vec4i(n * p.k * out_pixels) + oy0[g] * i32(p.ow) + ox0[g];
  }

  var acc: array<array<vec4f, MAX_GROUPS>, MAX_TM>;
  for (var k = 0u; k < p.k; k++) {
    for (var ty = 0u; ty < taps_y; ty++) {
      let ky = ry + ty * s;
      var row_ok: array<vec4<bool>, MAX_GROUPS>;
      for (var g = 0u; g < groups; g++) {
        row_ok[g] = in_range(oy0[g] - i32(ty), p.oh);
      }
      for (var tx = 0u; tx < taps_x; tx++) {
        let kx = rx + tx * s;
        let shift = i32(k * out_pixels) - i32(ty * p.ow + tx);
        var dyv: array<vec4f, MAX_GROUPS>;
        for (var g = 0u; g < groups; g++) {
          dyv[g] = load_dy(base[g] + shift, row_ok[g] & in_range(ox0[g] - i32(tx), p.ow));
        }
        for (var i = 0u; i < TM; i++) {
          let c = min(c0 + i, p.c - 1u);
          let wv = vec4f(w[((k * p.c + c) * p.kernel + ky) * p.kernel + kx]);
          for (var g = 0u; g < groups; g++) {
            acc[i][g] = fma(wv, dyv[g], acc[i][g]);
          }
        }
      }
    }
  }

  let in_pixels = p.h * p.w;
  for (var g = 0u; g < groups; g++) {
    let col = columns_of(first, g);
    let n = col / phase_pixels;
    let rest = col - n * phase_pixels;
    let a = rest / count_x;
    let pixel = (iy_first + a * s) * p.w + ix_first + (rest - a * count_x) * s;
    let index = n * p.c * in_pixels + pixel;
    let valid = col < vec4u(columns);
    for (var i = 0u; i < TM; i++) {
      if (c0 + i < p.c) {
        let at = index + vec4u((c0 + i) * in_pixels);
        if (valid.x) { dx[at.x] = acc[i][g].x; }
        if (valid.y) { dx[at.y] = acc[i][g].y; }
        if (valid.z) { dx[at.z] = acc[i][g].z; }
        if (valid.w) { dx[at.w] = acc[i][g].w; }
      }
    }
  }
}

// Columns are the filter positions (c, ky, kx) and the reduction walks whole
// output rows, so the bounds check on the input row is done once per row.
@compute @workgroup_size(WG)
fn backward_weight(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let p = params;
  let taps = p.kernel * p.kernel;
  let columns = p.c * taps;
  let first = first_column(lid, wid, nwg);
  if (first >= columns) { return; }

  let groups = TN / 4u;
  let chunk = wid.z / p.row_tiles;
  let k0 = (wid.z - chunk * p.row_tiles) * TM;
  let in_pixels = p.h * p.w;
  let out_pixels = p.oh * p.ow;

  // Per column: the offset of the window origin (tap minus padding) from the
  // input position oy * stride, ox * stride.
  var shift_y: array<vec4i, MAX_GROUPS>;
  var shift_x: array<vec4i, MAX_GROUPS>;
  var offset: array<vec4i, MAX_GROUPS>;
  for (var g = 0u; g < groups; g++) {
    let col = min(columns_of(first, g), vec4u(columns - 1u));
    let c = col / taps;
    let tap = col - c * taps;
    let ky = tap / p.kernel;
    shift_y[g] = vec4i(ky) - i32(p.pad);
    shift_x[g] = vec4i(tap - ky * p.kernel) - i32(p.pad);
    offset[g] = vec4i(c * in_pixels) + shift_y[g] * i32(p.w) + shift_x[g];
  }

  let rows = p.n * p.oh;
  let row_end = min(rows, (chunk + 1u) * p.chunk_rows);
  var acc: array<array<vec4f, MAX_TM>, MAX_GROUPS>;
  for (var row = chunk * p.chunk_rows; row < row_end; row++) {
    let n = row / p.oh;
    let oy = row - n * p.oh;
    let iy = i32(oy * p.stride);
    let x_row = i32(n * p.c * in_pixels) + iy * i32(p.w);
    let dy_row = n * p.k * out_pixels + oy * p.ow;
    var row_ok: array<vec4<bool>, MAX_GROUPS>;
    for (var g = 0u; g < groups; g++) {
      row_ok[g] = in_range(shift_y[g] + iy, p.h);
    }
    for (var ox = 0u; ox < p.ow; ox++) {
      let ix = i32(ox * p.stride);
      var xv: array<vec4f, MAX_GROUPS>;
      for (var g = 0u; g < groups; g++) {
        xv[g] = load_x(offset[g] + x_row + ix, row_ok[g] & in_range(shift_x[g] + ix, p.w));
      }
      for (var i = 0u; i < TM; i++) {
        let gv = vec4f(dy[dy_row + min(k0 + i, p.k - 1u) * out_pixels + ox]);
        for (var g = 0u; g < groups; g++) {
          acc[g][i] = fma(gv, xv[g], acc[g][i]);
        }
      }
    }
  }

  let slice = chunk * p.k * columns;
  for (var g = 0u; g < groups; g++) {
    let col = columns_of(first, g);
    let valid = col < vec4u(columns);
    for (var i = 0u; i < TM; i++) {
      if (k0 + i < p.k) {
        let at = col + vec4u(slice + (k0 + i) * columns);
        if (valid.x) { dw_partial[at.x] = acc[g][i].x; }
        if (valid.y) { dw_partial[at.y] = acc[g][i].y; }
        if (valid.z) { dw_partial[at.z] = acc[g][i].z; }
        if (valid.w) { dw_partial[at.w] = acc[g][i].w; }
      }
    }
  }
}

// dw[i] = sum over the S chunks of dw_partial[s][i]; one invocation per
// element of dw, walking the chunks in order.
@compute @workgroup_size(WG)
fn backward_weight_reduce(
  @builtin(global_invocation_id) gid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
) {
  let p = params;
  let size = p.k * p.c * p.kernel * p.kernel;
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= size) { return; }
  var sum = 0.0;
  for (var s = 0u; s < p.chunks; s++) {
    sum += dw_partial[s * size + i];
  }
  dw[i] = sum;
}
