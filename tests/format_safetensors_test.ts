import { assertEquals, assertThrows } from "@std/assert";
import { decodeSafetensors, encodeSafetensors } from "../src/format/safetensors.ts";

Deno.test("safetensors round trip keeps names, shapes and values", () => {
  const a = new Float32Array([1, -2, 3.5, 4, 5, 6]);
  const b = new Int32Array([7, 8, 9]);
  const bytes = encodeSafetensors([{ name: "w", shape: [2, 3], data: a }, { name: "n", shape: [3], data: b }], { arch: "x" });
  const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals((8 + headerLength) % 8, 0);
  const { tensors, metadata } = decodeSafetensors(bytes);
  assertEquals(metadata, { arch: "x" });
  assertEquals(tensors.get("w")!.shape, [2, 3]);
  assertEquals([...tensors.get("w")!.data], [...a]);
  assertEquals([...tensors.get("n")!.data], [...b]);
});

Deno.test("safetensors rejects a shape that does not match the data", () => {
  assertThrows(() => encodeSafetensors([{ name: "w", shape: [4], data: new Float32Array(3) }]), RangeError, "Tensor w");
});
