// Global flags: given before the command (`cxlrc --server X status`) or after it (`cxlrc status --server X`).
// The command is the first argument that is neither a global flag nor a global flag's value; the globals given
// before it are handed on to the command as if written after it, so each command parses one argument list.
import { parseArgs } from "node:util";
import { BUS_OPTIONS, type Options } from "./args.ts";
import { UsageError } from "./exit.ts";

/** Flags cxlrc takes anywhere: the bus connection, --json (every bus command has it), help and version. */
export const GLOBAL_OPTIONS = {
  ...BUS_OPTIONS,
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const satisfies Options;

export interface SplitArgs {
  /** The command name, or undefined when only global flags were given. */
  command: string | undefined;
  /** The command's arguments, the globals given before it included (as --name=value, after its own). */
  args: string[];
  help: boolean;
  version: boolean;
}

/** Find the command among the global flags before it. A flag there that is not global is a usage error. */
export function splitArgs(argv: string[]): SplitArgs {
  const hoisted: string[] = [];
  let help = false;
  let version = false;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("-") || a === "-") break;
    const eq = a.indexOf("=");
    const flag = a.startsWith("--") ? (eq > 0 ? a.slice(2, eq) : a.slice(2)) : a.slice(1);
    const name = a.startsWith("--")
      ? flag
      : Object.entries(GLOBAL_OPTIONS).find(([, o]) => "short" in o && o.short === flag)?.[0];
    const opt = name !== undefined && Object.hasOwn(GLOBAL_OPTIONS, name) ? globalOption(name) : undefined;
    if (!name || !opt) throw new UsageError(`unknown option ${a.split("=")[0]} (see cxlrc --help)`);
    if (opt.type === "boolean") {
      if (eq > 0 && a.startsWith("--")) throw new UsageError(`option --${name} takes no value`);
      if (name === "help") help = true;
      else if (name === "version") version = true;
      else hoisted.push(`--${name}`);
      continue;
    }
    let value: string | undefined;
    if (eq > 0 && a.startsWith("--")) value = a.slice(eq + 1);
    else {
      value = argv[i + 1];
      if (value === undefined || (value.startsWith("-") && value !== "-"))
        throw new UsageError(`option --${name} needs a value (see cxlrc --help)`);
      i++;
    }
    hoisted.push(`--${name}=${value}`);
  }
  const command = argv[i];
  const rest = argv.slice(i + 1);
  // Before a "--" of the command's own, so that they stay flags.
  const dashes = rest.indexOf("--");
  const args =
    dashes < 0 ? [...rest, ...hoisted] : [...rest.slice(0, dashes), ...hoisted, ...rest.slice(dashes)];
  return { command, args, help, version };
}

function globalOption(name: string): { type: "string" | "boolean" } {
  return (GLOBAL_OPTIONS as Options)[name] as { type: "string" | "boolean" };
}

/**
 * --help / -h or --version / -V among a command's arguments (read as the command's parser reads them, so the
 * value of a string flag is never taken for one of these).
 */
export function helpOrVersion(args: string[], options: Options): "help" | "version" | null {
  let tokens: ReturnType<typeof parseArgs>["tokens"];
  try {
    tokens = parseArgs({
      args,
      options: {
        ...options,
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
      strict: false,
      allowPositionals: true,
      tokens: true,
    }).tokens;
  } catch {
    return null;
  }
  for (const t of tokens ?? []) {
    if (t.kind === "option-terminator") break;
    if (t.kind === "option" && t.name === "help") return "help";
    if (t.kind === "option" && t.name === "version") return "version";
  }
  return null;
}
