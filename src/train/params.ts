// Flat parameter storage for the classifier.
//
// All trainable tensors live in one f32 buffer so that one SGD dispatch updates
// every parameter. Gradients and momentum use the same layout in buffers of
// their own. Each tensor starts at a multiple of 64 floats (256 bytes), the
// portable storage-binding offset alignment, so a kernel can bind one tensor
// as a buffer range.

import type { Binding } from "../gpu/kernel.ts";

/** One tensor inside a flat arena. */
export interface TensorSlot {
  name: string;
  shape: number[];
  /** Offset in floats from the start of the arena. */
  offset: number;
  /** Number of floats. */
  size: number;
  /** True when SGD applies weight decay (convolution and linear weights). */
  decay: boolean;
  init: "kaiming" | "ones" | "zeros" | "linear";
  /** Fan-in for "linear" init; defaults to shape[1]. */
  fanIn?: number;
}

/** Floats per alignment unit: 256 bytes. */
export const SLOT_ALIGN = 64;

/** A growing table of tensors with aligned offsets. */
export class Arena {
  readonly slots: TensorSlot[] = [];
  #size = 0;

  /** Size in floats, padded to the alignment. */
  get size(): number {
    return this.#size;
  }

  add(
    name: string,
    shape: number[],
    options: { decay: boolean; init: TensorSlot["init"]; fanIn?: number },
  ): TensorSlot {
    const size = shape.reduce((a, b) => a * b, 1);
    const slot: TensorSlot = { name, shape, offset: this.#size, size, ...options };
    this.slots.push(slot);
    this.#size += Math.ceil(size / SLOT_ALIGN) * SLOT_ALIGN;
    return slot;
  }

  /** Returns a binding of `slot` inside `buffer`, which must use this arena's layout. */
  static bind(buffer: GPUBuffer, slot: TensorSlot): Binding {
    return { buffer, offset: slot.offset * 4, size: slot.size * 4 };
  }

  /** Returns a per-float mask: 1 where weight decay applies, 0 elsewhere. */
  decayMask(): Float32Array {
    const mask = new Float32Array(this.#size);
    for (const slot of this.slots) {
      if (slot.decay) mask.fill(1, slot.offset, slot.offset + slot.size);
    }
    return mask;
  }

  /**
   * Returns initial values: convolutions Kaiming-normal with fan-out (as
   * torchvision's ResNet), linear layers uniform in +-1/sqrt(fan-in), batch
   * norm scale 1 and shift 0. `random` returns uniform numbers in [0, 1).
   */
  initialValues(random: () => number): Float32Array {
    const values = new Float32Array(this.#size);
    const normal = () => {
      const u = Math.max(random(), 1e-12);
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
    };
    for (const slot of this.slots) {
      const view = values.subarray(slot.offset, slot.offset + slot.size);
      if (slot.init === "ones") view.fill(1);
      else if (slot.init === "kaiming") {
        // Weight shape [K][C][KH][KW]: fan-out = K * KH * KW.
        const fanOut = slot.shape[0] * (slot.shape[2] ?? 1) * (slot.shape[3] ?? 1);
        const std = Math.sqrt(2 / fanOut);
        for (let i = 0; i < view.length; i++) view[i] = normal() * std;
      } else if (slot.init === "linear") {
        const fanIn = slot.fanIn ?? slot.shape[1];
        const bound = 1 / Math.sqrt(fanIn);
        for (let i = 0; i < view.length; i++) view[i] = (2 * random() - 1) * bound;
      }
    }
    return values;
  }
}
