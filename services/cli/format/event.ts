// One event, one line: time, host, device, who published it, kind and a short summary of what it says.
// Host, device, kind and publisher come from the subject the event came on (what the bus vouches for), never
// from the envelope's claims; an envelope that disagrees with its subject is flagged. Everything printed from
// the event passes through stripControl first: a publisher cannot drive the reader's terminal.

import type { FeedEvent } from "../../../client/feed-event.ts";
import type { EventEnvelope } from "../../../shared/bus/codec.ts";
import { bdfFromToken } from "../../../shared/bus/subjects.ts";
import { stripControl } from "../../../shared/bus/trust.ts";
import { type Colours, outcomeColour } from "./colour.ts";
import { clockTime, formatMs } from "./duration.ts";

const obj = (v: unknown): Record<string, unknown> =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const s = (v: unknown): string => (typeof v === "string" ? v : JSON.stringify(v));

/** Scalars of an object as "k=v" pairs (the generic summary), skipping bookkeeping keys. */
function pairs(d: Record<string, unknown>, skip: string[] = []): string {
  const out: string[] = [];
  for (const [k, v] of Object.entries(d)) {
    if (skip.includes(k) || k === "coordinator" || k === "atMs") continue;
    if (typeof v === "number" && k.endsWith("Ms")) out.push(`${k.slice(0, -2)}=${formatMs(v)}`);
    else if (typeof v === "number" && !Number.isInteger(v)) out.push(`${k}=${v.toFixed(2)}`);
    else if (v === null || ["string", "number", "boolean"].includes(typeof v)) out.push(`${k}=${s(v)}`);
    else if (Array.isArray(v) && v.length <= 4 && v.every((x) => typeof x !== "object")) {
      out.push(`${k}=${v.map(s).join(",")}`);
    }
  }
  return out.join(" ");
}

function fieldNames(list: unknown): string[] {
  if (!Array.isArray(list)) return [];
  return list.map((f) => (typeof f === "string" ? f : s(obj(f).field ?? f)));
}

function shortList(names: string[], max = 3): string {
  return names.length <= max ? names.join(", ") : `${names.slice(0, max).join(", ")} +${names.length - max}`;
}

