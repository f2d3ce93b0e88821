// `cxlrc` entry: one binary, subcommands. The commands, their flags and their modules are one table
// (command-table.ts); each module exports `run(argv): Promise<number>` (the exit code) and `usage` (its --help).
// Global flags may come before the command or after it (globals.ts).
import { describeError, isCxlrcError } from "../../shared/errors.ts";
import { packageVersion } from "../../shared/version.ts";
import { allOptionsOf, commandSpec } from "./command-table.ts";
import { EXIT, UsageError } from "./exit.ts";
import { helpOrVersion, splitArgs } from "./globals.ts";
import { topUsage } from "./help.ts";

function printVersion(): number {
  process.stdout.write(`cxlrc ${packageVersion()}\n`);
  return EXIT.ok;
}

export async function main(argv: string[]): Promise<number> {
  let split: ReturnType<typeof splitArgs>;
  try {
    split = splitArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`cxlrc: ${e.message}\n`);
    return EXIT.usage;
  }
  if (split.version) return printVersion();
  // `cxlrc help CMD` and `cxlrc --help CMD` are `cxlrc CMD --help`.
  const helpFor = split.command === "help" ? split.args.find((a) => !a.startsWith("-")) : undefined;
  const name = helpFor ?? split.command;
  const args = helpFor !== undefined ? [] : split.args;
  if (name === undefined || name === "help") {
    process.stdout.write(`${topUsage()}\n`);
    return name === undefined && !split.help ? EXIT.usage : EXIT.ok;
  }
  const spec = commandSpec(name);
  if (!spec) {
    process.stderr.write(`cxlrc: unknown command "${name}" (see cxlrc --help)\n`);
    return EXIT.usage;
  }
  const asked = split.help || helpFor !== undefined ? "help" : helpOrVersion(args, allOptionsOf(spec));
  if (asked === "version") return printVersion();
  const mod = await spec.load();
  if (asked === "help") {
    process.stdout.write(`${mod.usage}\n`);
    return EXIT.ok;
  }
  try {
    return await mod.run(args);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`cxlrc ${name}: ${e.message}\n`);
      return EXIT.usage;
    }
    const bad = isCxlrcError(e) && e.kind === "bad-input";
    process.stderr.write(`cxlrc ${name}: ${describeError(e)}\n`);
    if (process.env.CXLRC_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return bad ? EXIT.usage : EXIT.failure;
  }
}
