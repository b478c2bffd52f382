// `rapid-inr info`: summary of a .rinr file.

import { formatRinrSummary, summarizeRinr } from "../format/mod.ts";
import type { Command } from "./mod.ts";
import { UsageError } from "./options.ts";

export const infoCommand: Command = {
  spec: {
    name: "info",
    summary: "print the summary of a .rinr file",
    usage: "rapid-inr info <file.rinr> [--json]",
    example: "rapid-inr info cifar-q8.rinr",
    positionals: [{ name: "<file.rinr>", help: "file to describe" }],
    options: [],
  },
  async execute({ positionals, values }) {
    if (positionals.length !== 1) throw new UsageError("info takes one .rinr file. Run \"rapid-inr info --help\".");
    const summary = await summarizeRinr(positionals[0]);
    if (!values.json) console.log(formatRinrSummary(summary));
    return summary;
  },
};
