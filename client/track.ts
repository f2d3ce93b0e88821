// Following one reset request through its events: the phase it is in, how long each phase took, and how it
// ended. Pure: feed it events (in stream order), read the state. Used by `reset --wait` and the demo.
// Only the coordinator says how a request is doing: an event counts when it came on the coordinator's subject
// space, of the request's host, and its envelope agrees with that subject (fromCoordinator). Anything an agent
// publishes, whatever its envelope claims (kind "verified", source "coordinator"), changes nothing here.
import type { EventEnvelope } from "../shared/bus/codec.ts";
import { OUTCOME_KINDS as CONTRACT_OUTCOME_KINDS } from "../shared/bus/event-data.ts";
import { stripControl } from "../shared/bus/trust.ts";
import { type FeedEvent, fromCoordinator } from "./feed-event.ts";

/** Terminal outcome kinds: exactly one per request id (the bus contract's list, shared/bus/event-data.ts). */
export const OUTCOME_KINDS: ReadonlySet<string> = new Set(CONTRACT_OUTCOME_KINDS);
/** The coordinator turns a malformed request down before any device state exists. */
export const REJECT_KINDS = new Set(["request.rejected"]);

/** Phases grouped the way an operator reads a reset (the lifecycle's state names map onto them). */
export const PHASE_GROUPS = ["gate", "save", "reset", "restore", "verify"] as const;
export type PhaseGroup = (typeof PHASE_GROUPS)[number];

const GROUP_OF: Record<string, PhaseGroup> = {
  gating: "gate",
  regating: "gate",
  savingImage: "save",
  persistingImage: "save",
  quiescing: "reset",
  resetting: "reset",
  awaitingReady: "reset",
  restoring: "restore",
  committingDecoders: "restore",
  repairing: "restore",
  verifying: "verify",
};

export function phaseGroup(state: string): PhaseGroup | null {
  const leaf = state.split(".").at(-1) ?? state;
  return GROUP_OF[leaf] ?? GROUP_OF[state.split(".")[0] ?? ""] ?? null;
}

export interface PhaseSpan {
  phase: string;
  startMs: number;
  endMs: number | null;
}

export interface TrackedRequest {
  requestId: string;
  host: string;
  bdf: string;
  scope: string | null;
  method: string | null;
  /** The phase the device is in now (the lifecycle state name). */
  phase: string | null;
  phases: PhaseSpan[];
  startMs: number | null;
  endMs: number | null;
  /** verified | refused | planned | failed | quarantined | rejected, once the request ended. */
  outcome: string | null;
  /** Refusal reason, quarantine reason or error message. */
  reason: string | null;
  /** Fields an io reset changed (scope violations), by name. */
  violations: string[];
  repaired: boolean;
  events: number;
}

export function newTracked(requestId: string, host: string, bdf: string): TrackedRequest {
  return {
    requestId,
    host,
    bdf,
    scope: null,
    method: null,
    phase: null,
    phases: [],
    startMs: null,
    endMs: null,
    outcome: null,
    reason: null,
    violations: [],
    repaired: false,
    events: 0,
  };
}

/** A non-empty string of an event, made safe to print (every text kept here ends up on a terminal). */
const str = (v: unknown): string | null => (typeof v === "string" && v.length > 0 ? stripControl(v) : null);
const obj = (v: unknown): Record<string, unknown> =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

/**
 * Apply one event of the request (events of other requests, and events not from the coordinator about the
 * request's host, are ignored). Returns true when it changed.
 */
export function applyEvent(t: TrackedRequest, item: FeedEvent): boolean {
  const e = item.event;
  if (e.requestId !== t.requestId) return false;
  if (t.outcome !== null) return false;
  if (!fromCoordinator(item) || item.origin.host !== t.host) return false;
  const d = e.data;
  // The coordinator's own clock reading when it has one (atMs), else the envelope's time.
  const at = typeof d.atMs === "number" && d.atMs > 1e12 ? d.atMs : Date.parse(e.time);
  t.events++;
  t.startMs ??= at;
  const closeOpen = () => {
    const open = t.phases.at(-1);
    if (open && open.endMs === null) open.endMs = at;
  };
  switch (e.kind) {
    case "state.entered": {
      const state = str(d.state);
      if (state && e.bdf === t.bdf) {
        closeOpen();
        t.phase = state;
        t.phases.push({ phase: state, startMs: at, endMs: null });
      }
      break;
    }
    case "plan": {
      const plan = obj(d.plan);
      t.scope = str(plan.scope) ?? str(d.scope) ?? t.scope;
      t.method = str(plan.method) ?? str(d.method) ?? t.method;
      break;
    }
    case "reset.started":
      t.scope = str(d.scope) ?? t.scope;
      t.method = str(d.method) ?? t.method;
      break;
    case "scope.violation": {
      const fields = Array.isArray(d.fields) ? d.fields : [];
      for (const f of fields) {
        const name = str(obj(f).field) ?? str(f);
        if (name && !t.violations.includes(name)) t.violations.push(name);
      }
      break;
    }
    default:
      break;
  }
  if (OUTCOME_KINDS.has(e.kind) || REJECT_KINDS.has(e.kind)) {
    closeOpen();
    t.outcome = REJECT_KINDS.has(e.kind) ? "rejected" : e.kind;
    t.endMs = at;
    t.phase = t.outcome;
    t.scope = str(d.scope) ?? t.scope;
    t.method = str(d.method) ?? t.method;
    if (d.repaired === true) t.repaired = true;
    t.reason = outcomeReason(e);
  }
  return true;
}

/** The one-line why of an outcome event (refusal reason, quarantine reason, error), or null. */
export function outcomeReason(e: EventEnvelope): string | null {
  const d = e.data;
  const refusal = obj(d.refusal);
  const error = obj(d.error);
  return (
    str(refusal.reason) ??
    str(d.reason) ??
    str(error.message) ??
    str(refusal.message) ??
    str(d.message) ??
    null
  );
}

/** Milliseconds spent in each phase group (repeated phases, such as a repair round, add up). */
export function groupTimes(t: TrackedRequest, nowMs = Date.now()): Record<PhaseGroup, number | null> {
  const out: Record<PhaseGroup, number | null> = {
    gate: null,
    save: null,
    reset: null,
    restore: null,
    verify: null,
  };
  for (const p of t.phases) {
    const g = phaseGroup(p.phase);
    if (!g) continue;
    out[g] = (out[g] ?? 0) + ((p.endMs ?? nowMs) - p.startMs);
  }
  return out;
}

export function totalMs(t: TrackedRequest, nowMs = Date.now()): number | null {
  if (t.startMs === null) return null;
  return (t.endMs ?? nowMs) - t.startMs;
}

/** Exit code of a followed request: 0 only when verified (or planned, for a dry run). */
export function outcomeOk(outcome: string | null): boolean {
  return outcome === "verified" || outcome === "planned";
}
