// The policy for images a loader cannot use (unreadable, corrupt, not an
// image, too large). Each is skipped with one warning and listed in
// `Dataset.skipped`, and the load fails once more than a set fraction of the
// requested images is bad. In strict mode the first bad image fails the load.

import { DataError } from "./errors.ts";

/** A file that a loader skipped. */
export interface SkippedFile {
  /** Path of the file. */
  path: string;
  /** The reason for the skip and the fix, without the path. */
  reason: string;
}

/** Default of `LoadOptions.maxBadFraction`: 1% of the requested images may be skipped. */
export const DEFAULT_MAX_BAD_FRACTION = 0.01;

/** Settings of {@linkcode BadImagePolicy}. */
export interface BadImageOptions {
  /** Fail on the first bad image instead of skipping it. Default: false. */
  strict?: boolean;
  /**
   * Largest fraction (0..1) of the requested images that may be skipped;
   * one more bad image fails the load. Default: {@linkcode DEFAULT_MAX_BAD_FRACTION}.
   */
  maxBadFraction?: number;
  /** Receives one line per skipped image. Default: ignore them. */
  onWarning?: (message: string) => void;
}

/** Checks the `maxBadFraction` option: undefined or a number in 0..1. */
export function checkMaxBadFraction(value: number | undefined): void {
  if (value !== undefined && !(value >= 0 && value <= 1)) {
    throw new RangeError(`maxBadFraction must be a number in 0..1, got ${value}.`);
  }
}

/** Counts the bad images of one load and decides when the load must fail. */
export class BadImagePolicy {
  readonly skipped: SkippedFile[] = [];
  readonly #source: string;
  readonly #total: number;
  readonly #strict: boolean;
  readonly #maxBadFraction: number;
  readonly #onWarning?: (message: string) => void;

  /** `source` names the dataset in errors; `total` is the number of images the load attempts. */
  constructor(source: string, total: number, options: BadImageOptions) {
    checkMaxBadFraction(options.maxBadFraction);
    this.#source = source;
    this.#total = total;
    this.#strict = options.strict ?? false;
    this.#maxBadFraction = options.maxBadFraction ?? DEFAULT_MAX_BAD_FRACTION;
    this.#onWarning = options.onWarning;
  }

  /**
   * Records a bad image. Throws `error` itself in strict mode, and a
   * `DataError` about the dataset once the skipped images exceed the maximum
   * fraction; otherwise reports one warning line.
   */
  skip(error: DataError): void {
    if (this.#strict) throw error;
    this.skipped.push({ path: error.path, reason: error.reason });
    // Checked on every skip, so a dataset that is mostly bad fails early instead of after decoding everything.
    if (this.skipped.length > this.#maxBadFraction * this.#total) throw this.#tooManyError();
    this.#onWarning?.(`skipped ${error.path}: ${error.reason}`);
  }

  #tooManyError(): DataError {
    const count = this.skipped.length;
    const percent = (100 * count) / this.#total;
    const first = this.skipped[0];
    return new DataError(
      this.#source,
      `at least ${count} of the ${this.#total} requested images (${formatPercent(percent)}) ` +
        "are unreadable or corrupt, " +
        `more than the maximum bad fraction ${this.#maxBadFraction} ` +
        `(${
          formatPercent(100 * this.#maxBadFraction)
        }). The first: ${first.path}: ${first.reason} ` +
        "Fix or remove the bad files, or raise the maximum (--max-bad-fraction).",
    );
  }
}

function formatPercent(percent: number): string {
  return `${Number(percent.toPrecision(3))}%`;
}
