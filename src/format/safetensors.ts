// Safetensors writer and reader (https://huggingface.co/docs/safetensors):
// an 8-byte little-endian header length, a JSON header mapping tensor names
// to dtype, shape and byte offsets, then the raw little-endian data. Used for
// trained classifier weights, so they load in PyTorch with
// `safetensors.torch.load_file`.

/** One tensor to store. */
export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array | Int32Array | Uint8Array;
}

const DTYPES = new Map<string, string>([
  ["Float32Array", "F32"],
  ["Int32Array", "I32"],
  ["Uint8Array", "U8"],
]);

/** Serializes tensors and optional string metadata to safetensors bytes. */
export function encodeSafetensors(tensors: NamedTensor[], metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new RangeError(`Tensor ${t.name}: shape [${t.shape}] has ${count} elements, data has ${t.data.length}.`);
    }
    const dtype = DTYPES.get(t.data.constructor.name);
    if (!dtype) throw new TypeError(`Tensor ${t.name}: unsupported array type ${t.data.constructor.name}.`);
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned.
  json += " ".repeat((8 - ((8 + new TextEncoder().encode(json).length) % 8)) % 8);
  const jsonBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + jsonBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(jsonBytes.length), true);
  out.set(jsonBytes, 8);
  let position = 8 + jsonBytes.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), position);
    position += t.data.byteLength;
  }
  return out;
}

/** Parses safetensors bytes; `file` names the source in error messages. */
export function decodeSafetensors(bytes: Uint8Array, file = "safetensors data"): {
  tensors: Map<string, NamedTensor>;
  metadata: Record<string, string>;
} {
  if (bytes.length < 8) throw new Error(`${file}: too short to be a safetensors file.`);
  const headerLength = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  if (headerLength > bytes.length - 8 || headerLength > 100_000_000) {
    throw new Error(`${file}: header length ${headerLength} exceeds the file size.`);
  }
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  const base = 8 + headerLength;
  const tensors = new Map<string, NamedTensor>();
  for (const [name, entry] of Object.entries(header as Record<string, any>)) {
    if (name === "__metadata__") continue;
    const [start, end] = entry.data_offsets as [number, number];
    if (!(start >= 0 && end >= start && base + end <= bytes.length)) {
      throw new Error(`${file}: tensor ${name} has offsets [${start}, ${end}] outside the data.`);
    }
    const slice = bytes.slice(base + start, base + end);
    const data = entry.dtype === "F32"
      ? new Float32Array(slice.buffer)
      : entry.dtype === "I32"
      ? new Int32Array(slice.buffer)
      : entry.dtype === "U8"
      ? slice
      : undefined;
    if (!data) throw new Error(`${file}: tensor ${name} has unsupported dtype ${entry.dtype}.`);
    tensors.set(name, { name, shape: entry.shape, data });
  }
  return { tensors, metadata: header.__metadata__ ?? {} };
}
