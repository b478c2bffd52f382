// Square tiles of non-square images. The fit works on square images, so a
// rate-distortion run on photographs such as Kodak (768x512) cuts each image
// into square tiles, fits one SIREN per tile, and measures each whole image
// from the squared errors of its tiles.

import type { RgbImage } from "../data/image.ts";

/** Tile counts of an image along each axis. */
export interface TileGrid {
  columns: number;
  rows: number;
}

/**
 * Returns the tile grid of a `width` x `height` image for square tiles of
 * `tile` pixels. Throws, naming the image, unless both sides are multiples of
 * `tile`.
 */
export function tileGrid(
  image: { width: number; height: number },
  tile: number,
  name: string,
): TileGrid {
  if (!Number.isInteger(tile) || tile < 1) {
    throw new RangeError(`The tile side must be a positive integer, got ${tile}.`);
  }
  if (image.width % tile !== 0 || image.height % tile !== 0) {
    throw new RangeError(
      `${name} is ${image.width}x${image.height}, which does not split into ${tile}x${tile} tiles. ` +
        "Choose a tile side that divides both sides (256 or 128 for Kodak).",
    );
  }
  return { columns: image.width / tile, rows: image.height / tile };
}

/**
 * Cuts `image` into square tiles of `tile` pixels, row by row and left to
 * right, as one array [tiles][tile][tile][3].
 */
export function cutTiles(image: RgbImage, tile: number, name: string): Uint8Array {
  const { columns, rows } = tileGrid(image, tile, name);
  const tiles = new Uint8Array(columns * rows * tile * tile * 3);
  const rowBytes = tile * 3;
  let out = 0;
  for (let ty = 0; ty < rows; ty++) {
    for (let tx = 0; tx < columns; tx++) {
      for (let y = 0; y < tile; y++) {
        const start = ((ty * tile + y) * image.width + tx * tile) * 3;
        tiles.set(image.rgb.subarray(start, start + rowBytes), out);
        out += rowBytes;
      }
    }
  }
  return tiles;
}

/**
 * Returns the PSNR in dB of each whole image, given the PSNR of each of its
 * equal-size tiles in order: the image's mean squared error is the mean of
 * its tiles' errors. `tilesPerImage[i]` tiles belong to image i.
 */
export function imagePsnrFromTiles(
  tilePsnr: ArrayLike<number>,
  tilesPerImage: readonly number[],
): number[] {
  const total = tilesPerImage.reduce((sum, count) => sum + count, 0);
  if (total !== tilePsnr.length) {
    throw new RangeError(
      `The images have ${total} tiles in all, but ${tilePsnr.length} tile PSNRs were given.`,
    );
  }
  const result: number[] = [];
  let next = 0;
  for (const count of tilesPerImage) {
    let error = 0;
    for (let i = next; i < next + count; i++) error += 10 ** (-tilePsnr[i] / 10);
    next += count;
    result.push(error === 0 ? Infinity : -10 * Math.log10(error / count));
  }
  return result;
}
