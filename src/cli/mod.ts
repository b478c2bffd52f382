// Subcommand dispatch, top-level help and the mapping from errors to exit codes.

import { type CommandSpec, formatHelp, parseCommand, type ParsedCommand, UsageError } from "./options.ts";
import { Log } from "./log.ts";
import denoConfig from "../../deno.json" with { type: "json" };

/** A subcommand: its interface and its implementation. */
export interface Command {
  spec: CommandSpec;
  /** Runs the command; returns the JSON result printed with --json. */
  execute(parsed: ParsedCommand, log: Log): Promise<unknown>;
}

/** Exit codes, documented in README.md. */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  input: 3,
  gpu: 4,
  interrupted: 130,
} as const;

const COMMANDS: Record<string, () => Promise<Command>> = {
  encode: async () => (await import("./encode.ts")).encodeCommand,
  compress: async () => (await import("./compress.ts")).compressCommand,
  decode: async () => (await import("./decode.ts")).decodeCommand,
  train: async () => (await import("./train.ts")).trainCommand,
  run: async () => (await import("./run.ts")).runCommand,
  info: async () => (await import("./info.ts")).infoCommand,
  export: async () => (await import("./export.ts")).exportCommand,
};

const SUMMARIES: Record<string, string> = {
  encode: "fit one SIREN per image on the GPU and write a .rinr file",
  compress: "quantize, prune and fine-tune the INRs of a .rinr file, and entropy-code them",
  decode: "decode a .rinr file to PNG images, with PSNR against the source",
  train: "train a ResNet-18 from INR-decoded, raw or file-decoded batches",
  run: "encode, compress and train in one command",
  info: "print the summary of a .rinr file",
  export: "write the INR weights of a .rinr file, or a trained classifier, as a safetensors file",
};

function topHelp(): string {
  const lines = [
    `rapid-inr ${denoConfig.version}: image-classifier training from implicit neural representations on the GPU`,
    "",
    "Usage: rapid-inr <command> [options]",
    "",
    "Commands:",
    ...Object.entries(SUMMARIES).map(([name, summary]) => `  ${name.padEnd(10)} ${summary}`),
    "",
    "Run \"rapid-inr <command> --help\" for the options of a command.",
    "Example: rapid-inr run ../data/cifar10 --preset cifar --json",
  ];
  return lines.join("\n");
}

/** Runs the CLI on `args` and returns the exit code. */
export async function runCli(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(topHelp());
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === "--version" || name === "-V") {
    console.log(`rapid-inr ${denoConfig.version}`);
    return EXIT.ok;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`rapid-inr: unknown command "${name}". Commands: ${Object.keys(COMMANDS).join(", ")}.`);
    return EXIT.usage;
  }
  const command = await load();
  let log = new Log();
  try {
    const parsed = await parseCommand(command.spec, rest);
    if (parsed.values.help) {
      console.log(formatHelp(command.spec));
      return EXIT.ok;
    }
    let verbosity: "quiet" | "normal" | "verbose" = "normal";
    if (parsed.values.quiet) verbosity = "quiet";
    else if (parsed.values.verbose) verbosity = "verbose";
    log = new Log(verbosity, { json: parsed.values.json === true });
    // A dry run prints the plan that plan.ts derives from the same options, so
    // the commands themselves need no dry-run branch.
    const result = parsed.values["dry-run"]
      ? await (await import("./plan.ts")).planCommand(name, parsed, log)
      : await command.execute(parsed, log);
    if (parsed.values.json) console.log(JSON.stringify(result, null, 2));
    return EXIT.ok;
  } catch (error) {
    return reportError(error as Error, name);
  }
}

function reportError(error: Error, command: string): number {
  const kind = error?.name;
  // The stages validate sizes and settings with RangeErrors that name the
  // value, so they are reported like usage errors, without a stack trace.
  if (kind === "UsageError" || error instanceof RangeError) {
    console.error(`rapid-inr ${command}: ${error.message}`);
    return EXIT.usage;
  }
  if (kind === "DataError" || kind === "FormatError" || error instanceof Deno.errors.NotFound) {
    console.error(`rapid-inr ${command}: ${error.message}`);
    return EXIT.input;
  }
  if (kind === "GpuError") {
    console.error(`rapid-inr ${command}: GPU error: ${error.message}`);
    return EXIT.gpu;
  }
  console.error(`rapid-inr ${command}: unexpected error: ${error?.stack ?? error}`);
  return EXIT.failure;
}

export { UsageError };
