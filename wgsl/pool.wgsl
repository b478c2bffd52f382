// Pooling over f32 NCHW tensors: max pooling with saved argmax (the ResNet
// stem uses kernel 3, stride 2, pad 1) and global average pooling.
//
// Bindings. Ho and Wo are the output height and width, and every tensor is
// row-major:
//   x:      array<f32> [N][C][H][W], read         input of the forward
//   y:      array<f32> [N][C][Ho][Wo], read_write max-pool output
//   argmax: array<u32> [N][C][Ho][Wo], read_write index h * W + w of the
//           maximum inside its input plane, written by maxpool_forward
//   argmax_in: array<u32> [N][C][Ho][Wo], read    the same, read by maxpool_backward
//   dy:     array<f32> [N][C][Ho][Wo], read       gradient with respect to y
//   dx:     array<f32> [N][C][H][W], read_write   gradient with respect to x (overwritten)
//   pooled: array<f32> [N][C], read_write         global average of each plane
//   dpooled: array<f32> [N][C], read              gradient with respect to pooled
//
// maxpool_forward walks one output pixel per invocation (3-D grid: x = oh * Wo
// + ow, y = c, z = n). maxpool_backward gathers instead of scattering: each
// invocation owns one input pixel (x = h * W + w, y = c, z = n) and sums dy
// over the at most ceil(kernel / stride)^2 windows whose argmax is that pixel,
// so overlapping windows need no atomics and the sum order is fixed.
// avgpool_forward walks one (n, c) plane per invocation (1-D, i = n * C + c),
// and avgpool_backward one element of dx (1-D).

struct Params {
  n: u32,
  c: u32,
  h: u32,
  w: u32,
  ho: u32,
  wo: u32,
  kernel: u32,
  stride: u32,
  pad: u32,
}

override WG: u32 = 64;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;
@group(0) @binding(4) var<storage, read> argmax_in: array<u32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> pooled: array<f32>;
@group(0) @binding(8) var<storage, read> dpooled: array<f32>;

@compute @workgroup_size(WG)
fn maxpool_forward(@builtin(global_invocation_id) gid: vec3u) {
  let out_plane = params.ho * params.wo;
  if (gid.x >= out_plane) { return; }
  let oh = gid.x / params.wo;
  let ow = gid.x - oh * params.wo;
  let plane = gid.z * params.c + gid.y;
  let base = plane * params.h * params.w;

  // Padding never wins. The host requires pad < kernel, so every window
  // contains at least one real pixel. Ties keep the first pixel in row-major order.
  let h0 = i32(oh * params.stride) - i32(params.pad);
  let w0 = i32(ow * params.stride) - i32(params.pad);
  var best = -3.4028235e38;
  var best_index = 0xffffffffu;
  for (var kh = 0; kh < i32(params.kernel); kh++) {
    let ih = h0 + kh;
    if (ih < 0 || ih >= i32(params.h)) { continue; }
    for (var kw = 0; kw < i32(params.kernel); kw++) {
      let iw = w0 + kw;
      if (iw < 0 || iw >= i32(params.w)) { continue; }
      let index = u32(ih) * params.w + u32(iw);
      let v = x[base + index];
      if (best_index == 0xffffffffu || v > best) {
        best = v;
        best_index = index;
      }
    }
  }
  let o = plane * out_plane + gid.x;
  y[o] = best;
  argmax[o] = best_index;
}

// Returns the first output row (or column) whose window covers input
// coordinate i: ceil((i + pad - kernel + 1) / stride), clamped at 0.
fn first_window(i: u32) -> u32 {
  let reach = i32(i + params.pad) - i32(params.kernel) + 1;
  if (reach <= 0) { return 0u; }
  return (u32(reach) + params.stride - 1u) / params.stride;
}

@compute @workgroup_size(WG)
fn maxpool_backward(@builtin(global_invocation_id) gid: vec3u) {
  let in_plane = params.h * params.w;
  if (gid.x >= in_plane) { return; }
  let ih = gid.x / params.w;
  let iw = gid.x - ih * params.w;
  let plane = gid.z * params.c + gid.y;
  let out_base = plane * params.ho * params.wo;

  let oh_end = min(params.ho, (ih + params.pad) / params.stride + 1u);
  let ow_end = min(params.wo, (iw + params.pad) / params.stride + 1u);
  var sum = 0.0;
  for (var oh = first_window(ih); oh < oh_end; oh++) {
    for (var ow = first_window(iw); ow < ow_end; ow++) {
      let o = out_base + oh * params.wo + ow;
      if (argmax_in[o] == gid.x) {
        sum += dy[o];
      }
    }
  }
  dx[plane * in_plane + gid.x] = sum;
}

@compute @workgroup_size(WG)
fn avgpool_forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= params.n * params.c) { return; }
  let size = params.h * params.w;
  let base = i * size;
  var sum = 0.0;
  for (var s = 0u; s < size; s++) {
    sum += x[base + s];
  }
  pooled[i] = sum / f32(size);
}

@compute @workgroup_size(WG)
fn avgpool_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  let size = params.h * params.w;
  if (i >= params.n * params.c * size) { return; }
  dx[i] = dpooled[i / size] / f32(size);
}
