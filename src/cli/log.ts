// Progress and messages on stderr. Results go to stdout, and everything a
// person watches goes here. On a terminal a progress line redraws in place.
// When stderr is a file or pipe, a plain line is printed at most every
// `plainEverySeconds`, so logs stay readable.

/** How much a command prints on stderr. */
export type Verbosity = "quiet" | "normal" | "verbose";

const encoder = new TextEncoder();

/** Writes progress, notices and warnings to stderr. */
export class Log {
  readonly verbosity: Verbosity;
  readonly isTerminal: boolean;
  readonly plainEverySeconds: number;
  #lastPlain = 0;
  #drawn = false;
  #warnings = 0;

  /** True when stdout carries one JSON object, so `result` lines are suppressed. */
  readonly json: boolean;

  constructor(verbosity: Verbosity = "normal", options: { plainEverySeconds?: number; json?: boolean } = {}) {
    this.verbosity = verbosity;
    this.json = options.json ?? false;
    this.isTerminal = Deno.stderr.isTerminal();
    this.plainEverySeconds = options.plainEverySeconds ?? 10;
  }

  /** Number of warnings printed so far. */
  get warnings(): number {
    return this.#warnings;
  }

  #write(text: string): void {
    Deno.stderr.writeSync(encoder.encode(text));
  }

  #clear(): void {
    if (this.#drawn) {
      this.#write("\r\x1b[2K");
      this.#drawn = false;
    }
  }

  /** Prints a normal message. */
  info(message: string): void {
    if (this.verbosity === "quiet") return;
    this.#clear();
    this.#write(`${message}\n`);
  }

  /**
   * Prints a command's result line on stdout, unless --json was given, in
   * which case the JSON object is the only stdout output. Shown with --quiet too.
   */
  result(message: string): void {
    if (this.json) return;
    this.#clear();
    console.log(message);
  }

  /** Prints a message only with --verbose. */
  detail(message: string): void {
    if (this.verbosity === "verbose") this.info(message);
  }

  /** Prints a warning, also with --quiet. */
  warn(message: string): void {
    this.#warnings++;
    this.#clear();
    const prefix = this.isTerminal ? "\x1b[33mwarning\x1b[0m" : "warning";
    this.#write(`${prefix}: ${message}\n`);
  }

  /**
   * Shows progress of a long stage: items done of total, rate, ETA and a
   * free-form status (running PSNR or loss).
   */
  progress(stage: string, state: { done: number; total: number; startedAt: number; unit: string; status?: string }): void {
    if (this.verbosity === "quiet") return;
    const now = performance.now();
    const seconds = Math.max(1e-9, (now - state.startedAt) / 1000);
    const rate = state.done / seconds;
    const eta = rate > 0 ? (state.total - state.done) / rate : Infinity;
    const fraction = state.total > 0 ? state.done / state.total : 0;
    const text = `${stage} ${state.done}/${state.total} ${state.unit}, ${formatRate(rate)} ${state.unit}/s, ` +
      `ETA ${formatDuration(eta)}${state.status ? `, ${state.status}` : ""}`;
    if (this.isTerminal) {
      const width = 20;
      const filled = Math.round(fraction * width);
      this.#write(`\r\x1b[2K[${"#".repeat(filled)}${".".repeat(width - filled)}] ${text}`);
      this.#drawn = true;
      if (state.done >= state.total) this.#clear();
    } else if (now - this.#lastPlain >= this.plainEverySeconds * 1000 || state.done >= state.total) {
      this.#lastPlain = now;
      this.#write(`${text}\n`);
    }
  }
}

function formatRate(rate: number): string {
  if (rate >= 100) return rate.toFixed(0);
  if (rate >= 1) return rate.toFixed(1);
  return rate.toFixed(3);
}

/** Formats seconds as "1h02m", "3m05s" or "12s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}
