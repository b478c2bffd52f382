// Reading and atomically writing .rinr files.

import { basename, dirname, join } from "@std/path";
import {
  type EncodeRinrOptions,
  encodeRinrParts,
  FormatError,
  type RinrDataset,
  type RinrFile,
} from "./rinr.ts";
import { parseRinr } from "./rinr_parse.ts";

/** Options for {@linkcode writeRinr}. */
export interface WriteRinrOptions extends EncodeRinrOptions {
  /** Replace an existing file at the target path. Default: false. */
  overwrite?: boolean;
}

/**
 * Writes `data` to `path` atomically: the bytes go to a temporary file in the
 * same folder, which is flushed to disk and then renamed, so readers never see
 * a partial file. Throws `Deno.errors.AlreadyExists` when `path` exists and
 * `overwrite` is not set.
 */
export async function writeRinr(
  path: string,
  data: RinrDataset,
  options: WriteRinrOptions = {},
): Promise<void> {
  const parts = encodeRinrParts(data, options);
  if (!options.overwrite && await exists(path)) throw alreadyExists(path);

  const temporary = join(
    dirname(path),
    `.${basename(path)}.${crypto.randomUUID().slice(0, 8)}.tmp`,
  );
  let file: Deno.FsFile | undefined = await Deno.open(temporary, { write: true, createNew: true });
  try {
    for (const part of parts) await writeFully(file, part);
    await file.syncData();
    file.close();
    file = undefined;
    if (options.overwrite) {
      await Deno.rename(temporary, path);
    } else {
      await linkWithoutOverwrite(temporary, path);
    }
  } catch (error) {
    file?.close();
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
  await syncFolder(dirname(path));
}

/**
 * Reads and validates a .rinr file. Throws a `FormatError` naming the file and
 * the invalid field, also when the path is missing, unreadable or not a
 * regular file.
 */
export async function readRinr(path: string): Promise<RinrFile> {
  let bytes: Uint8Array;
  try {
    // A FIFO or a device such as /dev/zero would never end, so only regular files are read.
    const info = await Deno.stat(path);
    if (info.isDirectory) {
      throw new FormatError(path, "file", "is a folder. Pass the path of a .rinr file.");
    }
    if (!info.isFile) {
      throw new FormatError(path, "file", "is not a regular file. Pass the path of a .rinr file.");
    }
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof FormatError) throw error;
    throw new FormatError(path, "file", describeReadError(error));
  }
  return parseRinr(bytes, path);
}

function describeReadError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "not found. Check the path.";
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return "permission denied. Grant read access to the file (deno run --allow-read).";
  }
  if (error instanceof Deno.errors.FilesystemLoop) {
    return "is a loop of symbolic links. Pass the path of a .rinr file.";
  }
  return `could not be read: ${(error as Error).message}`;
}

async function writeFully(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.byteLength) written += await file.write(bytes.subarray(written));
}

/**
 * Publishes `temporary` as `path` unless `path` exists. A hard link fails
 * atomically when the target exists; file systems without hard links fall
 * back to check-then-rename, which can race with another writer.
 */
async function linkWithoutOverwrite(temporary: string, path: string): Promise<void> {
  try {
    await Deno.link(temporary, path);
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) throw alreadyExists(path);
    if (await exists(path)) throw alreadyExists(path);
    await Deno.rename(temporary, path);
    return;
  }
  await Deno.remove(temporary);
}

/** Flushes the folder entry of a rename to disk where the platform allows opening folders. */
async function syncFolder(folder: string): Promise<void> {
  let handle: Deno.FsFile | undefined;
  try {
    handle = await Deno.open(folder, { read: true });
    await handle.sync();
  } catch {
    // Windows cannot open a folder as a file. The data itself was already synced.
  } finally {
    handle?.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

function alreadyExists(path: string): Error {
  return new Deno.errors.AlreadyExists(
    `${path} already exists. Choose another output path, or allow overwriting (overwrite: true).`,
  );
}
