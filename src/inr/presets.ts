// Encoding presets per dataset tier: image side, SIREN shape and fitting
// schedule. Every field can be overridden through the encode options.

import type { SirenArch } from "./siren.ts";

/** Names of the built-in presets. */
export type EncodePresetName = "cifar" | "flowers" | "imagenet";

/** One dataset tier's encoding settings. */
export interface EncodePreset {
  name: EncodePresetName;
  /** Image side R in pixels the tier resizes to. */
  side: number;
  arch: SirenArch;
  /** Adam iterations per image, each over the full image. */
  iterations: number;
  /** Initial learning rate, decayed to 0 by a cosine schedule. */
  learningRate: number;
}

// w0 = 30 in every sine layer, as in SIREN and COIN.
const W0 = 30;

/** The built-in presets. Q is 809 for cifar, 9699 for flowers and 15003 for imagenet. */
export const ENCODE_PRESETS: Readonly<Record<EncodePresetName, Readonly<EncodePreset>>> = {
  cifar: {
    name: "cifar",
    side: 32,
    arch: { sineLayers: 5, width: 13, w0: W0 },
    iterations: 5000,
    learningRate: 5e-4,
  },
  flowers: {
    name: "flowers",
    side: 224,
    arch: { sineLayers: 10, width: 32, w0: W0 },
    iterations: 5000,
    learningRate: 5e-4,
  },
  imagenet: {
    name: "imagenet",
    side: 224,
    arch: { sineLayers: 10, width: 40, w0: W0 },
    iterations: 5000,
    learningRate: 5e-4,
  },
};

/** Returns a copy of the preset called `name`; throws a RangeError listing the names otherwise. */
export function encodePreset(name: string): EncodePreset {
  const preset = (ENCODE_PRESETS as Record<string, EncodePreset | undefined>)[name];
  if (!preset || !Object.hasOwn(ENCODE_PRESETS, name)) {
    const names = Object.keys(ENCODE_PRESETS).join(", ");
    throw new RangeError(`Unknown encode preset "${name}". Use one of: ${names}.`);
  }
  return { ...preset, arch: { ...preset.arch } };
}
