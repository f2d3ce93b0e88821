// A plan or a refusal (the coordinator's answer to a reset or plan request) as a few readable lines, and
// the decisions of the submit and plan replies, normalised.
import type { GateResult, Plan, Refusal } from "../../../machines/policy/types.ts";
import type { Colours } from "./colour.ts";
import { formatMs } from "./duration.ts";

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

function gateLines(gates: GateResult[] | undefined, c: Colours, onlyFailed: boolean): string[] {
  return (gates ?? [])
    .filter((g) => !onlyFailed || !g.passed)
    .map((g) => `    ${g.passed ? c.green("pass") : c.red("FAIL")}  ${g.gate.padEnd(18)} ${g.message}`);
}

export function formatPlan(p: Plan, c: Colours): string {
  const lines: string[] = [];
  const head = p.dryRun ? "plan (dry run, nothing touched)" : "plan";
  lines.push(`${c.bold(head)} ${p.requestId}: ${p.host} ${p.bdf}`);
  const scope =
    p.scope === p.requestedScope
      ? p.scope
      : `${p.scope} (escalated from ${p.requestedScope}${p.escalationReason ? ": see the note" : ""})`;
  lines.push(`  scope       ${scope}`);
  lines.push(
    `  method      ${p.method}${p.bridge ? ` at bridge ${p.bridge}${p.unmaskSbr ? " (Unmask SBR set for it, then put back)" : ""}` : ""}`,
  );
  lines.push(`  targets     ${p.targets.join(", ")}`);
  if (p.siblings.length > 0) lines.push(`  siblings    ${p.siblings.join(", ")}`);
  const extras = [
    p.cacheFlush ? "cache write-back + invalidate first" : null,
    p.memClear ? "memory clear" : null,
    p.configLock !== "not-set" ? `CONFIG_LOCK ${p.configLock}` : null,
    p.committedDecoders.length > 0 ? `decoders ${p.committedDecoders.join(", ")} re-committed` : null,
    p.retainedDecoders.length > 0 ? `decoders ${p.retainedDecoders.join(", ")} kept by the device` : null,
  ].filter((x): x is string => x !== null);
  if (extras.length > 0) lines.push(`  restore     ${extras.join("; ")}`);
  lines.push(`  steps       ${p.steps.join(" → ")}`);
  const d = p.deadlines;
  lines.push(
    `  deadlines   reset wait ${formatMs(d.resetWaitMs)}, commit ${formatMs(d.commitPerDecoderMs)} per decoder, agent call ${formatMs(d.agentCallMs)}`,
  );
  for (const n of p.notes) lines.push(`  ${c.yellow("note")}        ${n}`);
  return lines.join("\n");
}

export function formatRefusal(r: Refusal, c: Colours): string {
  const retry = r.retryAfterMs !== undefined ? ` (retry after ${formatMs(r.retryAfterMs)})` : "";
  const lines = [
    `${c.yellow("refused")} ${r.requestId}: ${r.host} ${r.bdf}: ${r.reason}: ${r.message}${retry}`,
  ];
  lines.push(
    ...gateLines(
      (r.gates ?? []).filter((g) => g.message !== r.message),
      c,
      true,
    ),
  );
  return lines.join("\n");
}

export function formatDecision(d: Decision, c: Colours): string {
  switch (d.kind) {
    case "plan":
      return formatPlan(d.plan, c);
    case "refused":
      return formatRefusal(d.refusal, c);
    case "rejected":
      return `${c.red("rejected")} ${d.requestId}: ${d.bdf}: ${d.message}`;
    default:
      return `${d.kind} ${d.requestId}: ${d.bdf}: ${d.message}`;
  }
}

/** Every gate of a plan or refusal (the dry run shows them all). */
export function formatGates(gates: GateResult[], c: Colours): string {
  return ["  gates", ...gateLines(gates, c, false)].join("\n");
}
