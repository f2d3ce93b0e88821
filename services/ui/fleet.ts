// The fleet as the page shows it: every device with its lifecycle state, its recent resets (phases and their
// durations), its last plan and refusal; the fleet's counters (outcomes, MTTR per method, the breaker); the
// recent events. Pure: fed the coordinator's status reply and events (in stream order), read back as views.
// Only the coordinator's subject space changes a device (fromCoordinator: the envelope agrees with a
// cxlrc.evt.> subject); what an agent publishes is listed, never believed. Strings from the bus are kept as
// they came (control characters stripped): escaping is the renderer's job (page.ts, textContent in app.js).
import { type FeedEvent, fromCoordinator } from "../../client/feed-event.ts";
import { applyEvent, newTracked, OUTCOME_KINDS, type TrackedRequest } from "../../client/track.ts";
import { bdfFromToken } from "../../shared/bus/subjects.ts";
import { stripControl } from "../../shared/bus/trust.ts";
import { trimOldest } from "../../shared/remember.ts";
import { summarize } from "../cli/format/event.ts";

/** What a grid cell is coloured by. */
export type CellClass = "ready" | "resetting" | "refused" | "failed" | "quarantined" | "unavailable";

/** Lifecycle states a device rests in; any other state is a phase of a reset in progress. */
const REST_STATES = new Set(["ready", "quarantined", "unavailable"]);

export interface Cell {
  host: string;
  bdf: string;
  cls: CellClass;
  /** "ready (verified)", "resetting (savingImage)", "refused (device-busy)", "quarantined"… */
  text: string;
  /** The accessible name: "HOST BDF: text". */
  label: string;
  /** The quarantine reason, or the last refusal or failure, in a sentence (empty when none). */
  why: string;
}

export interface PhaseTime {
  phase: string;
  ms: number | null;
}

export interface ResetRecord {
  requestId: string;
  scope: string | null;
  method: string | null;
  outcome: string | null;
  reason: string | null;
  startedAt: string | null;
  durationMs: number | null;
  phases: PhaseTime[];
}

export interface PlanView {
  requestId: string;
  scope: string | null;
  method: string | null;
  escalated: boolean;
  dryRun: boolean;
  targets: string[];
  steps: string[];
  gates: Array<{ gate: string; passed: boolean; message: string }>;
  at: string;
}

export interface RefusalView {
  requestId: string;
  reason: string;
  message: string;
  retryAfterMs: number | null;
  gates: Array<{ gate: string; reason: string | null; message: string }>;
  at: string;
}

export interface DeviceDetail {
  cell: Cell;
  state: string;
  requestId: string | null;
  quarantineReason: string | null;
  scopeViolations: number;
  resets: ResetRecord[];
  lastPlan: PlanView | null;
  lastRefusal: RefusalView | null;
}

export interface UiEvent {
  id: string;
  time: string;
  /** From the subject: coordinator (cxlrc.evt.>) or agent (cxlrc.agt.>). */
  source: "coordinator" | "agent";
  host: string;
  /** The BDF, or "agent" for a host-level event (from the subject). */
  device: string;
  kind: string;
  requestId: string | null;
  summary: string;
  /** Why the envelope disagrees with its subject, or null. */
  mismatch: string | null;
}

export interface Breaker {
  status: "open" | "closed" | "unknown";
  reason: string | null;
  /** Where the page learnt it: the status reply or an event (a breaker-open refusal, breaker.closed). */
  from: "status" | "event" | null;
}

export interface Counters {
  since: string;
  outcomes: Record<string, number>;
  /** Mean time from request to outcome of the resets that ended (verified, failed, quarantined), per method. */
  mttrMs: Record<string, { meanMs: number; resets: number }>;
  breaker: Breaker;
}

export interface FleetView {
  coordinator: string | null;
  devices: Cell[];
  counters: Counters;
}

/** What one input changed: the cells to redraw, whether the counters moved, the event to list. */
export interface FleetChange {
  cells: Cell[];
  counters: boolean;
  event: UiEvent | null;
}

