// The event list's filters as a browser sends them (?host=&bdf=&kind=&since=): checked before anything is
// asked of the bus, a bad one named by its field (the page shows the sentence; the API answers 400).
import { AGENT_EVENT_KINDS, COORDINATOR_EVENT_KINDS } from "../../shared/bus/event-data.ts";
import { bdfToken, HOST_RE } from "../../shared/bus/subjects.ts";
import type { UiEvent } from "./fleet.ts";

/** Every kind of the bus contract (coordinator and agent), sorted: the kind filter's choices. */
export const KNOWN_KINDS: readonly string[] = [
  ...new Set<string>([...COORDINATOR_EVENT_KINDS, ...AGENT_EVENT_KINDS]),
].sort();
const KNOWN = new Set(KNOWN_KINDS);

export interface EventFilters {
  host?: string;
  bdf?: string;
  /** Only these kinds (any of them). */
  kinds?: string[];
  /** Replay from this time first (else: the recent events the page keeps, then live). */
  since?: Date;
}

export class FilterError extends Error {
  override name = "FilterError";
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };
/** How far back `since` may reach (the stream keeps less anyway). */
const SINCE_MAX_MS = 366 * 86_400_000;

/** `since`: a duration back from now ("90s", "30m", "1h", "2d") or an ISO 8601 time, not in the future. */
export function parseSince(text: string, nowMs = Date.now()): Date {
  const d = /^(\d{1,6})([smhd])$/.exec(text);
  if (d) {
    const ms = Number(d[1]) * UNIT_MS[d[2]!]!;
    if (ms <= SINCE_MAX_MS) return new Date(nowMs - ms);
  } else if (/^\d{4}-\d{2}-\d{2}(T[0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text)) {
    const t = Date.parse(text);
    if (!Number.isNaN(t) && t <= nowMs + 60_000 && t >= nowMs - SINCE_MAX_MS) return new Date(t);
  }
  throw new FilterError(
    "since",
    `bad since ${JSON.stringify(text.slice(0, 64))}: a duration back from now (30s, 30m, 1h, 2d) or an ISO time within the last year`,
  );
}

/** The filters of a query string; FilterError naming the first bad field. */
export function parseFilters(q: URLSearchParams, nowMs = Date.now()): EventFilters {
  for (const k of q.keys()) {
    if (!["host", "bdf", "kind", "since"].includes(k)) {
      throw new FilterError(k, `unknown filter ${JSON.stringify(k.slice(0, 64))}: host, bdf, kind or since`);
    }
  }
  const out: EventFilters = {};
  const one = (name: string): string | undefined => {
    const all = q.getAll(name);
    if (all.length > 1) throw new FilterError(name, `${name} given ${all.length} times`);
    const v = all[0]?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const host = one("host");
  if (host !== undefined) {
    if (!HOST_RE.test(host)) {
      throw new FilterError(
        "host",
        `bad host ${JSON.stringify(host.slice(0, 80))}: 1-64 letters, digits, '-' or '_'`,
      );
    }
    out.host = host;
  }
  const bdf = one("bdf");
  if (bdf !== undefined) {
    try {
      bdfToken(bdf);
    } catch {
      throw new FilterError(
        "bdf",
        `bad bdf ${JSON.stringify(bdf.slice(0, 80))}: a PCI address DDDD:BB:DD.F in lowercase hex, such as 0000:01:00.0`,
      );
    }
    out.bdf = bdf;
  }
  const kinds = q
    .getAll("kind")
    .flatMap((k) => k.split(","))
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
  if (kinds.length > 0) {
    const unknown = kinds.find((k) => !KNOWN.has(k));
    if (unknown !== undefined) {
      throw new FilterError(
        "kind",
        `unknown kind ${JSON.stringify(unknown.slice(0, 64))} (state.entered, plan, verified…)`,
      );
    }
    out.kinds = [...new Set(kinds)];
  }
  const since = one("since");
  if (since !== undefined) out.since = parseSince(since, nowMs);
  return out;
}

/** Does a listed event pass the host, device and kind filters? (since is where a replay starts.) */
export function matches(f: EventFilters, e: UiEvent): boolean {
  if (f.host !== undefined && e.host !== f.host) return false;
  if (f.bdf !== undefined && e.device !== f.bdf) return false;
  if (f.kinds !== undefined) return f.kinds.includes(e.kind);
  // Heartbeats only when asked for by kind: they would drown everything else.
  return e.kind !== "heartbeat";
}
