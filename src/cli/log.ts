// Progress and messages on stderr. Results go to stdout, and everything a
// person watches goes here. On a terminal a progress bar redraws in place.
// When stderr is a file or pipe, a plain line is printed for the first report
// of a stage, then at most every `plainEverySeconds` and at the end, so logs
// stay readable. Colour is used only on a terminal, and never when the
// NO_COLOR environment variable is set (https://no-color.org).

/** How much a command prints on stderr. */
export type Verbosity = "quiet" | "normal" | "verbose";

/** Options of {@linkcode Log}; the defaults describe the real stderr. */
export interface LogOptions {
  /** Seconds between plain progress lines when stderr is not a terminal. Default 10. */
  plainEverySeconds?: number;
  /** Seconds between progress bar redraws on a terminal. Default 0.1. */
  redrawEverySeconds?: number;
  /** True when stdout carries one JSON object, so `result` lines are suppressed. Default false. */
  json?: boolean;
  /** Whether stderr is a terminal. Default: `Deno.stderr.isTerminal()`. */
  isTerminal?: boolean;
  /** Whether NO_COLOR is set. Default: `Deno.noColor`. */
  noColor?: boolean;
  /**
   * Terminal width in columns, which keeps the bar on one line. 0 means unknown.
   * Default: `Deno.consoleSize()` on a terminal.
   */
  columns?: number;
  /** Clock in milliseconds, the same one as `ProgressState.startedAt`. Default: `performance.now`. */
  now?: () => number;
  /** Receives the text meant for stderr. Default: writes it to stderr. */
  write?: (text: string) => void;
}

/** One progress report of a long stage. */
export interface ProgressState {
  /** Items finished, shown as "done/total unit". */
  done: number;
  /** Items in the stage. */
  total: number;
  /** Plural name of the items, e.g. "images". */
  unit: string;
  /** Start of the stage in milliseconds of the log's clock (`performance.now()` by default). */
  startedAt: number;
  /**
   * Finished share of the stage's work, 0..1, for the bar, rate and ETA.
   * Default: done / total. A stage whose items finish a batch at a time
   * passes the work done inside the current batch here.
   */
  fraction?: number;
  /** Items finished before `startedAt` (by an interrupted run), left out of the rate. Default 0. */
  doneBefore?: number;
  /** Running figure, such as the mean PSNR or the loss. */
  status?: string;
}

const encoder = new TextEncoder();
const BAR_WIDTH = 20;
const YELLOW = "\x1b[33m";
const GREEN = "\x1b[32m";
const RESET = "\x1b[0m";

/** Writes progress, notices and warnings to stderr. */
export class Log {
  readonly verbosity: Verbosity;
  readonly isTerminal: boolean;
  /** True on a terminal without NO_COLOR. */
  readonly color: boolean;
  readonly plainEverySeconds: number;
  readonly redrawEverySeconds: number;
  /** True when stdout carries one JSON object, so `result` lines are suppressed. */
  readonly json: boolean;
  #columns: number | undefined;
  #now: () => number;
  #writeText: (text: string) => void;
  #lastStage = "";
  #lastShown = -Infinity;
  #drawn = false;
  #warnings = 0;

  constructor(verbosity: Verbosity = "normal", options: LogOptions = {}) {
    this.verbosity = verbosity;
    this.json = options.json ?? false;
    this.isTerminal = options.isTerminal ?? Deno.stderr.isTerminal();
    this.color = this.isTerminal && !(options.noColor ?? Deno.noColor);
    this.plainEverySeconds = options.plainEverySeconds ?? 10;
    this.redrawEverySeconds = options.redrawEverySeconds ?? 0.1;
    const columns = options.columns ?? (this.isTerminal ? terminalColumns() : undefined);
    // Some pseudo-terminals, such as the one `script` creates, report 0 columns, which means unknown.
    this.#columns = columns !== undefined && columns > 0 ? columns : undefined;
    this.#now = options.now ?? (() => performance.now());
    this.#writeText = options.write ?? ((text) => Deno.stderr.writeSync(encoder.encode(text)));
  }

  /** Number of warnings printed so far. */
  get warnings(): number {
    return this.#warnings;
  }

  #write(text: string): void {
    this.#writeText(text);
  }

  #clear(): void {
    if (this.#drawn) {
      this.#write("\r\x1b[2K");
      this.#drawn = false;
    }
  }

  #paint(color: string, text: string): string {
    return this.color ? `${color}${text}${RESET}` : text;
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
    this.#write(`${this.#paint(YELLOW, "warning")}: ${message}\n`);
  }

  /**
   * Shows progress of a long stage: items done of total, rate, ETA and a
   * running figure. On a terminal the bar is redrawn at most every
   * `redrawEverySeconds`. Elsewhere a plain line is printed for the first
   * report of a stage, then at most every `plainEverySeconds`. The last
   * report (done = total) is always shown.
   */
  progress(stage: string, state: ProgressState): void {
    if (this.verbosity === "quiet") return;
    const now = this.#now();
    const finished = state.done >= state.total;
    const interval = this.isTerminal ? this.redrawEverySeconds : this.plainEverySeconds;
    const newStage = stage !== this.#lastStage;
    if (!newStage && !finished && now - this.#lastShown < interval * 1000) return;
    // After the last report, the next one starts a stage even under the same name.
    this.#lastStage = finished ? "" : stage;
    this.#lastShown = now;

    const text = progressText(stage, state, now);
    if (!this.isTerminal) {
      this.#write(`${text}\n`);
      return;
    }
    const fraction = clampFraction(state);
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = `[${this.#paint(GREEN, "#".repeat(filled))}${".".repeat(BAR_WIDTH - filled)}]`;
    const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
    // The bar, its brackets, the percentage and two spaces take BAR_WIDTH + 8
    // columns. The text is cut so that the last column stays empty, because
    // some terminals wrap a full line and `\r` then redraws only its end.
    const room = this.#columns === undefined ? Infinity : this.#columns - (BAR_WIDTH + 8) - 1;
    const shown = text.length > room ? text.slice(0, Math.max(0, room)) : text;
    this.#write(`\r\x1b[2K${bar} ${percent} ${shown}`);
    this.#drawn = true;
    if (finished) this.#clear();
  }
}

// Returns "stage done/total unit, rate unit/s, ETA t, status".
function progressText(stage: string, state: ProgressState, now: number): string {
  const seconds = Math.max(1e-9, (now - state.startedAt) / 1000);
  const fraction = clampFraction(state);
  const workDone = fraction * state.total;
  const rate = Math.max(0, workDone - (state.doneBefore ?? 0)) / seconds;
  const eta = rate > 0 ? (state.total - workDone) / rate : Infinity;
  const status = state.status ? `, ${state.status}` : "";
  return `${stage} ${state.done}/${state.total} ${state.unit}, ${formatRate(rate)} ${state.unit}/s, ` +
    `ETA ${formatDuration(eta)}${status}`;
}

function clampFraction(state: ProgressState): number {
  const fraction = state.fraction ?? (state.total > 0 ? state.done / state.total : 0);
  return Math.min(1, Math.max(0, fraction));
}

function terminalColumns(): number | undefined {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return undefined;
  }
}

function formatRate(rate: number): string {
  if (rate >= 100) return rate.toFixed(0);
  if (rate >= 1) return rate.toFixed(1);
  return rate.toFixed(3);
}

/** Formats seconds as "1h02m", "3m05s" or "12s"; "?" when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}
