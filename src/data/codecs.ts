// Loading the WebAssembly image codecs, and recovering them after a failed
// decode. A codec that fails traps or throws out of the middle of its C or
// Rust code, which leaves that instance's stack pointer and heap as they were
// at the failure. Measured with @jsquash/jpeg 1.6.0 and @jsquash/png 3.1.1:
// after about 70 failed JPEG decodes, or a few hundred failed PNG decodes,
// every later decode of a valid file failed or never returned. So a MozJPEG
// instance is replaced after a failure, and the PNG decoder, which wasm-bindgen
// allows only once per process, gets its stack pointer restored (image.ts).

import initPngCodec from "@jsquash/png/codec/pkg/squoosh_png.js";
import mozjpegFactory, { type MozJPEGModule } from "@jsquash/jpeg/codec/dec/mozjpeg_dec.js";

/** The loaded codecs. */
export interface Codecs {
  /** The MozJPEG instance to decode with; {@linkcode replaceMozjpeg} swaps in a fresh one. */
  mozjpeg: Promise<MozJPEGModule>;
  /** Messages MozJPEG printed during the current decode; it has no other error channel. */
  jpegMessages: string[];
  /**
   * Moves the PNG decoder's shadow stack pointer by `delta` bytes and returns
   * the new value; `0` reads it.
   */
  pngStackPointer: (delta: number) => number;
  /** Creates a MozJPEG instance with its own fresh memory. */
  createMozjpeg: () => Promise<MozJPEGModule>;
}

let codecsPromise: Promise<Codecs> | undefined;

/**
 * Instantiates both WebAssembly codecs once. The .wasm bytes are read with
 * `Deno.readFile` from the packages' resolved file URLs, because that also
 * reads the embedded file system of a `deno compile` binary, while the
 * packages' own loaders `fetch` a file URL.
 */
export function loadCodecs(): Promise<Codecs> {
  codecsPromise ??= (async () => {
    const jpegMessages: string[] = [];
    const record = (message: string) => jpegMessages.push(message);
    try {
      // NOTE: not verified inside a `deno compile` binary yet.
      const [pngWasm, jpegWasm] = await Promise.all([
        readPackageFile("@jsquash/png/codec/pkg/squoosh_png_bg.wasm"),
        readPackageFile("@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm"),
      ]);
      // Compiled once, so that a replacement instance costs only the instantiation.
      const jpegModule = jpegWasm ? await WebAssembly.compile(jpegWasm) : undefined;
      const createMozjpeg = () =>
        mozjpegFactory({
          noInitialRun: true,
          print: record,
          printErr: record,
          ...(jpegModule ? { instantiateWasm: instantiateFrom(jpegModule) } : {}),
        } as never);
      const [mozjpeg, pngExports] = await Promise.all([createMozjpeg(), initPngCodec(pngWasm)]);
      const addToStackPointer =
        (pngExports as unknown as PngExports).__wbindgen_add_to_stack_pointer;
      return {
        mozjpeg: Promise.resolve(mozjpeg),
        jpegMessages,
        pngStackPointer: (delta: number) => addToStackPointer(delta),
        createMozjpeg,
      };
    } catch (error) {
      throw new Error(
        `Failed to load the WebAssembly image codecs of @jsquash/png and @jsquash/jpeg: ${error}. ` +
          "Check that the npm packages are installed and that the process may read them (--allow-read).",
      );
    }
  })();
  codecsPromise.catch(() => codecsPromise = undefined);
  return codecsPromise;
}

/** Replaces the MozJPEG instance after a failed decode; decodes that start later use the new one. */
export function replaceMozjpeg(codecs: Codecs): void {
  codecs.mozjpeg = codecs.createMozjpeg();
}

/** The export of a wasm-bindgen module that moves its shadow stack pointer. */
interface PngExports {
  __wbindgen_add_to_stack_pointer: (delta: number) => number;
}

/** Emscripten's `instantiateWasm` hook: instantiates an already compiled module. */
function instantiateFrom(module: WebAssembly.Module) {
  return (
    imports: WebAssembly.Imports,
    receiveInstance: (instance: WebAssembly.Instance, module: WebAssembly.Module) => void,
  ) => {
    WebAssembly.instantiate(module, imports).then((instance) => receiveInstance(instance, module));
    return {};
  };
}

/** Reads a file of an npm package, or returns undefined where it has no file URL (the package then fetches it). */
async function readPackageFile(specifier: string): Promise<Uint8Array<ArrayBuffer> | undefined> {
  const url = new URL(import.meta.resolve(specifier));
  if (url.protocol !== "file:") return undefined;
  return await Deno.readFile(url);
}
