// One XState actor per device (key host+bdf), running machines/lifecycle.ts with the NATS-backed actors of
// agent-actors.ts. The actor is the source of truth for the lifecycle order; this file keeps it durable and
// single-owner:
// - a device is driven only under its lease (leases.ts), taken before a request reaches the actor and given
//   back once the actor is at rest (ready, quarantined, unavailable) with that state stored;
// - every snapshot is stored (CAS) while the lease is held, and every step waits for its own snapshot first
//   (write-ahead), so whoever takes the device over continues from what was really done;
// - a coordinator that holds an actor in memory re-reads it from KV when another coordinator wrote it since;
// - the machine's emitted events become JetStream events, metrics and request outcomes.
import type { NatsConnection } from "@nats-io/transport-node";
import { nuid } from "@nats-io/transport-node";
import { type Actor, createActor, type Snapshot, waitFor } from "xstate";
import type { ResetRequest } from "../../machines/facts.ts";
import { createLifecycleMachine, type LifecycleMachine } from "../../machines/lifecycle.ts";
import type { LifecycleContext, LifecycleEmitted } from "../../machines/lifecycle-types.ts";
import type { Policy } from "../../machines/policy/defaults.ts";
import { planReset } from "../../machines/policy/plan.ts";
import type { Plan, Refusal } from "../../machines/policy/types.ts";
import type {
  VerifyResult as AgentVerify,
  InventoryResult,
  RestoreResult,
} from "../../shared/bus/agent-contract.ts";
import { errorToBody } from "../../shared/bus/codec.ts";
import { bdfFromToken, deviceKey } from "../../shared/bus/subjects.ts";
import { CxlrcError, describeError, type ErrorKind } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { Admission } from "./admission.ts";
import { createAgentActors, type DeviceAccess, type StepHook, targetOpId } from "./agent-actors.ts";
import type { AgentLink } from "./agent-link.ts";
import { EVENT, type EventInput, type EventPublisher } from "./events.ts";
import type { FleetStore } from "./fleet-state.ts";
import type { LeaseManager } from "./leases.ts";
import type { CoordinatorMetrics } from "./metrics.ts";
import type { Outcomes, RequestOutcomeKind } from "./outcomes.ts";
import { factsFromProbe } from "./probe-facts.ts";
import type {
  ActorRecord,
  AnnouncedEvent,
  CoordinatorStore,
  DecisionRecord,
  Stored,
  VerifiedImageRecord,
} from "./store.ts";

/** States a device rests in: nothing runs, the lease can go. */
export const REST_STATES: ReadonlySet<string> = new Set(["ready", "quarantined", "unavailable"]);

const OUTCOMES: ReadonlySet<string> = new Set(["refused", "planned", "verified", "failed", "quarantined"]);
const REQUESTS_KEPT = 64;
/** Within this age of a stored record, the events stream's duplicate window (2 min) drops a repeat. */
const DEDUP_TRUST_MS = 90_000;

type DeviceActor = Actor<LifecycleMachine>;

export interface DeviceActorsOptions {
  nc: NatsConnection;
  /** Agent calls (and the agent events believed for them). */
  link: AgentLink;
  /** Coordinator id. */
  id: string;
  store: CoordinatorStore;
  leases: LeaseManager;
  fleet: FleetStore;
  events: EventPublisher;
  metrics: CoordinatorMetrics;
  outcomes: Outcomes;
  admission: Admission;
  /** The effective policy (defaults + overrides) and the overrides given to every new actor. */
  policy: Policy;
  policyOverrides: Partial<Policy>;
  log: Logger;
  now: () => number;
  inventory(host: string, fresh?: boolean): Promise<InventoryResult>;
  hook?: StepHook;
  /** How long a request may wait for a device actor to settle (binding, probing). Default 30 s. */
  settleTimeoutMs?: number;
}

export type Decision =
  | { kind: "accepted"; plan: Plan }
  | { kind: "refused"; refusal: Refusal }
  | { kind: "duplicate"; requestId: string };

export interface DeviceStatus {
  host: string;
  bdf: string;
  state: string;
  requestId: string | null;
  /** The device lease is held by this coordinator. */
  leaseHeld: boolean;
  scopeViolations: number;
  quarantineReason: string | null;
  /** Coordinator driving the device: this one for a local actor, else the one that stored it last. */
  owner: string | null;
  /** This coordinator's live actor (true), or the stored snapshot of a device driven elsewhere (false). */
  local: boolean;
}

/** What `release` with `restore` did: the last known good image put back and read back. */
export interface RestoreReport {
  /** Every restored function read back equal to its last known good image. */
  verified: boolean;
  /** The last known good image used (the device's own record). */
  image: {
    key: string;
    revision: number;
    requestId: string | null;
    savedAt: string;
    verifiedAt: string;
  };
  functions: Array<{
    bdf: string;
    /** Decoders as the agent's restore left them (committed, retained, kept...). */
    decoders: Array<{ index: number; action: string }>;
    passed: boolean;
    mismatches: Array<{ field: string; expected: unknown; actual: unknown }>;
  }>;
  /** The restore or verify call that failed, if one did. */
  error?: { kind: string; message: string };
}

export interface ReleaseResult {
  /** State reached: ready (or unavailable when the probe after the release failed). */
  state: string;
  /** Only with `restore`. */
  restore: RestoreReport | null;
}

interface Device {
  key: string;
  host: string;
  bdf: string;
  actor: DeviceActor | null;
  unsubscribe: (() => void) | null;
  /** Revision of the stored actor record as last read or written here (null: none). */
  revision: number | null;
  lastWritten: string | null;
  writing: Promise<void>;
  /** Phase the actor was restored in (mid-reset), consumed by that phase's first step. */
  recovery: string | null;
  requests: string[];
  /** Dispatches, releases and recoveries of this device run one after the other. */
  chain: Promise<unknown>;
  /** >0 while a dispatch needs the lease kept. */
  pinned: number;
  /** The lease has been held without a break since the actor was last synced from KV. */
  owned: boolean;
  releaseQueued: boolean;
  stateName: string;
  stateSinceMs: number;
  plans: Map<string, { method: string; scope: string; atMs: number }>;
  /** Writes of the last known good image (after a verify passed): joined by the next step and the outcome. */
  lastKnownGood: Promise<void>;
  /** Added to the data of the machine's `released` event (a release with restore reports its verify). */
  releaseData: Record<string, unknown> | null;
  /** Coordinator that wrote the stored record last, as read or written here. */
  storedOwner: string | null;
  /**
   * Events held until the snapshot that decided them is stored (an outcome, and everything the machine emits
   * after it until that write): never an outcome on the stream that the stored state does not know.
   */
  held: Array<{ event: AnnouncedEvent; sent: (p: Promise<unknown>) => void }>;
  /**
   * A device at rest whose actor was let go (its state is stored, its lease given back): what status shows of
   * it. Its actor is built again from the stored record on its next request.
   */
  rest: { state: string; scopeViolations: number; quarantineReason: string | null } | null;
}

