// Declarative command-line options: one table per subcommand drives parsing,
// validation, JSON config merging and the help text, so the three never
// disagree.

import { parseArgs } from "@std/cli/parse-args";

/** Error for invalid command-line input; printed without a stack trace, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** One option of a subcommand. */
export interface OptionSpec {
  name: string;
  type: "string" | "number" | "integer" | "boolean" | "list";
  /** Help text: what the option sets, with its unit. */
  help: string;
  default?: string | number | boolean;
  /** Allowed values for a string option. */
  choices?: string[];
  /** Smallest allowed value for numbers. */
  min?: number;
  /** Largest allowed value for numbers. */
  max?: number;
  alias?: string;
  /** Subcommands that accept the option; default: every subcommand. */
  commands?: string[];
}

/** A subcommand's interface: its name, usage line, positional arguments and options. */
export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  example: string;
  positionals: { name: string; help: string; optional?: boolean }[];
  options: OptionSpec[];
}

/** Options every subcommand accepts. */
export const COMMON_OPTIONS: OptionSpec[] = [
  { name: "config", type: "string", help: "JSON file of option values; command-line options override it" },
  { name: "json", type: "boolean", default: false, help: "print one JSON object with the results on stdout" },
  { name: "quiet", type: "boolean", default: false, alias: "q", help: "print only warnings and errors on stderr" },
  { name: "verbose", type: "boolean", default: false, alias: "v", help: "print more progress detail on stderr" },
  { name: "help", type: "boolean", default: false, alias: "h", help: "show this help" },
  {
    name: "dry-run",
    type: "boolean",
    default: false,
    commands: ["encode", "compress", "decode", "train", "run", "export"],
    help: "check the inputs and print the plan (images, sizes, estimated GPU memory) without running it or writing files",
  },
];

/** Returns the options of `spec` followed by the common options that its subcommand accepts. */
export function optionsOf(spec: CommandSpec): OptionSpec[] {
  const common = COMMON_OPTIONS.filter((o) => o.commands === undefined || o.commands.includes(spec.name));
  return [...spec.options, ...common];
}

export type OptionValues = Record<string, string | number | boolean | number[] | undefined>;

/** Parsed positionals and option values, defaults filled in. */
export interface ParsedCommand {
  positionals: string[];
  values: OptionValues;
}

/** Parses `args` against `spec`; merges a `--config` JSON file under the command line. */
export async function parseCommand(spec: CommandSpec, args: string[]): Promise<ParsedCommand> {
  const all = optionsOf(spec);
  const byName = new Map(all.map((o) => [o.name, o]));
  const aliases: Record<string, string> = {};
  for (const o of all) if (o.alias) aliases[o.alias] = o.name;

  const unknown: string[] = [];
  const parsed = parseArgs(args, {
    boolean: all.filter((o) => o.type === "boolean").map((o) => o.name),
    negatable: all.filter((o) => o.type === "boolean").map((o) => o.name),
    string: all.filter((o) => o.type !== "boolean").map((o) => o.name),
    alias: aliases,
    unknown: (arg: string) => {
      if (arg.startsWith("-")) unknown.push(arg);
      return true;
    },
  });
  if (unknown.length > 0) {
    const name = unknown[0].replace(/^-+/, "").split("=")[0];
    const suggestion = closestName(name, all.map((o) => o.name));
    const hint = suggestion ? ` Did you mean --${suggestion}?` : "";
    throw new UsageError(`Unknown option ${unknown[0]} for "${spec.name}".${hint} Run "rapid-inr ${spec.name} --help".`);
  }

  let config: Record<string, unknown> = {};
  if (typeof parsed.config === "string") config = await readConfig(parsed.config, byName);

  const values: OptionValues = {};
  for (const option of all) {
    const fromCli = parsed[option.name];
    const given = option.type === "boolean" ? (args.some((a) => isFlag(a, option)) ? fromCli : undefined) : fromCli;
    const raw = given ?? config[option.name] ?? option.default;
    values[option.name] = raw === undefined ? undefined : coerce(option, raw);
  }
  const positionals = (parsed._ as unknown[]).map(String);
  if (positionals.length === 0 && typeof config._ === "string") positionals.push(config._);
  return { positionals, values };
}

