// Resizing: hand-computed small cases, the center-crop policy, and agreement
// with Pillow (through /usr/bin/python3 when PIL is installed, and through a
// Pillow-made Lanczos downscale in ../shared/data/tiny when present).

import { assertEquals, assertThrows } from "@std/assert";
import {
  decodeImage,
  encodePng,
  type ResizeFilter,
  resizeImage,
  resizeToSquare,
  type RgbImage,
} from "../src/data/mod.ts";
import { squareCropWindow } from "../src/data/resize.ts";
import { assertClose, seededRandom } from "./_util.ts";

const FILTERS: ResizeFilter[] = ["box", "triangle", "lanczos3"];

function randomImage(seed: number, width: number, height: number): RgbImage {
  const random = seededRandom(seed);
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = Math.floor(random() * 256);
  return { width, height, rgb };
}

/** Returns an image whose channel c at (x, y) is value(x, y, c). */
function imageOf(
  width: number,
  height: number,
  value: (x: number, y: number, c: number) => number,
): RgbImage {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) rgb[(y * width + x) * 3 + c] = value(x, y, c);
    }
  }
  return { width, height, rgb };
}

Deno.test("resizeImage same size is identity", () => {
  const image = randomImage(1, 9, 6);
  for (const filter of FILTERS) {
    const out = resizeImage(image, { width: 9, height: 6, filter });
    assertClose(`identity ${filter}`, out.rgb, image.rgb, { atol: 0, rtol: 0 });
  }
});

Deno.test("resizeImage keeps constant image constant", () => {
  const image = imageOf(17, 11, (_x, _y, c) => [12, 200, 255][c]);
  const sizes: [number, number][] = [[5, 4], [8, 11], [40, 23], [17, 3]];
  for (const filter of FILTERS) {
    for (const [width, height] of sizes) {
      const out = resizeImage(image, { width, height, filter });
      const expected = imageOf(width, height, (_x, _y, c) => [12, 200, 255][c]);
      // Lanczos weights are normalized, so float rounding stays well below one level.
      assertClose(`constant ${filter} ${width}x${height}`, out.rgb, expected.rgb, {
        atol: 0,
        rtol: 0,
      });
    }
  }
});

Deno.test("resizeImage box 2x averages blocks", () => {
  // Each 2x2 block holds the values v, v+4, v+8, v+12, whose mean is v+6.
  const image = imageOf(
    8,
    6,
    (x, y, c) =>
      10 * c + 20 * (Math.floor(x / 2) + 4 * Math.floor(y / 2)) + 4 * (x % 2) + 8 * (y % 2),
  );
  const out = resizeImage(image, { width: 4, height: 3, filter: "box" });
  const expected = imageOf(4, 3, (x, y, c) => 10 * c + 20 * (x + 4 * y) + 6);
  assertClose("box 2x", out.rgb, expected.rgb, { atol: 0, rtol: 0 });
});

Deno.test("resizeImage triangle 2x weights 1-3-3-1", () => {
  // Downscaling by 2 stretches the triangle to a support of 2 input pixels, so
  // output pixel o weights inputs 2o-1 .. 2o+2 by 1/8, 3/8, 3/8, 1/8; at the
  // border the missing tap is dropped and the rest renormalized (1/7, 3/7, 3/7).
  const row = [0, 80, 160, 240, 40, 120];
  const image = imageOf(6, 1, (x) => row[x]);
  const out = resizeImage(image, { width: 3, height: 1, filter: "triangle" });
  const expected = [
    (3 * 0 + 3 * 80 + 160) / 7,
    (80 + 3 * 160 + 3 * 240 + 40) / 8,
    (240 + 3 * 40 + 3 * 120) / 7,
  ].map(Math.round);
  assertEquals(Array.from(out.rgb.filter((_, i) => i % 3 === 0)), expected);
});

Deno.test("resizeImage upscale interpolates linearly", () => {
  // Upscaling 2 -> 4 with the triangle puts output centers at input 0.25, 0.75, 1.25, 1.75 (in
  // pixel-center units -0.25, 0.25, 0.75, 1.25): the outer ones clamp to the edge pixels.
  const image = imageOf(2, 1, (x) => [0, 200][x]);
  const out = resizeImage(image, { width: 4, height: 1, filter: "triangle" });
  assertEquals(Array.from(out.rgb.filter((_, i) => i % 3 === 0)), [0, 50, 150, 200]);
});

Deno.test("resizeImage lanczos3 stays in range", () => {
  // A hard edge makes Lanczos overshoot, and the result must clamp instead of wrapping around.
  const image = imageOf(32, 4, (x) => (x < 16 ? 0 : 255));
  for (const width of [12, 70]) {
    const out = resizeImage(image, { width, height: 4, filter: "lanczos3" });
    const left = out.rgb[0];
    const right = out.rgb[(width - 1) * 3];
    assertEquals(left, 0, `left edge of ${width}-wide output`);
    assertEquals(right, 255, `right edge of ${width}-wide output`);
  }
});

Deno.test("resizeImage rejects bad sizes", () => {
  const image = randomImage(2, 4, 4);
  assertThrows(() => resizeImage(image, { width: 0, height: 4 }), RangeError, "width");
  assertThrows(() => resizeImage(image, { width: 4, height: 2.5 }), RangeError, "height");
  assertThrows(() => resizeToSquare(image, { size: -1 }), RangeError, "size");
  assertThrows(
    () => resizeImage({ width: 4, height: 4, rgb: new Uint8Array(5) }, { width: 2, height: 2 }),
    RangeError,
    "expected 48",
  );
});

