// The one error type of the data layer, so that the CLI can print its message
// without a stack trace: every `DataError` is about the user's input files.

/** Error raised for unreadable, corrupt or unsupported image and dataset files. */
export class DataError extends Error {
  override name = "DataError";
  /** The file or folder the error is about. */
  readonly path: string;
  /** The problem and what to do, without the path. */
  readonly reason: string;

  constructor(path: string, reason: string) {
    super(`${path}: ${reason}`);
    this.path = path;
    this.reason = reason;
  }
}
