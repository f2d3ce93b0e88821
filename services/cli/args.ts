// Flag and argument checks shared by the subcommands: node:util parseArgs with its complaints turned into
// UsageError (exit 2, one line), and the checks of HOST, BDF, --scope and --since.
import { type ParseArgsConfig, parseArgs } from "node:util";
import { HOST_RE } from "../../shared/bus/subjects.ts";
import { parseBdf } from "../../shared/hw/backend.ts";
import { UsageError } from "./exit.ts";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Options every command that talks to the bus accepts. */
export const BUS_OPTIONS = {
  server: { type: "string" },
} as const satisfies Options;

/** parseArgs, strict, with positionals; a bad flag becomes a UsageError naming it and pointing at --help. */
export function parseFlags<const O extends Options>(command: string, argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    // parseArgs messages end with advice about "--" that does not apply here; keep the first sentence.
    const msg = (e as Error).message.split(". ")[0]!.replace(/\.$/, "");
    throw new UsageError(`${msg} (see cxlrc ${command} --help)`);
  }
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

/** A duration flag ("90s", "10m", "1h", "2d") in milliseconds, or null when it is not one. */
export function durationOf(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text);
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : null;
}

export function parseDuration(flag: string, text: string, allowZero = false): number {
  const ms = durationOf(text);
  if (ms === null || ms < 0 || (ms === 0 && !allowZero))
    throw new UsageError(`bad ${flag} ${JSON.stringify(text)}: a duration like 500ms, 90s, 10m or 1h`);
  return ms;
}

/** --since: a duration back from now ("90s", "30m", "1h", "2d") or an ISO 8601 time. */
export function parseSince(since: string, now = Date.now()): Date {
  const ms = durationOf(since);
  if (ms !== null) return new Date(now - ms);
  if (/^\d{4}-\d{2}-\d{2}/.test(since)) {
    const t = Date.parse(since);
    if (!Number.isNaN(t)) return new Date(t);
  }
  throw new UsageError(`bad --since ${JSON.stringify(since)}: a duration (30s, 30m, 1h, 2d) or an ISO time`);
}