export interface DeviceActors {
  /** Hand a request to its device's actor; resolves once the actor accepted (plan) or refused it. */
  dispatch(
    request: ResetRequest,
    opts?: { onWaiting?: (position: number) => void; signal?: AbortSignal },
  ): Promise<Decision>;
  /** A plan or refusal for the request from fresh facts: nothing is touched, nothing stored. */
  dryRun(request: ResetRequest): Promise<Plan | Refusal>;
  /** Operator: out of quarantine. Resolves with the state reached (ready, or unavailable). */
  release(host: string, bdf: string, operator: string, reason: string): Promise<string>;
  /**
   * Operator: out of quarantine, optionally restoring the device first from its last known good image (full
   * scope, then verify). A restore that does not verify leaves the device quarantined (CxlrcError naming why,
   * details.restore the report).
   */
  releaseDevice(
    host: string,
    bdf: string,
    opts: { operator: string; reason: string; restore?: boolean },
  ): Promise<ReleaseResult>;
  /**
   * Create (or load) an actor for every CXL device of the host; returns their BDFs. `skip`: devices not to build
   * now (a start-up passes the ones already stored: their actor is built on their first request).
   */
  discover(host: string, opts?: { skip?: (key: string) => boolean }): Promise<string[]>;
  /**
   * Take over a device whose stored actor is mid-operation and whose lease is free. `hint.active`: the caller
   * knows it is mid-operation (the record's headers), so only the read under the lease is made.
   */
  recover(key: string, hint?: { active: boolean }): Promise<boolean>;
  status(): DeviceStatus[];
  /** Local actors with the revision of their stored record last read or written here. */
  local(): Array<{ key: string; revision: number | null; leaseHeld: boolean; status: DeviceStatus }>;
  /** Stop every actor; release leases unless `release: false` (a crash: they expire). */
  stop(opts?: { release?: boolean }): Promise<void>;
  /** Drop a device after its lease was lost (leases.ts onLost). */
  leaseLost(key: string): void;
  /** Requests this coordinator is handing to an actor or running (a local actor not at rest). */
  liveRequests(): Set<string>;
  /**
   * A stored record at rest whose writer may have died between storing it and publishing what it decided
   * (its `announce`): publish that now, under the same ids. Once per record revision per process. Resolves
   * false when it was left for the device's current holder (a later pass must look again), true otherwise.
   */
  announceStored(key: string, rec: Stored<ActorRecord>): Promise<boolean>;
}

/** The request a stored snapshot is running (taken, no outcome yet), if any. */
function runningRequest(snapshot: unknown): string | null {
  const ctx = (snapshot as { context?: Partial<LifecycleContext> } | undefined)?.context;
  return ctx?.request && (ctx.outcome ?? null) === null ? ctx.request.requestId : null;
}

