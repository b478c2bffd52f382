// Helpers for tests that use the CLI as a person does: spawn main.ts, and
// write small synthetic image-folder datasets.

import { join } from "@std/path";
import { encodePng } from "../src/data/mod.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Exit code and output of one CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs main.ts with `args`; `env` adds or replaces environment variables. */
export function spawnCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return spawnScript(MAIN, args, env);
}

/** Runs the Deno script at `path` with `args`, as {@linkcode spawnCli} runs main.ts. */
export async function spawnScript(
  path: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<CliResult> {
  const command = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", path, ...args],
    env: {
      DENO_WEBGPU_BACKEND: Deno.env.get("DENO_WEBGPU_BACKEND") ?? "vulkan",
      NO_COLOR: "1",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  });
  const output = await command.output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Layout of a synthetic dataset written by {@linkcode writeStripes}. */
export interface StripesOptions {
  /** Images per class in the train split. */
  train: number;
  /** Images per class in the test split; 0 writes no test split. Default 2. */
  test?: number;
  /** Image side in pixels. Default 8. */
  side?: number;
  /** Class names; each class gets stripes of another angle. Default: horizontal, vertical. */
  classes?: string[];
}

/**
 * Writes `<root>/<split>/<class>/<i>.png` images of stripes, a different
 * direction per class and a different phase and colour per image.
 */
export async function writeStripes(root: string, options: StripesOptions): Promise<void> {
  const side = options.side ?? 8;
  const classes = options.classes ?? ["horizontal", "vertical"];
  const splits: [string, number][] = [["train", options.train], ["test", options.test ?? 2]];
  for (const [split, count] of splits) {
    if (count === 0) continue;
    for (const [label, name] of classes.entries()) {
      const folder = join(root, split, name);
      await Deno.mkdir(folder, { recursive: true });
      for (let i = 0; i < count; i++) {
        const rgb = new Uint8Array(side * side * 3);
        for (let y = 0; y < side; y++) {
          for (let x = 0; x < side; x++) {
            const along = label % 3 === 0 ? y : label % 3 === 1 ? x : x + y;
            const on = (along + i) % 2 === 0;
            rgb.set([on ? 220 : 30, on ? 200 : 40, (60 + 20 * i) % 256], (y * side + x) * 3);
          }
        }
        await Deno.writeFile(
          join(folder, `${i}.png`),
          await encodePng({ rgb, width: side, height: side }),
        );
      }
    }
  }
}
