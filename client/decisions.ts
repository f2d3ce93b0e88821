// The coordinator's decision for each device of a submit or plan reply, normalised: what the client hands its
// callers (and the CLI prints). A reply is read leniently: anything it does not recognise is "waiting".
import type { Plan, Refusal } from "../machines/policy/types.ts";

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : {});

export function isRefusal(r: unknown): r is Refusal {
  return obj(r).kind === "refusal";
}
export function isPlan(r: unknown): r is Plan {
  return obj(r).kind === "plan";
}

/** What the coordinator decided for one device of a request. */
export type Decision =
  | { kind: "plan"; bdf: string; requestId: string; plan: Plan }
  | { kind: "refused"; bdf: string; requestId: string; refusal: Refusal }
  | { kind: "rejected"; bdf: string; requestId: string; message: string }
  /** Waiting for a host or switch slot (the plan comes when it starts), or not decided within the reply time. */
  | { kind: "waiting"; bdf: string; requestId: string; message: string }
  | { kind: "duplicate"; bdf: string; requestId: string; message: string };

/**
 * The decisions of a cxlrc.ctl.submit or cxlrc.ctl.plan reply:
 * submit: { requestId, decisions: [{ bdf, requestId, kind, data }] } or { requestId, duplicate: true, outcome };
 * plan:   { requestId, decisions: [{ bdf, plan } | { bdf, refusal }] }.
 */
export function decisionsOf(reply: unknown, fallback: { requestId: string; bdf: string }): Decision[] {
  const r = obj(reply);
  const requestId = typeof r.requestId === "string" ? r.requestId : fallback.requestId;
  if (r.duplicate === true) {
    const outcome = obj(r.outcome);
    const ended =
      typeof outcome.outcome === "string" ? `; it ended ${outcome.outcome}` : "; it is still running";
    return [
      {
        kind: "duplicate",
        bdf: fallback.bdf,
        requestId,
        message: `request ${requestId} was already submitted${ended}`,
      },
    ];
  }
  const list = Array.isArray(r.decisions) ? r.decisions.map(obj) : [];
  return list.map((d): Decision => {
    const bdf = typeof d.bdf === "string" ? d.bdf : fallback.bdf;
    const id = typeof d.requestId === "string" ? d.requestId : requestId;
    const data = obj(d.data);
    if (isPlan(d.plan)) return { kind: "plan", bdf, requestId: id, plan: d.plan };
    if (isRefusal(d.refusal)) return { kind: "refused", bdf, requestId: id, refusal: d.refusal };
    switch (d.kind) {
      case "plan":
        if (isPlan(data.plan)) return { kind: "plan", bdf, requestId: id, plan: data.plan };
        break;
      case "refused":
        if (isRefusal(data.refusal)) return { kind: "refused", bdf, requestId: id, refusal: data.refusal };
        break;
      case "request.rejected":
        return {
          kind: "rejected",
          bdf,
          requestId: id,
          message: String(obj(data.error).message ?? "rejected"),
        };
      case "request.duplicate":
        return { kind: "duplicate", bdf, requestId: id, message: `request ${id} was already submitted` };
      case "request.waiting":
        return {
          kind: "waiting",
          bdf,
          requestId: id,
          message: `waiting for a free slot on the host (${String(data.reason ?? "host-busy")}, position ${String(data.position ?? "?")})`,
        };
      default:
        break;
    }
    return {
      kind: "waiting",
      bdf,
      requestId: id,
      message: "queued: not decided yet (the coordinators are busy)",
    };
  });
}
