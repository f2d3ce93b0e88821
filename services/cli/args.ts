// Flag and argument checks shared by the subcommands: node:util parseArgs with its complaints turned into
// UsageError (exit 2, one line), and the checks of HOST, BDF, --scope and --since.
import { type ParseArgsConfig, parseArgs } from "node:util";
import { HOST_RE } from "../../shared/bus/subjects.ts";
import { parseBdf } from "../../shared/hw/backend.ts";
import { LOG_LEVELS, type LogLevel } from "../../shared/log.ts";
import { UsageError } from "./exit.ts";

export type Options = NonNullable<ParseArgsConfig["options"]>;

/** Options every command that talks to the bus accepts (bus.ts resolves them; help.ts describes them). */
export const BUS_OPTIONS = {
  server: { type: "string" },
  creds: { type: "string" },
  context: { type: "string" },
} as const satisfies Options;

/**
 * parseArgs, strict, with positionals. Its complaints are re-worded, one way for every command:
 * `unknown option --jsn (see cxlrc decode --help)`, `option --server needs a value`, `option --json takes no value`.
 */
export function parseFlags<const O extends Options>(command: string, argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw flagError(command, e);
  }
}

/** A parseArgs error as a UsageError in the CLI's words (never Node's own sentence). */
export function flagError(command: string, e: unknown): UsageError {
  const code = (e as NodeJS.ErrnoException)?.code;
  const msg = (e as Error)?.message ?? "";
  const name = /'(-{1,2}[^' <]+)/.exec(msg)?.[1] ?? "";
  const help = command ? `cxlrc ${command} --help` : "cxlrc --help";
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") return new UsageError(`unknown option ${name} (see ${help})`);
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    if (/does not take an argument/.test(msg)) return new UsageError(`option ${name} takes no value`);
    if (/ambiguous/.test(msg)) {
      return new UsageError(
        `option ${name} needs a value (one starting with '-' is given as ${name}=-VALUE)`,
      );
    }
    return new UsageError(`option ${name} needs a value (see ${help})`);
  }
  return new UsageError(`bad arguments (see ${help})`);
}

/** Exactly these positionals, by name, in order (extra or missing ones are named). */
export function takePositionals(command: string, positionals: string[], names: string[]): string[] {
  if (positionals.length < names.length) {
    const missing = names.slice(positionals.length).join(" and ");
    throw new UsageError(`missing ${missing} (see cxlrc ${command} --help)`);
  }
  if (positionals.length > names.length) {
    throw new UsageError(`unexpected argument ${JSON.stringify(positionals[names.length])}`);
  }
  return positionals;
}

export function checkHostArg(host: string): string {
  if (!HOST_RE.test(host)) {
    throw new UsageError(`bad HOST ${JSON.stringify(host)}: 1-64 letters, digits, '-' or '_'`);
  }
  return host;
}

/** A PCI address, "0000:0d:00.0" or the short "0d:00.0" (domain 0); returned in the canonical form. */
export function checkBdfArg(bdf: string): string {
  const lower = bdf.toLowerCase();
  const full = /^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(lower) ? `0000:${lower}` : lower;
  try {
    parseBdf(full);
  } catch {
    throw new UsageError(`bad BDF ${JSON.stringify(bdf)}: expected a PCI address like 0000:0d:00.0`);
  }
  return full;
}

export type ScopeArg = "io" | "full";
export function checkScopeArg(scope: string | undefined): ScopeArg {
  if (scope === undefined) throw new UsageError("missing --scope io|full");
  if (scope !== "io" && scope !== "full") {
    throw new UsageError(`bad --scope ${JSON.stringify(scope)}: io (FLR, CXL state kept) or full`);
  }
  return scope;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration ("500ms", "90s", "10m", "1.5h", "2d") in milliseconds, or null when it is not one. */
export function durationOf(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s?(ms|s|m|h|d)$/.exec(text.trim());
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : null;
}

const DURATION_HINT = "a duration like 500ms, 90s, 10m, 1h or 2d";

/** Every duration flag: a number with its unit (ms, s, m, h, d). */
export function parseDuration(flag: string, text: string, allowZero = false): number {
  const ms = durationOf(text);
  if (ms === null || ms < 0 || (ms === 0 && !allowZero))
    throw new UsageError(`bad ${flag} ${JSON.stringify(text)}: ${DURATION_HINT}`);
  return ms;
}

/**
 * A flag whose name carries its unit (--lease-ttl-ms, --heartbeat-ms): a bare whole number in that unit, or a
 * duration with its own unit like every other duration flag.
 */
export function parseMsFlag(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (/^\d+$/.test(text)) return Number(text);
  const ms = durationOf(text);
  if (ms === null || !Number.isInteger(ms))
    throw new UsageError(`bad ${flag} ${JSON.stringify(text)}: milliseconds, or ${DURATION_HINT}`);
  return ms;
}

/** An ISO 8601 time, or null. */
function isoTime(text: string): Date | null {
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return null;
  const t = Date.parse(text);
  return Number.isNaN(t) ? null : new Date(t);
}

/** --since: a duration back from now ("90s", "30m", "1h", "2d") or an ISO 8601 time. */
export function parseSince(since: string, now = Date.now()): Date {
  const ms = durationOf(since);
  if (ms !== null) return new Date(now - ms);
  const t = isoTime(since);
  if (t) return t;
  throw new UsageError(
    `bad --since ${JSON.stringify(since)}: ${DURATION_HINT} back from now, or an ISO time`,
  );
}

/** --deadline: a duration from now ("10m", "1h") or an ISO 8601 time; the ISO time it means. */
export function parseDeadline(text: string, now = Date.now()): string {
  const ms = durationOf(text);
  if (ms !== null && ms > 0) return new Date(now + ms).toISOString();
  const t = isoTime(text);
  if (t) return t.toISOString();
  throw new UsageError(`bad --deadline ${JSON.stringify(text)}: ${DURATION_HINT} from now, or an ISO time`);
}

/**
 * The sub-target of a command (`serve coordinator`, `breaker close`): its first positional wherever it stands
 * among the flags, checked against `targets`; the other arguments are returned for the target's own parse.
 */
export function takeTarget(
  command: string,
  argv: string[],
  targets: readonly string[],
  options: Options,
  what = "action",
): { target: string; rest: string[] } {
  let index = -1;
  try {
    const { tokens } = parseArgs({
      args: argv,
      options,
      strict: false,
      allowPositionals: true,
      tokens: true,
    });
    index = tokens.find((t) => t.kind === "positional")?.index ?? -1;
  } catch {
    index = argv.findIndex((a) => !a.startsWith("-"));
  }
  const target = index >= 0 ? argv[index]! : undefined;
  const list =
    targets.length > 1 ? `${targets.slice(0, -1).join(", ")} or ${targets.at(-1)}` : targets.join("");
  if (target === undefined)
    throw new UsageError(`missing the ${what}: ${list} (see cxlrc ${command} --help)`);
  if (!targets.includes(target)) throw new UsageError(`unknown ${what} ${JSON.stringify(target)}: ${list}`);
  return { target, rest: [...argv.slice(0, index), ...argv.slice(index + 1)] };
}

/** --log-level (or CXLRC_LOG_LEVEL where a command reads it): one of pino's levels or "silent". */
export function checkLogLevel(level: string): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(level))
    throw new UsageError(`bad --log-level ${JSON.stringify(level)}: one of ${LOG_LEVELS.join(", ")}`);
  return level as LogLevel;
}
