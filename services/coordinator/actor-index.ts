// What a stored actor says about itself in the headers of its message in the actors bucket: its state, whether
// it is mid-operation, who wrote it, the request it runs, its held announcements and scope violations. Readers
// of the bucket (the fleet view, recovery, status) learn every device's state from one headers-only watch, so
// a resting device costs nothing to recover and nothing to report: no snapshot is read for it.
import { type MsgHdrs, headers as natsHeaders } from "@nats-io/transport-node";
import type { LifecycleContext } from "../../machines/lifecycle-types.ts";
import type { ActorRecord } from "./store.ts";

export const ACTOR_HEADER = {
  state: "Cxlrc-State",
  active: "Cxlrc-Active",
  owner: "Cxlrc-Owner",
  request: "Cxlrc-Request",
  announce: "Cxlrc-Announce",
  violations: "Cxlrc-Scope-Violations",
} as const;

/** A device as the headers of its stored actor describe it. */
export interface ActorSummary {
  state: string;
  active: boolean;
  owner: string;
  /** The request it runs (taken, no outcome yet). */
  requestId: string | null;
  /** Events held for this record (announce): a reader at rest re-publishes them. */
  announce: number;
  scopeViolations: number;
}

/** Printable ASCII without CR/LF, as a header value must be; anything else is left out (readers read the record). */
const HEADER_VALUE = /^[\x20-\x7e]{1,256}$/;

export function summarize(rec: ActorRecord): ActorSummary {
  const ctx = (rec.snapshot as { context?: Partial<LifecycleContext> } | null)?.context ?? {};
  return summaryOf(rec, ctx, rec.announce?.length ?? 0);
}

/** The summary of a record made of these fields, this context (live or stored) and `announce` held events. */
export function summaryOf(
  rec: Pick<ActorRecord, "state" | "active" | "owner">,
  ctx: Partial<LifecycleContext>,
  announce: number,
): ActorSummary {
  return {
    state: rec.state,
    active: rec.active,
    owner: rec.owner,
    requestId: ctx.request && (ctx.outcome ?? null) === null ? ctx.request.requestId : null,
    announce,
    scopeViolations: ctx.scopeViolations ?? 0,
  };
}

/**
 * The headers written with a record (the caller adds its compare-and-set header). All or nothing: a value that
 * could not be a header (an odd request id) leaves the summary out, and readers read the record instead.
 */
export function summaryHeaders(s: ActorSummary, h: MsgHdrs = natsHeaders()): MsgHdrs {
  const values: Array<[string, string]> = [
    [ACTOR_HEADER.state, s.state],
    [ACTOR_HEADER.active, s.active ? "1" : "0"],
    [ACTOR_HEADER.owner, s.owner],
    [ACTOR_HEADER.announce, String(s.announce)],
    [ACTOR_HEADER.violations, String(s.scopeViolations)],
    ...(s.requestId !== null ? [[ACTOR_HEADER.request, s.requestId] as [string, string]] : []),
  ];
  if (values.every(([, v]) => HEADER_VALUE.test(v))) for (const [k, v] of values) h.set(k, v);
  return h;
}

/**
 * The summary in a stored message's headers, or null when it has none to trust (written by an older version,
 * or a value that could not be a header): the reader reads the record itself.
 */
export function summaryFromHeaders(h: MsgHdrs | undefined): ActorSummary | null {
  if (!h) return null;
  const state = h.get(ACTOR_HEADER.state);
  const active = h.get(ACTOR_HEADER.active);
  const owner = h.get(ACTOR_HEADER.owner);
  const announce = Number(h.get(ACTOR_HEADER.announce));
  const violations = Number(h.get(ACTOR_HEADER.violations));
  if (!state || (active !== "0" && active !== "1") || !owner) return null;
  if (!Number.isInteger(announce) || !Number.isInteger(violations)) return null;
  const request = h.get(ACTOR_HEADER.request);
  return {
    state,
    active: active === "1",
    owner,
    requestId: request || null,
    announce,
    scopeViolations: violations,
  };
}
