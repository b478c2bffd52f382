// SIREN architecture, parameter layout and CPU reference evaluation.
//
// One INR maps a pixel coordinate (x, y) in [-1, 1] to RGB in [0, 1]:
// `sineLayers` layers h = sin(w0 * (W h + b)), then one linear output layer.
// Parameters of one image are flattened layer by layer: W as [out][in]
// row-major, then b as [out]. The GPU kernels, the quantizer and the file
// format all read this layout through `sirenLayers`.

/** Shape of one SIREN. */
export interface SirenArch {
  /** Number of sine layers, the first one included. */
  sineLayers: number;
  /** Width D of every sine layer. */
  width: number;
  /** Frequency factor w0 applied inside every sine. */
  w0: number;
}

/** Position and shape of one layer inside the flattened parameter vector. */
export interface LayerSlice {
  index: number;
  inputs: number;
  outputs: number;
  /** Offset of W ([outputs][inputs], row-major) in floats. */
  weightOffset: number;
  /** Offset of b ([outputs]) in floats. */
  biasOffset: number;
  /** True for sine layers, false for the linear output layer. */
  sine: boolean;
}

/** Coordinates per pixel (x, y). */
export const SIREN_INPUTS = 2;
/** Colour channels per pixel (RGB). */
export const SIREN_OUTPUTS = 3;

/** Returns the layers of `arch` in evaluation order, with their offsets. */
export function sirenLayers(arch: SirenArch): LayerSlice[] {
  if (!Number.isInteger(arch.sineLayers) || arch.sineLayers < 1) {
    throw new RangeError(`SIREN sineLayers must be an integer >= 1, got ${arch.sineLayers}`);
  }
  if (!Number.isInteger(arch.width) || arch.width < 1 || arch.width > 256) {
    throw new RangeError(`SIREN width must be an integer in 1..256, got ${arch.width}`);
  }
  const layers: LayerSlice[] = [];
  let offset = 0;
  for (let index = 0; index <= arch.sineLayers; index++) {
    const inputs = index === 0 ? SIREN_INPUTS : arch.width;
    const sine = index < arch.sineLayers;
    const outputs = sine ? arch.width : SIREN_OUTPUTS;
    layers.push({ index, inputs, outputs, weightOffset: offset, biasOffset: offset + inputs * outputs, sine });
    offset += inputs * outputs + outputs;
  }
  return layers;
}

/** Returns Q, the number of parameters of one INR. */
export function sirenParamCount(arch: SirenArch): number {
  const layers = sirenLayers(arch);
  const last = layers[layers.length - 1];
  return last.biasOffset + last.outputs;
}

/** Returns the coordinate in [-1, 1] of pixel `index` along a side of `side` pixels. */
export function pixelCoordinate(index: number, side: number): number {
  return side === 1 ? 0 : -1 + (2 * index) / (side - 1);
}

/**
 * Evaluates one INR at coordinate (x, y) in float64 and returns RGB (not
 * clamped). `params` holds one image's Q parameters starting at `offset`.
 */
export function sirenForwardReference(
  arch: SirenArch,
  input: { params: ArrayLike<number>; x: number; y: number; offset?: number },
): number[] {
  const base = input.offset ?? 0;
  let h: number[] = [input.x, input.y];
  for (const layer of sirenLayers(arch)) {
    const next: number[] = new Array(layer.outputs);
    for (let o = 0; o < layer.outputs; o++) {
      let z = input.params[base + layer.biasOffset + o];
      for (let i = 0; i < layer.inputs; i++) {
        z += input.params[base + layer.weightOffset + o * layer.inputs + i] * h[i];
      }
      next[o] = layer.sine ? Math.sin(arch.w0 * z) : z;
    }
    h = next;
  }
  return h;
}

/**
 * Initializes one INR as COIN and SIREN do: the first layer's weights and
 * biases uniform in +-1/inputs, later layers' in +-sqrt(6/inputs)/w0.
 * `random` returns uniform numbers in [0, 1).
 */
export function sirenInit(arch: SirenArch, random: () => number): Float32Array {
  const params = new Float32Array(sirenParamCount(arch));
  for (const layer of sirenLayers(arch)) {
    const bound = layer.index === 0 ? 1 / layer.inputs : Math.sqrt(6 / layer.inputs) / arch.w0;
    const end = layer.biasOffset + layer.outputs;
    for (let i = layer.weightOffset; i < end; i++) params[i] = (2 * random() - 1) * bound;
  }
  return params;
}