Deno.test("squareCropWindow follows torchvision", () => {
  // Resize(224) of 500x375: the shorter side becomes 224, the longer int(224 * 500 / 375) = 298;
  // CenterCrop(224) starts at round((298 - 224) / 2) = 37.
  assertEquals(squareCropWindow(500, 375, 224), {
    fullWidth: 298,
    fullHeight: 224,
    left: 37,
    top: 0,
  });
  // Portrait: 523 wide, 600 high -> 224 x int(224 * 600 / 523) = 256, top round(16) = 16.
  assertEquals(squareCropWindow(523, 600, 224), {
    fullWidth: 224,
    fullHeight: 256,
    left: 0,
    top: 16,
  });
  // Python rounds half to even: (227 - 224) / 2 = 1.5 rounds to 2, (229 - 224) / 2 = 2.5 to 2.
  assertEquals(squareCropWindow(227, 224, 224).left, 2);
  assertEquals(squareCropWindow(229, 224, 224).left, 2);
  assertEquals(squareCropWindow(32, 32, 32), { fullWidth: 32, fullHeight: 32, left: 0, top: 0 });
});

Deno.test("resizeToSquare equals resize then crop", () => {
  const image = randomImage(3, 45, 30);
  const square = resizeToSquare(image, { size: 16 });
  const window = squareCropWindow(45, 30, 16);
  const full = resizeImage(image, { width: window.fullWidth, height: window.fullHeight });
  const crop = new Uint8Array(16 * 16 * 3);
  for (let y = 0; y < 16; y++) {
    const from = ((window.top + y) * full.width + window.left) * 3;
    crop.set(full.rgb.subarray(from, from + 16 * 3), y * 16 * 3);
  }
  assertClose("square vs full resize + crop", square.rgb, crop, { atol: 0, rtol: 0 });
});

Deno.test("resizeToSquare crops already-short images", () => {
  // The shorter side already equals the target, so only the crop applies.
  const image = randomImage(4, 10, 6);
  const out = resizeToSquare(image, { size: 6 });
  const expected = imageOf(6, 6, (x, y, c) => image.rgb[(y * 10 + x + 2) * 3 + c]);
  assertClose("crop only", out.rgb, expected.rgb, { atol: 0, rtol: 0 });
});

// ---------------------------------------------------------------------------
// Agreement with Pillow

function pilAvailable(): boolean {
  try {
    return new Deno.Command("/usr/bin/python3", { args: ["-c", "import PIL"], stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

const PIL_FILTERS: Record<ResizeFilter, string> = {
  box: "BOX",
  triangle: "BILINEAR",
  lanczos3: "LANCZOS",
};

Deno.test("resizeImage matches Pillow within 1", async (t) => {
  if (!pilAvailable()) {
    await t.step({
      name: "skipped: /usr/bin/python3 with PIL is not installed",
      ignore: true,
      fn: () => {},
    });
    return;
  }
  const cases: [number, number, number, number][] = [
    [37, 23, 16, 11],
    [10, 7, 25, 17],
    [64, 48, 32, 24],
    [50, 50, 7, 7],
    [20, 10, 20, 5],
  ];
  const path = await Deno.makeTempFile({ suffix: ".png" });
  try {
    for (const [width, height, outWidth, outHeight] of cases) {
      const image = randomImage(width * height, width, height);
      await Deno.writeFile(path, await encodePng(image));
      for (const filter of FILTERS) {
        const script = "import sys; from PIL import Image; " +
          `sys.stdout.buffer.write(Image.open(sys.argv[1]).resize((${outWidth}, ${outHeight}), Image.${
            PIL_FILTERS[filter]
          }).tobytes())`;
        const result = new Deno.Command("/usr/bin/python3", { args: ["-c", script, path] })
          .outputSync();
        const ours = resizeImage(image, { width: outWidth, height: outHeight, filter });
        // Pillow rounds to 8 bits between its two passes, but this code does not.
        assertClose(
          `${filter} ${width}x${height} -> ${outWidth}x${outHeight}`,
          ours.rgb,
          result.stdout,
          { atol: 1, rtol: 0 },
        );
      }
    }
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("resizeImage matches Pillow Lanczos on kodim23", async (t) => {
  const shared = new URL("../../shared/data/", import.meta.url);
  let source: Uint8Array, reference: Uint8Array;
  try {
    source = await Deno.readFile(new URL("kodak24/kodim23.png", shared));
    reference = await Deno.readFile(new URL("tiny/kodak/kodim23_192x128.png", shared));
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    await t.step({
      name: "skipped: ../shared/data/kodak24 or tiny/kodak is absent",
      ignore: true,
      fn: () => {},
    });
    return;
  }
  // The reference is kodim23 (768x512) downscaled 4x by Pillow's LANCZOS filter.
  const image = await decodeImage(source, "kodim23.png");
  const expected = await decodeImage(reference, "kodim23_192x128.png");
  const ours = resizeImage(image, { width: 192, height: 128, filter: "lanczos3" });
  assertClose("kodim23 Lanczos 4x", ours.rgb, expected.rgb, { atol: 1, rtol: 0 });
});