function stateOf(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * A stored snapshot as this version runs it. Snapshots stored before time budgets moved into the effects carry a
 * `deadlineTimer` child and a `deadlineMs`: dropped (the step re-invoked on restore starts its budget afresh).
 */
export function currentSnapshot(snapshot: unknown): unknown {
  const s = structuredClone(snapshot) as {
    context?: LifecycleContext & { deadlineMs?: unknown };
    children?: Record<string, { src?: string; snapshot?: { input?: Record<string, unknown> } }>;
  };
  if (s.context && "deadlineMs" in s.context) {
    // The budget the old deadline stood for: from the phase's start to its deadline.
    const { deadlineMs, ...rest } = s.context;
    const startMs = rest.timings?.at(-1)?.startMs;
    const budget =
      typeof deadlineMs === "number" && typeof startMs === "number" && deadlineMs > startMs
        ? deadlineMs - startMs
        : null;
    s.context = { ...rest, timeoutMs: rest.timeoutMs ?? budget } as LifecycleContext;
  }
  for (const [id, child] of Object.entries(s.children ?? {})) {
    if (child.src === "deadlineTimer") {
      delete s.children![id];
      continue;
    }
    const input = child.snapshot?.input;
    if (input && typeof input.opId === "string" && typeof input.timeoutMs !== "number") {
      input.timeoutMs = s.context?.timeoutMs ?? s.context?.policy?.agentCallTimeoutMs ?? 30_000;
    }
  }
  return s;
}

/**
 * The snapshot as stored: without the policy, which is the coordinator's configuration, not the device's state
 * (withPolicy puts the loading coordinator's back; a record stays ~600 bytes smaller on every write).
 */
function storedForm(snapshot: unknown): unknown {
  const s = snapshot as { context?: Partial<LifecycleContext> };
  if (!s.context || !("policy" in s.context)) return snapshot;
  const { policy: _p, ...context } = s.context;
  return { ...s, context };
}

/** A stored actor runs under this coordinator's policy (a running plan keeps the deadlines it was made with). */
function withPolicy(snapshot: unknown, policy: Policy): unknown {
  const s = structuredClone(snapshot) as { context?: LifecycleContext };
  if (s.context) s.context.policy = { ...policy };
  return s;
}

export function createDeviceActors(o: DeviceActorsOptions): DeviceActors {
  const devices = new Map<string, Device>();
  /** Requests between intake and their actor's decision (they may hold an admission slot already). */
  const dispatching = new Set<string>();
  /** Stored records (key@revision) whose announce this process has published again. */
  const announcedStored = new Set<string>();
  /** The device hooks the effects look up by key (the actors themselves are built once, below). */
  const access = new Map<string, DeviceAccess>();
  const machine = createLifecycleMachine({ now: o.now }).provide({
    actors: createAgentActors(
      {
        nc: o.nc,
        link: o.link,
        store: o.store,
        fleet: o.fleet,
        coordinatorId: o.id,
        policy: o.policy,
        log: o.log,
        now: o.now,
        inventory: o.inventory,
        ...(o.hook ? { hook: o.hook } : {}),
      },
      (key) => access.get(key),
    ),
  }) as LifecycleMachine;
  const settleTimeoutMs = o.settleTimeoutMs ?? 30_000;
  let stopping = false;

  const device = (host: string, bdf: string): Device => {
    const key = deviceKey(host, bdf);
    let d = devices.get(key);
    if (!d) {
      d = {
        key,
        host,
        bdf,
        actor: null,
        unsubscribe: null,
        revision: null,
        lastWritten: null,
        writing: Promise.resolve(),
        recovery: null,
        requests: [],
        chain: Promise.resolve(),
        pinned: 0,
        owned: false,
        releaseQueued: false,
        stateName: "unknown",
        stateSinceMs: o.now(),
        plans: new Map(),
        lastKnownGood: Promise.resolve(),
        releaseData: null,
        storedOwner: null,
        held: [],
        rest: null,
      };
      devices.set(key, d);
    }
    return d;
  };

  const serialize = <T>(d: Device, fn: () => Promise<T>): Promise<T> => {
    const next = d.chain.then(fn, fn);
    d.chain = next.catch(() => undefined);
    return next;
  };

  const log = (d: Device) => o.log.child({ host: d.host, bdf: d.bdf });
  const contextOf = (d: Device): LifecycleContext | null => d.actor?.getSnapshot().context ?? null;
  const stateNow = (d: Device): string => (d.actor ? stateOf(d.actor.getSnapshot().value) : "unknown");

  // ---------------------------------------------------------------------------------------------------
  // Persistence

  const eventOf = (d: Device, a: AnnouncedEvent): EventInput => ({
    host: d.host,
    bdf: d.bdf,
    kind: a.kind,
    data: a.data,
    id: a.id,
    ...(a.time ? { time: a.time } : {}),
    ...(a.requestId ? { requestId: a.requestId } : {}),
  });

  /** The first `n` held events are in a stored snapshot now: publish them, in order. */
  const announce = (d: Device, n: number) => {
    for (const h of d.held.splice(0, n)) h.sent(o.events.publish(eventOf(d, h.event)));
  };

  /**
   * A stored record taken over: the events its writer held for it may never have been sent (it crashed
   * between the write and the publish). Sent again under their ids: JetStream drops what was sent within
   * its duplicate window; past it, an outcome is sent only if the stream's last one of its kind for the
   * device is not already it.
   */
  const reannounce = async (d: Device, rec: ActorRecord) => {
    const list = rec.announce ?? [];
    if (list.length === 0) return;
    const age = o.now() - Date.parse(rec.savedAt);
    const inWindow = Number.isFinite(age) && age < DEDUP_TRUST_MS;
    for (const a of list) {
      if (!inWindow) {
        if (!OUTCOMES.has(a.kind) || !a.requestId) continue;
        const last = await o.events.last(d, a.kind).catch(() => undefined);
        if (last === undefined || last?.requestId === a.requestId) continue;
      }
      void o.events.publish(eventOf(d, a));
    }
  };

  /** Store the latest snapshot (CAS). Without the lease nothing is written; `strict` makes that an error. */
  const persist = (d: Device, strict = false): Promise<void> => {
    const run = d.writing.then(async () => {
      const actor = d.actor;
      if (!actor || stopping || !o.leases.get(d.key)) {
        if (strict)
          throw new CxlrcError("in-progress", `${d.bdf}: not stored, the device lease is not held here`);
        return;
      }
      // Every held event was emitted by a transition this snapshot already contains.
      const heldNow = d.held.length;
      const snapshot = storedForm(actor.getPersistedSnapshot());
      // Serialized once: the comparison with the last write and the record reuse the same strings.
      const snapshotJson = JSON.stringify(snapshot);
      const requestsJson = JSON.stringify(d.requests);
      const json = `{"snapshot":${snapshotJson},"requests":${requestsJson}}`;
      if (json === d.lastWritten) {
        // Nothing new to store: a write-ahead still waits for the events sent since (no record names them).
        if (strict) await o.events.flush(d);
        announce(d, heldNow);
        return;
      }
      // A stored snapshot never runs ahead of the events that led to it (a crash after the write would lose
      // them: the next owner continues from the snapshot and never emits them again). Those not acknowledged
      // yet are stored with it, in order, before the held ones: whoever takes the record over sends them again
      // (same ids), so nothing waits here for their acknowledgements.
      const inflight = o.events.unsent(d);
      const state = stateOf((snapshot as { value?: unknown }).value);
      const announced = [...inflight, ...d.held.slice(0, heldNow).map((h) => h.event)];
      const record: ActorRecord = {
        v: 1,
        host: d.host,
        bdf: d.bdf,
        owner: o.id,
        savedAt: new Date(o.now()).toISOString(),
        state,
        active: !REST_STATES.has(state),
        snapshot,
        requests: d.requests,
        ...(announced.length > 0 ? { announce: announced } : {}),
      };
      const { snapshot: _s, requests: _r, announce: _a, ...meta } = record;
      const recordJson = `${JSON.stringify(meta).slice(0, -1)},"snapshot":${snapshotJson},"requests":${requestsJson}${
        announced.length > 0 ? `,"announce":${JSON.stringify(announced)}` : ""
      }}`;
      for (let attempt = 1; ; attempt++) {
        try {
          d.revision = await o.store.saveActor(d.key, record, d.revision, recordJson);
          d.lastWritten = json;
          d.storedOwner = o.id;
          announce(d, heldNow);
          return;
        } catch (err) {
          // No answer is not a refusal: the write may have landed (ack lost) or the store is electing a
          // leader. Read back; only another writer's revision means the device is someone else's now.
          const cur = await o.store.loadActor(d.key).catch(() => undefined);
          const landed =
            cur?.value.owner === o.id &&
            JSON.stringify({ snapshot: cur.value.snapshot, requests: cur.value.requests }) === json;
          if (cur && landed) {
            d.revision = cur.revision;
            d.lastWritten = json;
            d.storedOwner = o.id;
            announce(d, heldNow);
            return;
          }
          const untouched =
            cur === undefined || (cur === null ? d.revision === null : cur.revision === d.revision);
          if (untouched && attempt < 60 && !stopping && o.leases.get(d.key)) {
            await new Promise((r) => setTimeout(r, 250));
            continue;
          }
          log(d).error({ err: describeError(err) }, "actor snapshot not stored: giving the device up");
          abandon(d, "snapshot write refused");
          throw err;
        }
      }
    });
    d.writing = run.catch(() => undefined);
    return run;
  };

  /** Lease back once the device rests and its state is stored (in the device's chain: never mid-dispatch). */
  const maybeRelease = (d: Device) => {
    if (d.releaseQueued || d.pinned > 0 || stopping || !o.leases.get(d.key)) return;
    // No actor here (a sync that failed: the store did not answer): nothing is driven, the lease goes too,
    // or it would be renewed for ever and the device would wait for nobody.
    const idle = () => d.actor === null || REST_STATES.has(stateNow(d));
    if (!idle()) return;
    d.releaseQueued = true;
    void serialize(d, async () => {
      d.releaseQueued = false;
      if (d.pinned > 0 || stopping || !o.leases.get(d.key) || !idle()) return;
      if (d.actor) await persist(d);
      d.owned = false;
      await o.leases.release(d.key);
      o.metrics.leasesHeld.set(o.leases.held().length);
      if (d.pinned === 0 && !stopping && d.held.length === 0 && idle() && !o.leases.get(d.key)) evict(d);
    }).catch(() => undefined);
  };

  /**
   * A device at rest, stored, its lease given back: its actor goes from memory (a resting device costs a few
   * bytes, not an actor). Status keeps showing it; its next request builds the actor from the stored record
   * (which that request reads anyway, the lease having been free).
   */
  const evict = (d: Device) => {
    const ctx = contextOf(d);
    if (!d.actor || !ctx) return;
    d.rest = {
      state: stateNow(d),
      scopeViolations: ctx.scopeViolations,
      quarantineReason: ctx.quarantineReason,
    };
    d.unsubscribe?.();
    d.unsubscribe = null;
    d.actor.stop();
    d.actor = null;
    d.lastWritten = null;
    access.delete(d.key);
  };

  const abandon = (d: Device, why: string) => {
    const ctx = contextOf(d);
    d.unsubscribe?.();
    d.unsubscribe = null;
    d.actor?.stop();
    d.actor = null;
    d.revision = null;
    d.lastWritten = null;
    d.owned = false;
    // Never stored, never said: whoever continues the device decides them again. What it took is read from
    // the store next time (a request taken here but not stored was not taken).
    d.held = [];
    d.requests = [];
    if (ctx?.request) o.admission.release(ctx.request.requestId);
    // Without releasing, this process would keep renewing a lease for a device nobody drives: the stored
    // actor (the truth) is continued by the next recovery pass, here or on a peer.
    if (!stopping) void o.leases.release(d.key).catch(() => undefined);
    log(d).warn({ why }, "device actor stopped here");
    updateGauge();
  };

  // ---------------------------------------------------------------------------------------------------
  // Events, metrics, outcomes

  const updateGauge = () => {
    o.metrics.devices.reset();
    const counts = new Map<string, number>();
    for (const d of devices.values())
      if (d.actor || d.rest) counts.set(d.stateName, (counts.get(d.stateName) ?? 0) + 1);
    for (const [state, n] of counts) o.metrics.devices.set({ state }, n);
  };

  /**
   * A verify passed: the image it compared against is on the device, read back field by field. It becomes the
   * last known good image of every function it covers (its own key, never overwritten by a plain save).
   * The write joins the device's next step (write-ahead barrier) and its outcome.
   */
  const markVerified = (d: Device, requestId: string | null, scope: "io" | "full", round: number) => {
    const ref = contextOf(d)?.image;
    if (!ref) return;
    const at = new Date(o.now()).toISOString();
    const job = async () => {
      const rec = await o.store.getImageRevision(ref.key, ref.revision);
      if (!rec) throw new CxlrcError("internal", `image ${ref.key}@${ref.revision} is not in the store`);
      const verified: VerifiedImageRecord["verified"] = {
        at,
        requestId,
        coordinator: o.id,
        imageKey: ref.key,
        imageRevision: ref.revision,
        scope,
        round,
      };
      for (const [bdf, image] of Object.entries(rec.images)) {
        if (bdf === rec.bdf) continue;
        await o.store.putVerifiedImage({ ...rec, bdf, images: { [bdf]: image }, verified });
      }
      await o.store.putVerifiedImage({ ...rec, verified });
    };
    d.lastKnownGood = d.lastKnownGood
      .then(job)
      .catch((err) =>
        log(d).error(
          { err: describeError(err), image: ref },
          "last known good image not stored (the previous one stays)",
        ),
      );
  };

  /**
   * Envelope ids (JetStream msgIDs) that are the same for whoever emits the event: one outcome per request on
   * the stream. Everything else is said as it happens: a request taken again (its first taker died before
   * storing it, so nothing of that attempt touched the device), or a restore and verify run again after a
   * takeover, shows up again, and the stream tells who did what when.
   */
  const eventId = (type: string, requestId: string | null): string | null =>
    requestId && OUTCOMES.has(type) ? o.store.outcomeId(requestId) : null;

  const onEmitted = (d: Device, e: LifecycleEmitted) => {
    const { type, host: _h, bdf: _b, requestId, ...rest } = e;
    const data =
      e.type === "released" && d.releaseData
        ? { ...rest, ...d.releaseData }
        : (rest as Record<string, unknown>);
    if (e.type === "verify.passed") markVerified(d, requestId, e.scope, e.round);
    // Published in emission order; an outcome is recorded once its event (and every earlier one) is on the
    // stream, so whoever waits for it can read the whole history back.
    const id = eventId(type, requestId);
    const input: EventInput = {
      host: d.host,
      bdf: d.bdf,
      kind: type,
      data,
      ...(requestId ? { requestId } : {}),
      ...(id ? { id } : {}),
      // A coordinator that was stopped (or cut off) past its lease must not speak for the device: its events
      // wait until the lease is confirmed, and are dropped when it was lost meanwhile.
      ...(o.leases.fresh(d.key) ? {} : { gate: () => o.leases.confirm(d.key) }),
    };
    let published: Promise<unknown>;
    // A rest state is said once it is stored too: a coordinator that lost the device without knowing it yet
    // (its next write fails against the new owner's claim) never announces the device at rest under it.
    const restEntered = e.type === "state.entered" && REST_STATES.has(e.state);
    if ((OUTCOMES.has(type) && requestId) || restEntered || d.held.length > 0) {
      // An outcome (and what follows it) waits for the snapshot that records it (persist, announce).
      // Kept as emitted (when, and by whom), whoever ends up publishing it.
      const event: AnnouncedEvent = {
        id: input.id ?? nuid.next(),
        kind: type,
        data: { coordinator: o.id, ...data },
        time: new Date().toISOString(),
        ...(requestId ? { requestId } : {}),
      };
      published = new Promise((sent) => d.held.push({ event, sent }));
    } else {
      published = o.events.publish(input);
    }
    const nowMs = o.now();
    if (e.type === "state.entered") {
      o.metrics.stateDuration.observe({ state: d.stateName }, Math.max(0, nowMs - d.stateSinceMs) / 1000);
      d.stateName = e.state;
      d.stateSinceMs = nowMs;
      updateGauge();
      return;
    }
    if (e.type === "plan" && requestId) {
      d.plans.set(requestId, { method: e.plan.method, scope: e.plan.scope, atMs: nowMs });
      return;
    }
    if (!OUTCOMES.has(e.type) || !requestId) return;
    // Slots granted in the fleet state go back in releaseDevice, which then frees the local admission; a
    // request refused before its grant frees it here.
    if (!o.fleet.current().inflight[requestId]) o.admission.release(requestId);
    const plan = d.plans.get(requestId);
    d.plans.delete(requestId);
    if (e.type === "verified" || e.type === "failed" || e.type === "quarantined") {
      const method = plan?.method ?? "unknown";
      o.metrics.resets.inc({ method, scope: plan?.scope ?? "unknown", outcome: e.type });
      if (plan) o.metrics.resetDuration.observe({ method, outcome: e.type }, (nowMs - plan.atMs) / 1000);
    }
    const ctx = contextOf(d);
    const outcome = {
      requestId,
      host: d.host,
      bdf: d.bdf,
      outcome: e.type as RequestOutcomeKind,
      ...(e.type === "refused" ? { refusal: e.refusal, message: e.refusal.message } : {}),
      ...(e.type === "planned" ? { plan: e.plan } : {}),
      ...(ctx?.plan && ctx.plan.requestId === requestId && e.type !== "planned" ? { plan: ctx.plan } : {}),
      ...(e.type === "verified" ? { repaired: e.repaired } : {}),
      ...(e.type === "failed" ? { message: e.error?.message ?? "failed" } : {}),
      ...(e.type === "quarantined" ? { message: e.reason } : {}),
      atMs: nowMs,
    };
    const lastKnownGood = d.lastKnownGood;
    void Promise.all([published, lastKnownGood]).then(() => o.outcomes.record(outcome));
  };

  // ---------------------------------------------------------------------------------------------------
  // Actors

  /** The hooks an effect of this device's actor uses (write-ahead, lease, recovery flag, slots). */
  const accessOf = (d: Device): DeviceAccess => ({
    // Write-ahead: the snapshot naming the step is stored first, with every event emitted before it (acknowledged
    // or, if still in flight, in the record for whoever takes it over).
    persist: async () => {
      await persist(d, true);
      await d.lastKnownGood;
    },
    takeRecovery: (phase) => {
      if (d.recovery !== phase) return false;
      d.recovery = null;
      return true;
    },
    lease: () => o.leases.get(d.key) ?? null,
    confirmLease: () => o.leases.confirm(d.key),
    released: (requestId) => o.admission.release(requestId),
  });

  const start = (d: Device, snapshot: Snapshot<unknown> | null) => {
    access.set(d.key, accessOf(d));
    d.rest = null;
    const input = { host: d.host, bdf: d.bdf, policy: o.policyOverrides };
    const actor = snapshot ? createActor(machine, { snapshot, input }) : createActor(machine, { input });
    const sub = actor.subscribe({
      // Stored when it must be: at rest (the lease can go), and when events wait for the snapshot that decided
      // them (an outcome). Every other transition rides along with the next write; the steps that change the
      // device store theirs before they start (agent-actors.ts WRITE_AHEAD).
      next: (snap) => {
        if (!REST_STATES.has(stateOf(snap.value)) && d.held.length === 0) return;
        void persist(d)
          .then(() => maybeRelease(d))
          .catch(() => undefined);
      },
      error: (err) => log(d).error({ err: describeError(err) }, "device actor failed"),
    });
    const off = actor.on("*", (e) => onEmitted(d, e as LifecycleEmitted));
    d.unsubscribe = () => {
      sub.unsubscribe();
      off.unsubscribe();
    };
    d.actor = actor;
    d.stateSinceMs = o.now();
    actor.start();
    d.stateName = stateNow(d);
    updateGauge();
  };

  /**
   * Make the in-memory actor match the stored one (create it when there is none). Called with the lease
   * just taken: when the lease was held all along, the actor in memory is the truth and nothing is read.
   */
  const sync = async (d: Device): Promise<Stored<ActorRecord> | null> => {
    if (d.actor && d.owned) return null;
    await d.writing;
    const rec = await o.store.loadActor(d.key);
    d.owned = true;
    if (!rec) {
      if (!d.actor) start(d, null);
      return null;
    }
    if (d.actor && rec.revision === d.revision) return rec;
    // Written here last (an actor let go at rest): what it decided was announced right after that write.
    const ownWrite = rec.revision === d.revision && d.storedOwner === o.id && rec.value.owner === o.id;
    d.unsubscribe?.();
    d.unsubscribe = null;
    d.actor?.stop();
    d.actor = null;
    d.revision = rec.revision;
    d.storedOwner = rec.value.owner;
    d.requests = [...(rec.value.requests ?? [])];
    d.lastWritten = JSON.stringify({ snapshot: rec.value.snapshot, requests: d.requests });
    d.recovery = rec.value.active ? rec.value.state : null;
    const snapshot = withPolicy(currentSnapshot(rec.value.snapshot), o.policy);
    if (rec.value.active) {
      takeOver(d, rec.value);
      // Claimed in the store at once: a previous owner that has not noticed it lost the lease (a bus that
      // dropped lease entries, a frozen process) fails its next write-ahead before it touches the device.
      d.lastWritten = null;
    }
    start(d, snapshot as Snapshot<unknown>);
    if (rec.value.active) await persist(d, true);
    if (!ownWrite) await reannounce(d, rec.value);
    return rec;
  };

  /**
   * A device stored mid-operation is continued here (its owner died, froze or gave it up): said on the stream
   * before the actor acts (SRE tools and the chaos checks see who drives the device from when), and its
   * request's host slot taken without waiting (it runs already).
   */
  const takeOver = (d: Device, rec: ActorRecord) => {
    const ctx = (rec.snapshot as { context?: LifecycleContext } | undefined)?.context;
    const request = ctx?.request ?? null;
    if (request) {
      o.admission.force({
        requestId: request.requestId,
        host: d.host,
        key: d.key,
        bdf: d.bdf,
        switchId: ctx?.facts?.bridge?.switchId ?? null,
      });
    }
    void o.events.publish({
      host: d.host,
      bdf: d.bdf,
      kind: EVENT.recovered,
      ...(request ? { requestId: request.requestId } : {}),
      data: { state: rec.state, previousOwner: rec.owner },
    });
    log(d).info({ state: rec.state, previousOwner: rec.owner }, "device taken over");
  };

  /** Wait until the actor rests or runs a request (not binding/probing). */
  const settle = async (d: Device) => {
    const actor = d.actor!;
    await waitFor(
      actor,
      (s) => {
        const st = stateOf(s.value);
        return REST_STATES.has(st) || (s.context.request !== null && s.context.outcome === null);
      },
      { timeout: settleTimeoutMs },
    );
  };

  /** A read of the device now (a probe under a fresh operation id, never answered from the agent's cache). */
  const freshFacts = async (host: string, bdf: string) => {
    const [p, inv] = await Promise.all([
      o.link.call(
        host,
        "probe",
        `${deviceKey(host, bdf)}/facts/${nuid.next()}`,
        { bdf },
        {
          timeoutMs: o.policy.agentCallTimeoutMs,
        },
      ),
      o.inventory(host).catch(() => null),
    ]);
    return factsFromProbe(host, p, inv);
  };

  const refusalOf = (r: ResetRequest, reason: Refusal["reason"], message: string): Refusal => ({
    kind: "refusal",
    requestId: r.requestId,
    host: r.host,
    bdf: r.bdf,
    reason,
    message,
    details: {},
    gates: [],
  });

  const decisionEvent = (r: DecisionRecord): EventInput => ({
    host: r.host,
    bdf: r.bdf,
    kind: r.event.kind,
    data: r.event.data,
    id: r.event.id,
    requestId: r.requestId,
  });

  /**
   * A refusal decided here, without the device's actor (another coordinator drives the device): stored first
   * (one decision per request id, whoever takes a redelivery), then published like the machine's.
   */
  const refuseOutside = async (d: Device, r: ResetRequest, refusal: Refusal): Promise<Decision> => {
    const mine: DecisionRecord = {
      v: 1,
      requestId: r.requestId,
      host: d.host,
      bdf: d.bdf,
      event: {
        id: o.store.outcomeId(r.requestId),
        kind: EVENT.refused,
        data: { outcome: "refused", refusal, atMs: o.now() },
      },
      coordinator: o.id,
      at: new Date(o.now()).toISOString(),
    };
    const held = await o.store.recordDecision(mine);
    await o.events.publish(decisionEvent(held));
    if (held !== mine) return { kind: "duplicate", requestId: r.requestId };
    o.outcomes.record({
      requestId: r.requestId,
      host: d.host,
      bdf: d.bdf,
      outcome: "refused",
      refusal,
      message: refusal.message,
      atMs: o.now(),
    });
    return { kind: "refused", refusal };
  };

  /**
   * The device lease for a request. Held by a peer that only passes by (discovering or recovering the device,
   * storing its rest state): waited for. Held by a peer running another request: refused in-progress, as the
   * device's own actor would. The request already taken by the device (a redelivery): a duplicate.
   */
  const leaseFor = async (
    d: Device,
    request: ResetRequest,
    signal: AbortSignal | undefined,
  ): Promise<{ kind: "held" } | { kind: "decided"; decision: Decision }> => {
    const waitUntil = performance.now() + Math.min(o.store.leaseTtlMs, 15_000);
    for (let delay = 50; ; delay = Math.min(500, delay * 2)) {
      if (await o.leases.acquire(d.key)) return { kind: "held" };
      const stored = await o.store.loadActor(d.key).catch(() => null);
      if (stored?.value.requests?.includes(request.requestId)) {
        return { kind: "decided", decision: { kind: "duplicate", requestId: request.requestId } };
      }
      const holder = await o.leases.holder(d.key).catch(() => null);
      const running = runningRequest(stored?.value.snapshot);
      if (holder && running && running !== request.requestId) {
        return {
          kind: "decided",
          decision: await refuseOutside(
            d,
            request,
            refusalOf(
              request,
              "in-progress",
              `${request.bdf} is being driven by coordinator ${holder.owner} for request ${running}`,
            ),
          ),
        };
      }
      if (performance.now() + delay >= waitUntil || signal?.aborted || stopping) {
        // Not a refusal: the request is tried again (redelivered) once the lease is free.
        throw new CxlrcError(
          "in-progress",
          `${request.bdf}: the device lease is ${holder ? `held by coordinator ${holder.owner}` : "not answering"}; will retry`,
        );
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  };

  const isDuplicate = (d: Device, requestId: string) =>
    d.requests.includes(requestId) || contextOf(d)?.request?.requestId === requestId;

  // ---------------------------------------------------------------------------------------------------

  const dispatch: DeviceActors["dispatch"] = (request, opts = {}) => {
    const d = device(request.host, request.bdf);
    dispatching.add(request.requestId);
    const run = serialize(d, async (): Promise<Decision> => {
      if (stopping) throw new CxlrcError("in-progress", "coordinator is stopping");
      // Only a device held here all along knows its requests from memory; otherwise the store says (below).
      if (d.owned && o.leases.get(d.key) && isDuplicate(d, request.requestId)) {
        return { kind: "duplicate", requestId: request.requestId };
      }
      // Decided before without the actor (its acknowledgement lost): the same answer again, not a second one.
      const prior = await o.store.getDecision(request.requestId);
      if (prior) {
        void o.events.publish(decisionEvent(prior));
        return { kind: "duplicate", requestId: request.requestId };
      }
      const lease = await leaseFor(d, request, opts.signal);
      if (lease.kind !== "held") return lease.decision;
      o.metrics.leasesHeld.set(o.leases.held().length);
      d.pinned++;
      try {
        await sync(d);
        if (isDuplicate(d, request.requestId)) return { kind: "duplicate", requestId: request.requestId };
        await settle(d);
        if (stateNow(d) === "unavailable") {
          d.actor!.send({ type: "PROBE" });
          await settle(d);
        }
        const actor = d.actor!;
        if (stateNow(d) === "ready") {
          try {
            actor.send({ type: "FACTS_UPDATED", facts: await freshFacts(d.host, d.bdf) });
          } catch (err) {
            log(d).warn({ err: describeError(err) }, "facts not refreshed; planning from the last probe");
          }
          if (!request.dryRun) {
            const switchId = contextOf(d)?.facts?.bridge?.switchId ?? null;
            let waited = false;
            await o.admission.admit(
              { requestId: request.requestId, host: request.host, switchId, key: d.key, bdf: d.bdf },
              {
                onWait: (position) => {
                  waited = true;
                  void o.events.publish({
                    host: d.host,
                    bdf: d.bdf,
                    kind: "request.waiting",
                    requestId: request.requestId,
                    data: {
                      reason: "host-busy",
                      position,
                      running: o.admission.running()[request.host] ?? [],
                    },
                  });
                  opts.onWaiting?.(position);
                },
                ...(opts.signal ? { signal: opts.signal } : {}),
              },
            );
            // A stale view only makes the gating CAS try again: never a reason to lose the admitted slot.
            if (waited) await o.fleet.refresh().catch(() => undefined);
          }
        }
        let decision: Decision | null = null;
        const off = actor.on("*", (e) => {
          const ev = e as LifecycleEmitted;
          if (ev.requestId !== request.requestId || decision) return;
          if (ev.type === "plan") decision = { kind: "accepted", plan: ev.plan };
          else if (ev.type === "refused") decision = { kind: "refused", refusal: ev.refusal };
        });
        try {
          const guards = o.fleet.guards(d.key, {
            activeRequestId: null,
            quarantined: stateNow(d) === "quarantined",
          });
          actor.send({ type: "RESET_REQUESTED", request, guards });
        } finally {
          off.unsubscribe();
        }
        // Taken only when the machine decided (planned or refused): a request it did not take (the device
        // was busy probing) must not look taken to a redelivery, or it would never get an outcome. Set in the
        // same turn as the send, so the snapshot write the transition triggers stores both together.
        if (decision) {
          d.requests = [...d.requests.filter((id) => id !== request.requestId), request.requestId].slice(
            -REQUESTS_KEPT,
          );
        }
        // The request is in the stored snapshot before the caller acknowledges it: a device given up meanwhile
        // (lease lost, write refused) throws here, and the request is delivered again.
        await persist(d, true);
        if (d.actor !== actor) {
          throw new CxlrcError(
            "in-progress",
            `${request.bdf}: the device was given up before its state was stored`,
          );
        }
        if (!decision) {
          o.admission.release(request.requestId);
          throw new CxlrcError("internal", `device actor neither planned nor refused ${request.requestId}`);
        }
        return decision;
      } finally {
        d.pinned--;
        void maybeRelease(d);
      }
    });
    void run.finally(() => dispatching.delete(request.requestId)).catch(() => undefined);
    return run;
  };

  const dryRun: DeviceActors["dryRun"] = async (request) => {
    const key = deviceKey(request.host, request.bdf);
    const d = devices.get(key);
    const facts = await freshFacts(request.host, request.bdf);
    await o.fleet.refresh(key).catch(() => undefined);
    const ctx = d ? contextOf(d) : null;
    const holder = o.leases.get(key) ? null : await o.leases.holder(key).catch(() => null);
    const stored = d?.actor && d.owned ? null : await o.store.loadActor(key).catch(() => null);
    const state = stored ? stored.value.state : d?.actor ? stateNow(d) : "unknown";
    const activeRequestId =
      ctx?.request && ctx.outcome === null
        ? ctx.request.requestId
        : holder
          ? `(held by coordinator ${holder.owner})`
          : null;
    return planReset({ ...request, dryRun: true }, facts, {
      ...o.fleet.guards(key, {
        activeRequestId: activeRequestId === request.requestId ? null : activeRequestId,
        quarantined: state === "quarantined",
      }),
      nowMs: o.now(),
      policy: o.policy,
    });
  };

  /**
   * Put a quarantined device back from its last known good image: every function of the device that has one,
   * restore (full scope: PCI config, DVSEC, HDM, decoders committed in order, Command last) then verify. Never
   * throws for a device that does not verify: the report says so. Throws (device untouched) when there is no
   * verified image to restore from.
   */
  const restoreFromLastKnownGood = async (d: Device): Promise<RestoreReport> => {
    const own = await o.store.getVerifiedImage(d.host, d.bdf);
    const bundle = own?.value.images ?? {};
    if (!own || bundle[d.bdf] === undefined) {
      throw new CxlrcError(
        "bad-input",
        `no verified image of ${d.bdf} on host ${d.host}: nothing to restore from (no reset of it has ever been verified); release without restore, or restore it by hand`,
        { fields: ["restore"], host: d.host, bdf: d.bdf },
      );
    }
    const functions = contextOf(d)?.facts?.functions ?? [d.bdf];
    const targets: Array<{ bdf: string; image: unknown }> = [];
    for (const f of functions.includes(d.bdf) ? functions : [d.bdf, ...functions]) {
      const image = bundle[f] ?? (await o.store.getVerifiedImage(d.host, f))?.value.images[f];
      if (image !== undefined) targets.push({ bdf: f, image });
      else log(d).warn({ function: f }, "release restore: no verified image of this function; left as it is");
    }
    const report: RestoreReport = {
      verified: false,
      image: {
        key: own.value.verified.imageKey,
        revision: own.value.verified.imageRevision,
        requestId: own.value.requestId,
        savedAt: own.value.savedAt,
        verifiedAt: own.value.verified.at,
      },
      functions: targets.map((t) => ({ bdf: t.bdf, decoders: [], passed: false, mismatches: [] })),
    };
    const opId = `${d.key}/release/${nuid.next()}`;
    const n = targets.length;
    try {
      for (const [i, t] of targets.entries()) {
        const r = (await o.link.call(
          d.host,
          "restore",
          targetOpId(`${opId}/restore`, i, n),
          { bdf: t.bdf, scope: "full", image: t.image },
          { timeoutMs: o.policy.agentCallTimeoutMs + o.policy.verifyTimeoutMs },
        )) as RestoreResult;
        report.functions[i]!.decoders = r.decoders.map((x) => ({ index: x.index, action: x.action }));
      }
      for (const [i, t] of targets.entries()) {
        const v = (await o.link.call(
          d.host,
          "verify",
          targetOpId(`${opId}/verify`, i, n),
          { bdf: t.bdf, scope: "full", image: t.image },
          { timeoutMs: o.policy.verifyTimeoutMs },
        )) as AgentVerify;
        const fn = report.functions[i]!;
        fn.mismatches = v.mismatches.map((m) => ({
          field: `${m.register}.${m.field}`,
          expected: m.expected,
          actual: m.actual,
        }));
        fn.passed = v.passed && v.mismatches.length === 0;
      }
      report.verified = report.functions.every((f) => f.passed);
    } catch (err) {
      const body = errorToBody(err);
      report.error = { kind: body.kind, message: body.message };
      report.verified = false;
    }
    return report;
  };

  const releaseDevice: DeviceActors["releaseDevice"] = (host, bdf, opts) => {
    const d = device(host, bdf);
    return serialize(d, async () => {
      const lease = await o.leases.acquire(d.key);
      if (!lease) throw new CxlrcError("in-progress", `${bdf} on ${host} is held by another coordinator`);
      d.pinned++;
      try {
        const rec = await o.store.loadActor(d.key);
        if (!rec && !d.actor) throw new CxlrcError("bad-input", `no device ${bdf} known on host ${host}`);
        await sync(d);
        const state = stateNow(d);
        if (state !== "quarantined") {
          throw new CxlrcError("bad-input", `${bdf} on ${host} is not quarantined (it is ${state})`, {
            state,
          });
        }
        let report: RestoreReport | null = null;
        if (opts.restore) {
          log(d).info({ operator: opts.operator }, "release: restoring from the last known good image");
          report = await restoreFromLastKnownGood(d);
          if (!report.verified) {
            const failed = report.functions.filter((f) => !f.passed);
            const what = report.error
              ? `${report.error.kind}: ${report.error.message}`
              : `verify mismatches: ${failed.flatMap((f) => f.mismatches.map((m) => `${f.bdf} ${m.field}`)).join(", ")}`;
            const why = `release with restore by ${opts.operator}: the last known good image (revision ${report.image.revision}) did not verify (${what})`;
            d.actor!.send({ type: "RELEASE_FAILED", reason: why });
            await persist(d);
            await o.events.publish({
              host,
              bdf,
              kind: EVENT.releaseFailed,
              data: { operator: opts.operator, reason: opts.reason, quarantineReason: why, restore: report },
            });
            throw new CxlrcError(
              (report.error?.kind as ErrorKind | undefined) ?? "verify-mismatch",
              `${bdf} on ${host} stays quarantined: ${why}`,
              { bdf, state: "quarantined", quarantineReason: why, restore: report },
            );
          }
          d.releaseData = { restore: report };
        }
        try {
          d.actor!.send({ type: "RELEASE", operator: opts.operator, reason: opts.reason });
        } finally {
          d.releaseData = null;
        }
        await settle(d);
        await persist(d);
        return { state: stateNow(d), restore: report };
      } finally {
        d.pinned--;
        void maybeRelease(d);
      }
    });
  };

  const statusOf = (d: Device): DeviceStatus => {
    const ctx = contextOf(d);
    const leaseHeld = o.leases.get(d.key) !== undefined;
    return {
      host: d.host,
      bdf: d.bdf,
      state: d.actor ? stateNow(d) : (d.rest?.state ?? "unknown"),
      requestId: ctx?.request && ctx.outcome === null ? ctx.request.requestId : null,
      leaseHeld,
      scopeViolations: ctx?.scopeViolations ?? d.rest?.scopeViolations ?? 0,
      quarantineReason: ctx ? ctx.quarantineReason : (d.rest?.quarantineReason ?? null),
      owner: leaseHeld ? o.id : (d.storedOwner ?? o.id),
      local: true,
    };
  };

  const release: DeviceActors["release"] = async (host, bdf, operator, reason) =>
    (await releaseDevice(host, bdf, { operator, reason })).state;

  const ensure = (host: string, bdf: string) => {
    const d = device(host, bdf);
    return serialize(d, async () => {
      const lease = await o.leases.acquire(d.key);
      if (!lease) return false;
      d.pinned++;
      try {
        await sync(d);
        await settle(d);
        await persist(d);
        return true;
      } finally {
        d.pinned--;
        void maybeRelease(d);
      }
    });
  };

  return {
    dispatch,
    dryRun,
    release,
    releaseDevice,
    async discover(host, opts = {}) {
      const inv = await o.inventory(host, true);
      const bdfs = inv.devices.filter((x) => x.cxl).map((x) => x.bdf);
      const build = bdfs.filter((bdf) => !opts.skip?.(deviceKey(host, bdf)));
      await Promise.all(
        build.map((bdf) =>
          ensure(host, bdf).catch((err) =>
            o.log.warn({ host, bdf, err: describeError(err) }, "device not discovered"),
          ),
        ),
      );
      return bdfs;
    },
    async recover(key, hint) {
      // Known mid-operation from the stored record's headers: the record is read once, under the lease (sync).
      const rec = hint?.active ? null : await o.store.loadActor(key);
      if (!hint?.active && !rec?.value.active) return false;
      const [host, token] = key.split(".");
      if (!host || !token) return false;
      const bdf = bdfFromToken(token);
      const d = device(host, bdf);
      return serialize(d, async () => {
        if (d.actor && o.leases.get(key) && (rec === null || d.revision === rec.revision)) return false; // ours, running
        const lease = await o.leases.acquire(key);
        if (!lease) return false;
        d.pinned++;
        try {
          const cur = await sync(d);
          return cur?.value.active === true;
        } finally {
          d.pinned--;
          void maybeRelease(d);
        }
      });
    },
    status() {
      return [...devices.values()].filter((d) => d.actor || d.rest).map(statusOf);
    },
    local() {
      return [...devices.values()]
        .filter((d) => d.actor || d.rest)
        .map((d) => ({
          key: d.key,
          revision: d.revision,
          leaseHeld: o.leases.get(d.key) !== undefined,
          status: statusOf(d),
        }));
    },
    async stop(opts = {}) {
      if (opts.release !== false) {
        await Promise.all([...devices.values()].map((d) => d.writing));
      }
      stopping = true;
      for (const d of devices.values()) {
        d.unsubscribe?.();
        d.unsubscribe = null;
        d.actor?.stop();
        d.actor = null;
      }
    },
    leaseLost(key) {
      const d = devices.get(key);
      if (d) abandon(d, "lease lost");
    },
    async announceStored(key, rec) {
      const id = `${key}@${rec.revision}`;
      if (!rec.value.announce?.length || announcedStored.has(id)) return true;
      // Written here, and announced right after the write: nothing is missing.
      const mine = devices.get(key);
      if (mine && mine.revision === rec.revision && mine.storedOwner === o.id) return true;
      // Someone holds it now: its owner re-announces when it syncs; if it only passes by, a later pass does.
      if (await o.leases.holder(key).catch(() => null)) return false;
      if (announcedStored.size > 10_000) announcedStored.clear();
      announcedStored.add(id);
      await reannounce(device(rec.value.host, rec.value.bdf), rec.value);
      return true;
    },
    liveRequests() {
      const live = new Set(dispatching);
      for (const d of devices.values()) {
        const id = contextOf(d)?.request?.requestId;
        if (id && !REST_STATES.has(stateNow(d))) live.add(id);
      }
      return live;
    },
  };
}