/** What the event says, in a few words. */
export function summarize(e: EventEnvelope): string {
  const d = e.data;
  switch (e.kind) {
    case "state.entered":
      return s(d.state ?? "");
    case "plan": {
      const p = obj(d.plan);
      const scope = p.scope ?? d.scope;
      const method = p.method ?? d.method;
      const targets = Array.isArray(p.targets) ? ` targets ${p.targets.length}` : "";
      const esc = p.escalated === true ? " (escalated from io)" : "";
      return `scope ${s(scope)} method ${s(method)}${targets}${esc}${p.dryRun === true ? " dry run" : ""}`;
    }
    case "refused":
    case "request.rejected": {
      const r = obj(d.refusal);
      const reason = r.reason ?? d.reason;
      const msg = r.message ?? d.message;
      return [reason, msg]
        .filter((x) => x !== undefined)
        .map(s)
        .join(": ");
    }
    case "scope.violation": {
      const names = fieldNames(d.fields);
      return `${names.length} CXL field(s) changed by an io reset: ${shortList(names)}`;
    }
    case "verify.failed": {
      const names = fieldNames(d.mismatches);
      return `round ${s(d.round ?? 0)}: ${names.length} mismatch(es) ${shortList(names)}`;
    }
    case "verify.passed":
      return `scope ${s(d.scope ?? "?")} round ${s(d.round ?? 0)}`;
    case "verified":
      return `scope ${s(d.scope ?? "?")} method ${s(d.method ?? "?")}${d.repaired === true ? " (repaired)" : ""}`;
    case "quarantined":
      return `${s(d.reason ?? "")}${obj(d.error).message ? `: ${s(obj(d.error).message)}` : ""}`;
    case "failed":
    case "step.failed": {
      const err = obj(d.error);
      return [d.phase, err.kind, err.message]
        .filter((x) => x !== undefined)
        .map(s)
        .join(": ");
    }
    case "decoder.committed": {
      const dec = obj(d.decoder);
      const n = dec.index ?? d.decoder;
      const of = typeof dec.bdf === "string" && dec.bdf !== e.bdf ? ` of ${dec.bdf}` : "";
      const kept = dec.retained === true ? " (kept by the device)" : "";
      return `decoder ${s(n)}${of}${kept}${typeof d.waitedMs === "number" ? ` in ${formatMs(d.waitedMs)}` : ""}`;
    }
    case "reset.started": {
      const targets =
        Array.isArray(d.targets) && d.targets.length > 1 ? ` (${d.targets.length} functions)` : "";
      return `${d.scope ? `scope ${s(d.scope)} ` : ""}method ${s(d.method ?? "?")}${targets}${d.memClear === true ? " with memory clear" : ""}`;
    }
    case "image.persisted": {
      const img = obj(d.image);
      return img.key ? `stored as ${s(img.key)} revision ${s(img.revision)}` : pairs(d);
    }
    case "request.received":
      return "";
    case "op.started":
      return s(d.op ?? "");
    case "op.completed":
      return `${s(d.op ?? "")}${typeof d.durationMs === "number" ? ` in ${formatMs(d.durationMs)}` : ""}`;
    case "op.failed": {
      const err = obj(d.error);
      return [d.op, err.kind, err.message]
        .filter((x) => x !== undefined)
        .map(s)
        .join(": ");
    }
    case "reset.completed":
      return `method ${s(d.method ?? "?")}${typeof d.durationMs === "number" ? ` in ${formatMs(d.durationMs)}` : ""}`;
    case "driver.rebound":
    case "driver.rebind-failed": {
      const drivers = Object.entries(obj(d.drivers)).map(([bdf, name]) =>
        bdf === e.bdf ? s(name) : `${s(name)} on ${bdf}`,
      );
      if (e.kind === "driver.rebind-failed") {
        return `${drivers.join(", ")} not bound again: ${s(obj(d.error).message ?? "")}`;
      }
      const v = obj(d.verify);
      const check =
        v.passed === true ? ", verified with it" : v.passed === false ? ", differs from its image" : "";
      return `${drivers.join(", ")} bound again${check}`;
    }
    case "driver.unbound":
      return `${s(d.driver ?? "?")} taken for the reset${d.override ? ` (driver_override ${s(d.override)})` : ""}`;
    case "heartbeat":
      return pairs(d, ["version", "host"]);
    default:
      return pairs(d);
  }
}

/** The device column, from the subject: the BDF, or "agent" for host events. */
export function deviceOf(e: FeedEvent): string {
  if (e.origin.device === "agent") return "agent";
  try {
    return bdfFromToken(e.origin.device);
  } catch {
    return e.origin.device;
  }
}

const KIND_WIDTH = 18;

/** The publisher column: the subject space the event came on. */
const SOURCE_LABEL = { coordinator: "coord", agent: "agent" } as const;

export function eventLine(item: FeedEvent, c: Colours): string {
  const { origin } = item;
  const kindText = stripControl(origin.kind);
  const colourKind =
    origin.source === "coordinator"
      ? outcomeColour(c, origin.kind === "scope.violation" ? "violation" : origin.kind)
      : c.dim;
  const summary = stripControl(summarize({ ...item.event, kind: origin.kind }));
  const flag = item.mismatch ? `  ${c.red(`[envelope disagrees: ${stripControl(item.mismatch)}]`)}` : "";
  return `${c.dim(stripControl(clockTime(item.event.time)))}  ${stripControl(origin.host).padEnd(8)}  ${c.cyan(
    stripControl(deviceOf(item)).padEnd(12),
  )}  ${SOURCE_LABEL[origin.source]}  ${colourKind(kindText.padEnd(KIND_WIDTH))}  ${summary}${flag}`.trimEnd();
}

/**
 * The JSON line of an event: the subject it came on, then the envelope as published. JSON.stringify escapes
 * C0 controls (ESC included) but leaves DEL and C1 (U+009B is a CSI on some terminals) raw: escape those too.
 */
export function eventJson(item: FeedEvent): string {
  return JSON.stringify({ subject: item.subject, ...item.event }).replace(
    /[\u007f-\u009f]/g,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
