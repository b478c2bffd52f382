import { assertEquals } from "@std/assert";
import { pixelCoordinate, sirenInit, sirenLayers, sirenParamCount } from "../src/inr/siren.ts";
import { seededRandom } from "./_util.ts";

Deno.test("siren layout matches the published parameter counts", () => {
  assertEquals(sirenParamCount({ sineLayers: 5, width: 13, w0: 30 }), 809);
  const layers = sirenLayers({ sineLayers: 5, width: 13, w0: 30 });
  assertEquals(layers.length, 6);
  assertEquals(layers[0], { index: 0, inputs: 2, outputs: 13, weightOffset: 0, biasOffset: 26, sine: true });
  assertEquals(layers[5].sine, false);
  assertEquals(layers[5].outputs, 3);
  assertEquals(layers[1].weightOffset, 39);
});

Deno.test("siren init stays inside the SIREN bounds", () => {
  const arch = { sineLayers: 3, width: 8, w0: 30 };
  const params = sirenInit(arch, seededRandom(1));
  for (const layer of sirenLayers(arch)) {
    const bound = layer.index === 0 ? 1 / layer.inputs : Math.sqrt(6 / layer.inputs) / 30;
    for (let i = layer.weightOffset; i < layer.biasOffset + layer.outputs; i++) {
      if (Math.abs(params[i]) > bound) throw new Error(`param ${i} = ${params[i]} exceeds ${bound}`);
    }
  }
});

Deno.test("pixelCoordinate spans -1 to 1", () => {
  assertEquals(pixelCoordinate(0, 32), -1);
  assertEquals(pixelCoordinate(31, 32), 1);
  assertEquals(pixelCoordinate(0, 1), 0);
});
