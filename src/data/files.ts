// File-system helpers of the loaders: each turns the usual failures (not
// found, permission denied, wrong kind of entry) into a `DataError` that names
// the path and the fix.

import { DataError } from "./errors.ts";

/**
 * Largest gunzipped size that {@linkcode readMaybeGzip} accepts by default:
 * 2 GiB, above the biggest IDX dataset in use (EMNIST ByClass, 0.55 GB), so a
 * larger output is a damaged file or a decompression bomb.
 */
export const MAX_GUNZIP_BYTES = 2 ** 31;

/** Options of {@linkcode readMaybeGzip}. */
export interface GunzipOptions {
  /** Reject a file that gunzips to more bytes than this. Default: {@linkcode MAX_GUNZIP_BYTES}. */
  maxBytes?: number;
}

/**
 * Reads a file, gunzipping it when it starts with the gzip magic bytes. The
 * output is decompressed in chunks and rejected with a `DataError` as soon as
 * it passes `maxBytes`, before the whole of it is held in memory.
 */
export async function readMaybeGzip(
  path: string,
  options: GunzipOptions = {},
): Promise<Uint8Array> {
  const bytes = await readFileOrThrow(path);
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  const maxBytes = options.maxBytes ?? MAX_GUNZIP_BYTES;
  const reader = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream("gzip")).getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) {
        await reader.cancel();
        throw new DataError(
          path,
          `gunzips to more than ${maxBytes} bytes, the maximum for one file. ` +
            "The file is damaged or not a dataset file.",
        );
      }
      chunks.push(value);
    }
  } catch (error) {
    if (error instanceof DataError) throw error;
    throw new DataError(
      path,
      `corrupt gzip file: ${(error as Error).message}. Download the file again.`,
    );
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** Reads a file, turning the usual file-system errors into a `DataError`. */
export async function readFileOrThrow(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    throw await describeFsError(error, path, "file") ?? error;
  }
}

/**
 * Reads one regular file of at most `maxBytes` bytes. Any failure, including
 * an unexpected I/O error, becomes a `DataError` naming the file, so a loader
 * can skip the file. A device, FIFO or socket is rejected before it is opened,
 * because reading /dev/zero or a FIFO would never finish.
 */
export async function readRegularFile(path: string, maxBytes: number): Promise<Uint8Array> {
  try {
    const info = await Deno.stat(path);
    if (info.isDirectory) throw new DataError(path, "is a folder, expected a file.");
    if (!info.isFile) {
      throw new DataError(
        path,
        "is not a regular file (a device, FIFO or socket), so it is not read.",
      );
    }
    if (info.size > maxBytes) {
      throw new DataError(
        path,
        `is ${info.size} bytes, more than the maximum of ${maxBytes} bytes for one file.`,
      );
    }
    return await Deno.readFile(path);
  } catch (error) {
    if (error instanceof DataError) throw error;
    throw await describeFsError(error, path, "file") ??
      new DataError(path, `could not be read: ${(error as Error).message}`);
  }
}

/** Stats a path, turning the usual file-system errors into a `DataError`. */
export async function statOrThrow(path: string): Promise<Deno.FileInfo> {
  try {
    return await Deno.stat(path);
  } catch (error) {
    throw await describeFsError(error, path, "path") ?? error;
  }
}

/** Lists the entries of a folder, sorted by name (UTF-16 code unit order, independent of locale). */
export async function listFolder(path: string): Promise<Deno.DirEntry[]> {
  const entries: Deno.DirEntry[] = [];
  try {
    for await (const entry of Deno.readDir(path)) entries.push(entry);
  } catch (error) {
    throw await describeFsError(error, path, "folder") ?? error;
  }
  return entries.sort((a, b) => compareCodeUnits(a.name, b.name));
}

/**
 * Tells whether a name read from a folder had bytes that are not UTF-8. Deno
 * returns such names with U+FFFD in place of the bad bytes, so the name no
 * longer leads back to the file.
 */
export function hasInvalidName(path: string): boolean {
  return path.includes("\uFFFD");
}

/**
 * Returns a `DataError` with the reason and the fix for the usual
 * file-system errors on `path`, or undefined for any other error.
 */
export async function describeFsError(
  error: unknown,
  path: string,
  kind: "file" | "folder" | "path",
): Promise<DataError | undefined> {
  if (error instanceof Deno.errors.NotFound) {
    if (hasInvalidName(path)) {
      return new DataError(
        path,
        "the name is not valid UTF-8, so the file system cannot find it under the name Deno reads " +
          "(invalid bytes show as U+FFFD). Rename it.",
      );
    }
    const link = await Deno.lstat(path).catch(() => undefined);
    if (link?.isSymlink) {
      return new DataError(
        path,
        "is a symbolic link whose target does not exist. Fix or remove the link.",
      );
    }
    return new DataError(path, `${kind === "path" ? "" : `${kind} `}not found. Check the path.`);
  }
  if (error instanceof Deno.errors.NotCapable) {
    return new DataError(
      path,
      "permission denied: Deno has no read access to it. Grant it with --allow-read.",
    );
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new DataError(
      path,
      "permission denied by the operating system. Check the owner and mode of the " +
        `${kind === "path" ? "file" : kind}.`,
    );
  }
  if (error instanceof Deno.errors.IsADirectory) {
    return new DataError(path, "is a folder, expected a file.");
  }
  if (error instanceof Deno.errors.NotADirectory) {
    return new DataError(path, "is a file, expected a folder.");
  }
  if (error instanceof Deno.errors.FilesystemLoop) {
    return new DataError(path, "is a loop of symbolic links. Fix or remove the link.");
  }
  return undefined;
}

/** Reads the first `count` bytes of a file (fewer if the file is shorter). */
export async function readHead(path: string, count: number): Promise<Uint8Array> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch {
    return await readFileOrThrow(path); // throws the matching DataError
  }
  try {
    const head = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      const read = await file.read(head.subarray(filled));
      if (read === null) break;
      filled += read;
    }
    return head.subarray(0, filled);
  } finally {
    file.close();
  }
}

/** Orders strings by UTF-16 code units, as `Array.prototype.sort` does by default, for use in comparators. */
export function compareCodeUnits(a: string, b: string): number {
  if (a < b) return -1;
  if (a > b) return 1;
  return 0;
}
