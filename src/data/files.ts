// File-system helpers of the loaders: each turns the usual failures (not
// found, permission denied, wrong kind of entry) into a `DataError` that names
// the path and the fix.

import { DataError } from "./errors.ts";

/** Reads a file, gunzipping it when it starts with the gzip magic bytes. */
export async function readMaybeGzip(path: string): Promise<Uint8Array> {
  const bytes = await readFileOrThrow(path);
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
      .pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (error) {
    throw new DataError(
      path,
      `corrupt gzip file: ${(error as Error).message}. Download the file again.`,
    );
  }
}

/** Reads a file, turning "not found" and permission errors into `DataError`. */
export async function readFileOrThrow(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new DataError(path, "file not found. Check the path.");
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new DataError(
        path,
        "permission denied. Grant read access (deno run --allow-read) to the file.",
      );
    }
    if (error instanceof Deno.errors.IsADirectory) {
      throw new DataError(path, "is a folder, expected a file.");
    }
    throw error;
  }
}

/** Stats a path, turning "not found" and permission errors into `DataError`. */
export async function statOrThrow(path: string): Promise<Deno.FileInfo> {
  try {
    return await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new DataError(path, "not found. Check the path.");
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new DataError(
        path,
        "permission denied. Grant read access (deno run --allow-read) to it.",
      );
    }
    throw error;
  }
}

/** Lists the entries of a folder, sorted by name (UTF-16 code unit order, independent of locale). */
export async function listFolder(path: string): Promise<Deno.DirEntry[]> {
  const entries: Deno.DirEntry[] = [];
  try {
    for await (const entry of Deno.readDir(path)) entries.push(entry);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new DataError(path, "folder not found. Check the path.");
    }
    if (error instanceof Deno.errors.NotADirectory) {
      throw new DataError(path, "is a file, expected a folder.");
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new DataError(
        path,
        "permission denied. Grant read access (deno run --allow-read) to the folder.",
      );
    }
    throw error;
  }
  return entries.sort((a, b) => compareCodeUnits(a.name, b.name));
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
