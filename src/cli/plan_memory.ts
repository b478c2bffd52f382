// GPU memory estimates for --dry-run, computed from shapes alone so that a
// plan needs no device. Each function mirrors the buffers that one GPU class
// allocates; tests/cli_dry_run_test.ts compares them with real allocations.

import { packedCodeBytes, type QuantizedInrs, residentDatasetBytes } from "../inr/quantize.ts";
import { paddedSlots } from "../inr/sampling.ts";
import type { SirenArch } from "../inr/siren.ts";
import { sirenImageBytes } from "../inr/siren_batch.ts";
import { convOutputSize } from "../train/conv_shape.ts";
import { maxPoolOutputSize } from "../train/pool.ts";
import { SLOT_ALIGN } from "../train/params.ts";
import { SMALL_INPUT_MAX } from "../train/resnet.ts";

// Defined next to the packed layout and re-exported with the other estimates.
export { packedCodeBytes, residentDatasetBytes };

/**
 * Bytes of one encode batch of `batch` images (SirenFitBatch): the per-image
 * buffers and the learning-rate schedule, without the small tile table.
 */
export function encodeBatchBytes(
  options: { arch: SirenArch; side: number; batch: number; iterations: number },
): number {
  return options.batch * sirenImageBytes(options).total + options.iterations * 8;
}

/** Bytes of a quantized .rinr payload: codes and ranges, without header and labels. */
export function quantizedPayloadBytes(
  q: Pick<QuantizedInrs, "count" | "wordsPerImage" | "bits">,
): number {
  return q.count * (q.wordsPerImage + q.bits.length * 2) * 4;
}

/** Bytes of the per-chunk buffers of InrDecoder.decodeImages: RGBA pixels and unpacked weights. */
export function decodeChunkBytes(
  options: { arch: SirenArch; count: number; size: number; maxBinding?: number },
): number {
  const bySize = options.maxBinding === undefined
    ? Infinity
    : Math.floor(options.maxBinding / (options.size * options.size * 4));
  // Chunks of up to 256 images, as in src/inr/decode.ts.
  const chunk = Math.max(1, Math.min(options.count, 256, bySize));
  return chunk * options.size * options.size * 4 + chunk * paddedSlots(options.arch) * 16;
}

/** Bytes of the per-batch buffers InrDecoder.decodeBatch adds for training: unpacked weights. */
export function decodeBatchBytes(options: { arch: SirenArch; batch: number }): number {
  return options.batch * paddedSlots(options.arch) * 16;
}

/** Bytes of 8-bit images resident on the GPU (RawImages): pixels and labels. */
export function rawImagesBytes(options: { count: number; side: number }): number {
  const pixels = Math.max(4, Math.ceil((options.count * options.side * options.side * 3) / 4) * 4);
  return pixels + Math.max(4, options.count * 4);
}

/** GPU memory of the ResNet-18 classifier for one batch size. */
export interface ResNetMemory {
  /** Trainable parameters, without alignment padding. */
  parameters: number;
  /** Weights, gradients, momentum, running statistics and the decay mask, in bytes. */
  parameterBytes: number;
  /** Activations and their gradients for one batch, input and loss buffers included, in bytes. */
  activationBytes: number;
  /** Largest single buffer in bytes, which must fit one storage binding. */
  largestBufferBytes: number;
  totalBytes: number;
}

interface Shape {
  c: number;
  h: number;
  w: number;
}

/**
 * Estimates the buffers ResNet18.create allocates (see src/train/resnet.ts).
 * NOTE: the convolution scratch buffer is left out: its size depends on the
 * kernel's chunking of the weight gradient, which needs the compiled kernels.
 */
export function resnetMemory(
  options: { classes: number; inputSize: number; width: number; batch: number },
): ResNetMemory {
  const { classes, inputSize, width, batch } = options;
  const aligned = (floats: number) => Math.ceil(floats / SLOT_ALIGN) * SLOT_ALIGN;
  let paramFloats = 0, parameters = 0, stateFloats = 0, savedFloats = 0;
  // input, its unused gradient, labels, and two loss-statistics buffers of 5 floats
  let activationFloats = batch * 3 * inputSize * inputSize + 1 + batch + 5 + 5;
  let largestFloats = batch * 3 * inputSize * inputSize;
  const addParam = (floats: number) => {
    paramFloats += aligned(floats);
    parameters += floats;
  };
  const activation = (s: Shape) => {
    activationFloats += 2 * batch * s.c * s.h * s.w;
    largestFloats = Math.max(largestFloats, batch * s.c * s.h * s.w);
  };
  const convBn = (
    x: Shape,
    spec: { k: number; kernel: number; stride: number; pad: number },
  ): Shape => {
    const out = convOutputSize({ n: 1, c: x.c, h: x.h, w: x.w, ...spec });
    const y = { c: spec.k, h: out.h, w: out.w };
    addParam(spec.k * x.c * spec.kernel * spec.kernel);
    activation(y); // convolution output
    addParam(spec.k);
    addParam(spec.k);
    stateFloats += 2 * aligned(spec.k);
    savedFloats += 2 * Math.ceil(spec.k / 64) * 64;
    activation(y); // batch-norm output
    return y;
  };

  let x: Shape = { c: 3, h: inputSize, w: inputSize };
  if (inputSize <= SMALL_INPUT_MAX) {
    x = convBn(x, { k: width, kernel: 3, stride: 1, pad: 1 });
  } else {
    const stem = convBn(x, { k: width, kernel: 7, stride: 2, pad: 3 });
    const pooled = maxPoolOutputSize({ n: 1, c: width, h: stem.h, w: stem.w });
    x = { c: width, h: pooled.ho, w: pooled.wo };
    activation(x);
    activationFloats += batch * width * pooled.ho * pooled.wo; // max-pool argmax
  }
  [width, width * 2, width * 4, width * 8].forEach((channels, stage) => {
    for (let block = 0; block < 2; block++) {
      const stride = stage > 0 && block === 0 ? 2 : 1;
      const a = convBn(x, { k: channels, kernel: 3, stride, pad: 1 });
      const b = convBn(a, { k: channels, kernel: 3, stride: 1, pad: 1 });
      if (stride !== 1 || x.c !== channels) {
        activationFloats += batch * x.c * x.h * x.w; // shortcut input gradient
        convBn(x, { k: channels, kernel: 1, stride, pad: 0 });
      }
      activation(b); // block output
      x = b;
    }
  });
  activation({ c: x.c, h: 1, w: 1 }); // average pool
  activation({ c: classes, h: 1, w: 1 }); // logits
  activationFloats += batch; // per-sample loss
  addParam(classes * x.c);
  addParam(classes);

  const maskBytes = Math.ceil(paramFloats / 32) * 4;
  const parameterBytes = 3 * paramFloats * 4 + stateFloats * 4 + Math.max(64, savedFloats) * 4 +
    maskBytes;
  const activationBytes = activationFloats * 4;
  const largestBufferBytes = Math.max(largestFloats, paramFloats) * 4;
  return {
    parameters,
    parameterBytes,
    activationBytes,
    largestBufferBytes,
    totalBytes: parameterBytes + activationBytes,
  };
}
