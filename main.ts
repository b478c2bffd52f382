// rapid-inr command-line entry point: dispatches to one subcommand and maps
// errors to exit codes (documented in README.md).

import { runCli } from "./src/cli/mod.ts";

if (import.meta.main) {
  Deno.exit(await runCli(Deno.args));
}
