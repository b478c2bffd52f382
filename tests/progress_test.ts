// Progress output on stderr: a redrawn bar on a terminal, periodic plain lines
// elsewhere, and colour only on a terminal without NO_COLOR. The terminal
// cases drive the log module with an injected terminal flag and a fake clock,
// so no wall-clock time enters the assertions.

import { assert, assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { join } from "@std/path";
import { Log, type LogOptions } from "../src/cli/log.ts";
import { spawnCli, writeStripes } from "./_cli.ts";

// Select Graphic Rendition sequences, the escape codes that set colours.
// deno-lint-ignore no-control-regex
const SGR = /\x1b\[[0-9;]*m/;

// A log writing into an array, with a clock the test advances by hand.
function fakeLog(options: LogOptions = {}) {
  const output: string[] = [];
  let now = 0;
  const log = new Log("normal", {
    isTerminal: true,
    noColor: false,
    columns: 200,
    now: () => now,
    write: (text) => output.push(text),
    ...options,
  });
  return {
    log,
    output,
    advance(seconds: number) {
      now += seconds * 1000;
    },
  };
}

Deno.test("progress bar shows images, rate, ETA and PSNR", () => {
  const { log, output, advance } = fakeLog();
  advance(4);
  log.progress("encode", { done: 4, total: 12, unit: "images", startedAt: 0, status: "batch mean PSNR 31.50 dB" });
  assertEquals(output.length, 1);
  const line = output[0];
  assert(line.startsWith("\r\x1b[2K["), `redraws in place: ${JSON.stringify(line)}`);
  assert(!line.endsWith("\n"), "the bar stays on its line");
  // 4 images in 4 s: 1 image/s, 8 left.
  assertStringIncludes(line, " 33% encode 4/12 images, 1.0 images/s, ETA 8s, batch mean PSNR 31.50 dB");
  assertStringIncludes(line, "\x1b[32m#######\x1b[0m.............]");
});

Deno.test("progress bar counts work inside a batch and skips resumed work", () => {
  const { log, output, advance } = fakeLog();
  advance(10);
  // 4 images were done by an earlier run; this run has fitted 1.5 more in 10 s.
  log.progress("encode", { done: 4, total: 10, unit: "images", startedAt: 0, fraction: 0.55, doneBefore: 4 });
  assertStringIncludes(output[0], " 55% encode 4/10 images, 0.150 images/s, ETA 30s");
});

Deno.test("progress bar redraws at most every 0.1 s", () => {
  const { log, output, advance } = fakeLog();
  const state = { total: 100, unit: "steps", startedAt: 0 };
  log.progress("epoch 1/2", { ...state, done: 1 });
  advance(0.05);
  log.progress("epoch 1/2", { ...state, done: 2 });
  assertEquals(output.length, 1, "a report within 0.1 s is not drawn");
  advance(0.05);
  log.progress("epoch 1/2", { ...state, done: 3, status: "loss 2.3026" });
  assertEquals(output.length, 2);
  assertStringIncludes(output[1], "epoch 1/2 3/100 steps");
  assertStringIncludes(output[1], "loss 2.3026");

  // The last report is drawn at once and then cleared, so the next line starts clean.
  log.progress("epoch 1/2", { ...state, done: 100 });
  assertEquals(output.slice(2).length, 2);
  assertStringIncludes(output[2], "100/100 steps");
  assertEquals(output[3], "\r\x1b[2K");
});

Deno.test("progress bar is cleared before messages", () => {
  const { log, output, advance } = fakeLog();
  advance(1);
  log.progress("encode", { done: 1, total: 4, unit: "images", startedAt: 0 });
  log.info("Resuming from checkpoint.");
  assertEquals(output.slice(1), ["\r\x1b[2K", "Resuming from checkpoint.\n"]);
});

Deno.test("progress bar fits the terminal width", () => {
  const { log, output } = fakeLog({ columns: 60 });
  log.progress("encode", { done: 1, total: 4, unit: "images", startedAt: 0, status: "batch mean PSNR 31.50 dB" });
  const visible = output[0].replace("\r\x1b[2K", "").replace(new RegExp(SGR.source, "g"), "");
  assert(visible.length < 60, `${visible.length} columns: ${JSON.stringify(visible)}`);
});

Deno.test("progress bar width 0 is unknown", () => {
  // `script` runs commands on a pseudo-terminal that reports 0 columns.
  const { log, output } = fakeLog({ columns: 0 });
  log.progress("encode", { done: 1, total: 4, unit: "images", startedAt: 0, status: "batch mean PSNR 31.50 dB" });
  assertStringIncludes(output[0], "encode 1/4 images");
  assertStringIncludes(output[0], "batch mean PSNR 31.50 dB");
});

Deno.test("progress without a terminal prints periodic plain lines", () => {
  const { log, output, advance } = fakeLog({ isTerminal: false });
  const state = { total: 100, unit: "images", startedAt: 0, status: "batch mean PSNR 20.00 dB" };
  advance(1);
  log.progress("encode", { ...state, done: 10 });
  advance(5);
  log.progress("encode", { ...state, done: 20 });
  advance(5);
  log.progress("encode", { ...state, done: 30 });
  advance(1);
  log.progress("encode", { ...state, done: 100 });
  // The first report, the one 10 s after it, and the last.
  assertEquals(output, [
    "encode 10/100 images, 10.0 images/s, ETA 9s, batch mean PSNR 20.00 dB\n",
    "encode 30/100 images, 2.7 images/s, ETA 26s, batch mean PSNR 20.00 dB\n",
    "encode 100/100 images, 8.3 images/s, ETA 0s, batch mean PSNR 20.00 dB\n",
  ]);
});

Deno.test("progress starts a new stage at once", () => {
  const { log, output, advance } = fakeLog({ isTerminal: false });
  advance(1);
  log.progress("load train", { done: 5, total: 5, unit: "images", startedAt: 0 });
  log.progress("load test", { done: 1, total: 5, unit: "images", startedAt: 1000 });
  assertEquals(output.length, 2);
  assertStringIncludes(output[1], "load test 1/5 images");
});

Deno.test("quiet log prints no progress", () => {
  const output: string[] = [];
  const log = new Log("quiet", { isTerminal: true, noColor: false, write: (text) => output.push(text) });
  log.progress("encode", { done: 1, total: 4, unit: "images", startedAt: 0 });
  log.info("hidden");
  log.warn("shown");
  assertEquals(output, ["\x1b[33mwarning\x1b[0m: shown\n"]);
});

Deno.test("colour only on a terminal without NO_COLOR", () => {
  const cases: [string, Partial<LogOptions>, boolean][] = [
    ["terminal", { isTerminal: true, noColor: false }, true],
    ["terminal with NO_COLOR", { isTerminal: true, noColor: true }, false],
    ["pipe", { isTerminal: false, noColor: false }, false],
  ];
  for (const [name, options, colored] of cases) {
    const { log, output, advance } = fakeLog(options);
    advance(1);
    log.warn("low PSNR");
    log.progress("encode", { done: 1, total: 4, unit: "images", startedAt: 0 });
    const text = output.join("");
    assertEquals(log.color, colored, name);
    assertEquals(SGR.test(text), colored, `${name}: ${JSON.stringify(text)}`);
    assertStringIncludes(text, colored ? "\x1b[33mwarning\x1b[0m: low PSNR" : "warning: low PSNR", name);
  }
});

// Runs a script that builds a Log for a terminal and prints its colour choice
// and a warning, with `env` as the whole environment apart from PATH and HOME.
async function colorInChild(env: Record<string, string>): Promise<string> {
  const logUrl = new URL("../src/cli/log.ts", import.meta.url).href;
  const script = `
    import { Log } from "${logUrl}";
    const out = [];
    const log = new Log("normal", { isTerminal: true, write: (t) => out.push(t) });
    log.warn("x");
    console.log(JSON.stringify({ color: log.color, text: out.join("") }));
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=js", script],
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(output.code, 0, new TextDecoder().decode(output.stderr));
  return new TextDecoder().decode(output.stdout).trim();
}

Deno.test("NO_COLOR in the environment turns colour off", async () => {
  const plain = JSON.parse(await colorInChild({ NO_COLOR: "1" }));
  assertEquals(plain, { color: false, text: "warning: x\n" });
  const colored = JSON.parse(await colorInChild({}));
  assertEquals(colored, { color: true, text: "\x1b[33mwarning\x1b[0m: x\n" });
});

Deno.test("encode CLI with piped stderr prints plain progress lines", async () => {
  const root = await Deno.makeTempDir({ prefix: "progress_" });
  try {
    await writeStripes(join(root, "data"), { train: 2, test: 0 });
    const result = await spawnCli([
      "encode", join(root, "data"), "-o", join(root, "out.rinr"),
      "--size", "8", "--layers", "2", "--width", "8", "--iterations", "1000", "--encode-batch", "2", "--seed", "1",
    ]);
    assertEquals(result.code, 0, result.stderr);
    assert(!result.stderr.includes("\r"), `no redraws: ${JSON.stringify(result.stderr)}`);
    assert(!result.stderr.includes("\x1b["), `no escape codes: ${JSON.stringify(result.stderr)}`);
    const lines = result.stderr.split("\n").filter((line) => line.startsWith("encode "));
    // 2 batches of 1000 iterations report 20 times; a run under 10 s prints the first and the last.
    assert(lines.length >= 2, `progress lines:\n${lines.join("\n")}`);
    assert(lines.length < 20, `progress lines:\n${lines.join("\n")}`);
    assertMatch(
      lines[0],
      /^encode 0\/4 images, [0-9.]+ images\/s, ETA \S+, batch of 2 at iteration \d+\/1000, mean PSNR -?[0-9.]+ dB$/,
    );
    assertMatch(
      lines.at(-1)!,
      /^encode 4\/4 images, [0-9.]+ images\/s, ETA 0s, batch of 2 at iteration 1000\/1000, mean PSNR [0-9.]+ dB$/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