/** Returns the name within edit distance 2 of `name`, if one is. */
function closestName(name: string, names: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of names) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}

function isFlag(arg: string, option: OptionSpec): boolean {
  const names = [`--${option.name}`, `--no-${option.name}`];
  if (option.alias) names.push(`-${option.alias}`);
  return names.some((n) => arg === n || arg.startsWith(`${n}=`));
}

async function readConfig(path: string, options: Map<string, OptionSpec>): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new UsageError(`Config file ${path} could not be read: ${(error as Error).message}`);
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`Config file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new UsageError(`Config file ${path} must contain a JSON object of option names and values.`);
  }
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    const name = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    if (name === "config") continue;
    if (!options.has(name) && key !== "_") {
      throw new UsageError(`Config file ${path}: unknown option "${key}".`);
    }
    result[key === "_" ? "_" : name] = value;
  }
  return result;
}

function coerce(option: OptionSpec, raw: unknown): string | number | boolean | number[] {
  const label = `--${option.name}`;
  switch (option.type) {
    case "boolean":
      if (typeof raw === "boolean") return raw;
      throw new UsageError(`${label} must be true or false, got ${JSON.stringify(raw)}.`);
    case "string": {
      const value = String(raw);
      if (option.choices && !option.choices.includes(value)) {
        throw new UsageError(`${label} must be one of ${option.choices.join(", ")}, got "${value}".`);
      }
      return value;
    }
    case "list": {
      const parts = Array.isArray(raw) ? raw : String(raw).split(",");
      return parts.map((p) => checkNumber(option, Number(p), String(p)));
    }
    default:
      return checkNumber(option, Number(raw), String(raw));
  }
}

function checkNumber(option: OptionSpec, value: number, text: string): number {
  const label = `--${option.name}`;
  if (text.trim() === "" || !Number.isFinite(value)) throw new UsageError(`${label} must be a number, got "${text}".`);
  if ((option.type === "integer" || option.type === "list") && !Number.isInteger(value)) {
    throw new UsageError(`${label} must be an integer, got ${text}.`);
  }
  if (option.min !== undefined && value < option.min) throw new UsageError(`${label} must be at least ${option.min}, got ${text}.`);
  if (option.max !== undefined && value > option.max) throw new UsageError(`${label} must be at most ${option.max}, got ${text}.`);
  return value;
}

const VALUE_PLACEHOLDERS: Record<Exclude<OptionSpec["type"], "boolean">, string> = {
  string: "value",
  number: "n",
  integer: "n",
  list: "a,b,...",
};

/** Formats the help text of a subcommand. */
export function formatHelp(spec: CommandSpec): string {
  const lines = [`rapid-inr ${spec.name}: ${spec.summary}`, "", `Usage: ${spec.usage}`, ""];
  if (spec.positionals.length) {
    lines.push("Arguments:");
    for (const p of spec.positionals) lines.push(`  ${p.name.padEnd(24)} ${p.help}`);
    lines.push("");
  }
  lines.push("Options:");
  for (const o of optionsOf(spec)) {
    const flag = o.type === "boolean" ? `--${o.name}` : `--${o.name} <${VALUE_PLACEHOLDERS[o.type]}>`;
    const alias = o.alias ? `-${o.alias}, ` : "    ";
    const extra = [o.choices ? `one of ${o.choices.join(", ")}` : "", o.default !== undefined && o.type !== "boolean" ? `default ${o.default}` : ""]
      .filter(Boolean).join("; ");
    lines.push(`  ${alias}${flag.padEnd(26)} ${o.help}${extra ? ` (${extra})` : ""}`);
  }
  lines.push("", "Example:", `  ${spec.example}`);
  return lines.join("\n");
}

/** Reads a string option, throwing a `UsageError` when it is required and missing. */
export function requireString(values: OptionValues, name: string, what: string): string {
  const value = values[name];
  if (typeof value !== "string" || value === "") throw new UsageError(`Missing --${name}: ${what}.`);
  return value;
}