interface Device {
  host: string;
  bdf: string;
  state: string;
  requestId: string | null;
  quarantineReason: string | null;
  scopeViolations: number;
  lastOutcome: { kind: string; reason: string | null } | null;
  /** Oldest first; the running one last. */
  resets: TrackedRequest[];
  lastPlan: PlanView | null;
  lastRefusal: RefusalView | null;
}

export interface FleetOptions {
  historyPerDeviceMax: number;
  recentEventsMax: number;
  now?: () => number;
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | null => (typeof v === "string" && v.length > 0 ? stripControl(v) : null);
const strs = (v: unknown): string[] =>
  arr(v).flatMap((x) => (typeof x === "string" ? [stripControl(x)] : []));

/** Event ids remembered to drop a replayed copy of an event already applied (resync after an outage). */
const SEEN_IDS_MAX = 20_000;
const ENDED = new Set(["verified", "failed", "quarantined"]);

export function cellOf(d: Device): Cell {
  let cls: CellClass;
  let text: string;
  let why = "";
  if (d.state === "quarantined") {
    cls = "quarantined";
    text = "quarantined";
    why = d.quarantineReason ?? d.lastOutcome?.reason ?? "";
  } else if (d.state === "unavailable") {
    cls = "unavailable";
    text = "unavailable";
  } else if (!REST_STATES.has(d.state)) {
    cls = "resetting";
    text = `resetting (${d.state})`;
  } else if (d.lastOutcome?.kind === "refused" || d.lastOutcome?.kind === "failed") {
    cls = d.lastOutcome.kind;
    text = `${d.lastOutcome.kind}${d.lastOutcome.reason ? ` (${firstWords(d.lastOutcome.reason)})` : ""}`;
    why = d.lastOutcome.reason ?? "";
  } else {
    cls = "ready";
    text = d.lastOutcome?.kind === "verified" ? "ready (verified)" : "ready";
  }
  return { host: d.host, bdf: d.bdf, cls, text, label: `${d.host} ${d.bdf}: ${text}`, why };
}

/** A reason code stays whole; a sentence is cut to its first words for the cell (the panel has it all). */
function firstWords(s: string): string {
  return s.length <= 40 ? s : `${s.slice(0, 39)}…`;
}

function recordOf(t: TrackedRequest, nowMs: number): ResetRecord {
  return {
    requestId: t.requestId,
    scope: t.scope,
    method: t.method,
    outcome: t.outcome,
    reason: t.reason,
    startedAt: t.startMs === null ? null : new Date(t.startMs).toISOString(),
    durationMs: t.startMs === null ? null : (t.endMs ?? nowMs) - t.startMs,
    phases: t.phases.map((p) => ({ phase: p.phase, ms: (p.endMs ?? nowMs) - p.startMs })),
  };
}

export function uiEventOf(item: FeedEvent): UiEvent {
  const { origin, event } = item;
  let device = origin.device;
  if (device !== "agent") {
    try {
      device = bdfFromToken(device);
    } catch {
      // not a BDF token: shown as the subject has it
    }
  }
  return {
    id: stripControl(event.id),
    time: stripControl(event.time),
    source: origin.source,
    host: origin.host,
    device: stripControl(device),
    kind: stripControl(origin.kind),
    requestId: str(event.requestId),
    summary: stripControl(summarize({ ...event, kind: origin.kind })),
    mismatch: item.mismatch === null ? null : stripControl(item.mismatch),
  };
}

export interface Fleet {
  /** The coordinator's status reply: devices (state, quarantine reason), the breaker, who answered. */
  applyStatus(reply: unknown): FleetChange;
  /** One event (replayed or live); a copy of one already applied (same envelope id) changes nothing. */
  applyEvent(item: FeedEvent): FleetChange;
  view(): FleetView;
  cell(host: string, bdf: string): Cell | null;
  device(host: string, bdf: string): DeviceDetail | null;
  /** The recent events, oldest first. */
  recent(): UiEvent[];
  counters(): Counters;
}

export function createFleet(opts: FleetOptions): Fleet {
  const now = opts.now ?? Date.now;
  const devices = new Map<string, Device>();
  const recent: UiEvent[] = [];
  const seen = new Set<string>();
  const outcomes: Record<string, number> = {};
  const counted = new Set<string>();
  const mttr = new Map<string, { totalMs: number; resets: number }>();
  let breaker: Breaker = { status: "unknown", reason: null, from: null };
  let coordinator: string | null = null;
  const since = new Date(now()).toISOString();

  const key = (host: string, bdf: string) => `${host} ${bdf}`;
  const upsert = (host: string, bdf: string): Device => {
    let d = devices.get(key(host, bdf));
    if (!d) {
      d = {
        host,
        bdf,
        state: "ready",
        requestId: null,
        quarantineReason: null,
        scopeViolations: 0,
        lastOutcome: null,
        resets: [],
        lastPlan: null,
        lastRefusal: null,
      };
      devices.set(key(host, bdf), d);
    }
    return d;
  };
  const sorted = () =>
    [...devices.values()].sort((a, b) => a.host.localeCompare(b.host) || a.bdf.localeCompare(b.bdf));

  const counters = (): Counters => ({
    since,
    outcomes: { ...outcomes },
    mttrMs: Object.fromEntries(
      [...mttr].map(([m, v]) => [m, { meanMs: Math.round(v.totalMs / v.resets), resets: v.resets }]),
    ),
    breaker: { ...breaker },
  });

  const tracked = (d: Device, requestId: string): TrackedRequest => {
    let t = d.resets.find((r) => r.requestId === requestId);
    if (!t) {
      t = newTracked(requestId, d.host, d.bdf);
      d.resets.push(t);
      if (d.resets.length > opts.historyPerDeviceMax)
        d.resets.splice(0, d.resets.length - opts.historyPerDeviceMax);
    }
    return t;
  };

  const remember = (id: string): boolean => {
    if (seen.has(id)) return false;
    seen.add(id);
    trimOldest(seen, SEEN_IDS_MAX);
    return true;
  };

  /** The device's part of a coordinator event; true when the counters moved. */
  const applyToDevice = (d: Device, item: FeedEvent): boolean => {
    const e = item.event;
    const data = e.data;
    const at = e.time;
    let countersMoved = false;
    if (e.requestId) {
      applyEvent(tracked(d, e.requestId), item);
      if (e.kind === "state.entered")
        d.requestId = REST_STATES.has(str(data.state) ?? "") ? null : e.requestId;
    }
    switch (e.kind) {
      case "state.entered": {
        const state = str(data.state);
        if (state) d.state = state;
        if (state === "ready") d.quarantineReason = null;
        break;
      }
      case "plan": {
        const p = obj(data.plan);
        d.lastPlan = {
          requestId: str(p.requestId) ?? str(e.requestId) ?? "",
          scope: str(p.scope),
          method: str(p.method),
          escalated: p.escalated === true,
          dryRun: p.dryRun === true || data.dryRun === true,
          targets: strs(p.targets),
          steps: strs(p.steps),
          gates: arr(p.gates).map((g) => ({
            gate: str(obj(g).gate) ?? "?",
            passed: obj(g).passed === true,
            message: str(obj(g).message) ?? "",
          })),
          at,
        };
        break;
      }
      case "refused": {
        const r = obj(data.refusal);
        d.lastRefusal = {
          requestId: str(r.requestId) ?? str(e.requestId) ?? "",
          reason: str(r.reason) ?? "?",
          message: str(r.message) ?? "",
          retryAfterMs: typeof r.retryAfterMs === "number" ? r.retryAfterMs : null,
          gates: arr(r.gates)
            .map(obj)
            .filter((g) => g.passed === false)
            .map((g) => ({ gate: str(g.gate) ?? "?", reason: str(g.reason), message: str(g.message) ?? "" })),
          at,
        };
        if (d.lastRefusal.reason === "breaker-open") {
          breaker = { status: "open", reason: d.lastRefusal.message || "breaker open", from: "event" };
        }
        break;
      }
      case "quarantined":
        d.quarantineReason = str(data.reason) ?? d.quarantineReason;
        break;
      case "released":
        d.quarantineReason = null;
        break;
      case "scope.violation":
        if (typeof data.count === "number") d.scopeViolations = data.count;
        break;
      default:
        break;
    }
    if (OUTCOME_KINDS.has(e.kind) && data.dryRun !== true && e.kind !== "planned") {
      const t = e.requestId ? d.resets.find((r) => r.requestId === e.requestId) : undefined;
      d.lastOutcome = {
        kind: e.kind,
        reason:
          e.kind === "quarantined"
            ? (str(data.reason) ?? t?.reason ?? null)
            : e.kind === "failed"
              ? (str(obj(data.error).message) ?? str(obj(data.error).kind) ?? t?.reason ?? null)
              : (t?.reason ?? str(obj(data.refusal).reason)),
      };
      const id = e.requestId ?? e.id;
      if (!counted.has(id)) {
        counted.add(id);
        outcomes[e.kind] = (outcomes[e.kind] ?? 0) + 1;
        countersMoved = true;
        if (ENDED.has(e.kind) && t && t.startMs !== null && t.endMs !== null) {
          const method = t.method ?? str(data.method) ?? "unknown";
          const m = mttr.get(method) ?? { totalMs: 0, resets: 0 };
          m.totalMs += t.endMs - t.startMs;
          m.resets++;
          mttr.set(method, m);
        }
      }
    }
    return countersMoved;
  };

  return {
    applyStatus(reply) {
      const r = obj(reply);
      const changed: Cell[] = [];
      coordinator = str(r.id) ?? coordinator;
      for (const raw of arr(r.devices).map(obj)) {
        const host = str(raw.host);
        const bdf = str(raw.bdf);
        if (!host || !bdf) continue;
        const isNew = !devices.has(key(host, bdf));
        const d = upsert(host, bdf);
        const before = JSON.stringify(cellOf(d));
        d.state = str(raw.state) ?? d.state;
        d.requestId = str(raw.requestId);
        d.quarantineReason = str(raw.quarantineReason);
        if (typeof raw.scopeViolations === "number") d.scopeViolations = raw.scopeViolations;
        const cell = cellOf(d);
        if (isNew || JSON.stringify(cell) !== before) changed.push(cell);
      }
      const b = obj(r.breaker);
      const status = b.status === "open" || b.status === "closed" ? b.status : null;
      let countersMoved = false;
      if (status) {
        const next: Breaker = { status, reason: str(b.reason), from: "status" };
        countersMoved = JSON.stringify(next) !== JSON.stringify(breaker);
        breaker = next;
      }
      return { cells: changed, counters: countersMoved, event: null };
    },

    applyEvent(item) {
      if (!remember(item.event.id)) return { cells: [], counters: false, event: null };
      const ev = uiEventOf(item);
      if (ev.kind !== "heartbeat") {
        recent.push(ev);
        if (recent.length > opts.recentEventsMax) recent.splice(0, recent.length - opts.recentEventsMax);
      }
      if (!fromCoordinator(item)) return { cells: [], counters: false, event: ev };
      const e = item.event;
      if (e.kind === "breaker.closed") {
        breaker = { status: "closed", reason: null, from: "event" };
        return { cells: [], counters: true, event: ev };
      }
      if (e.bdf === null) return { cells: [], counters: false, event: ev };
      const isNew = !devices.has(key(e.host, e.bdf));
      const d = upsert(e.host, e.bdf);
      const before = JSON.stringify(cellOf(d));
      const countersMoved = applyToDevice(d, item);
      const cell = cellOf(d);
      return {
        cells: isNew || JSON.stringify(cell) !== before ? [cell] : [],
        counters: countersMoved,
        event: ev,
      };
    },

    view() {
      return { coordinator, devices: sorted().map(cellOf), counters: counters() };
    },

    cell(host, bdf) {
      const d = devices.get(key(host, bdf));
      return d ? cellOf(d) : null;
    },

    device(host, bdf) {
      const d = devices.get(key(host, bdf));
      if (!d) return null;
      const t = now();
      return {
        cell: cellOf(d),
        state: d.state,
        requestId: d.requestId,
        quarantineReason: d.quarantineReason,
        scopeViolations: d.scopeViolations,
        resets: d.resets.map((r) => recordOf(r, t)).reverse(),
        lastPlan: d.lastPlan,
        lastRefusal: d.lastRefusal,
      };
    },

    recent: () => [...recent],
    counters,
  };
}
