// A device's actor: built from the machine (created once) with the device's hooks for its effects, made to
// match the stored record under a lease just taken (sync), taken over when stored mid-operation, and waited
// for until it rests or runs a request (settle). Stored when it must be: at rest and when events wait for it.
import { nuid } from "@nats-io/transport-node";
import { createActor, type Snapshot, waitFor } from "xstate";
import { REST, UNSTORED } from "../../../machines/lifecycle.ts";
import type {
  LifecycleContext,
  LifecycleEmitted,
  LifecycleInput,
} from "../../../machines/lifecycle-types.ts";
import { RESUME_STEP } from "../../../machines/steps.ts";
import { describeError } from "../../../shared/errors.ts";
import { waitAtMost } from "../../../shared/wait.ts";
import type { DeviceAccess } from "../effects/agent-actors.ts";
import { EVENT } from "../events.ts";
import type { ActorRecord, Stored } from "../store.ts";
import { stateNow } from "./device.ts";
import { keptHere, unkeep } from "./let-go.ts";
import { unannounced } from "./outbox.ts";
import { releaseAfterOutcome } from "./slots.ts";
import { currentSnapshot, REST_STATES, stateOf } from "./snapshot.ts";
import type { Device, DeviceRuntime } from "./types.ts";

/** The longest a device taken over waits for the rest of its recovery pass's claims. */
const RESUME_WAIT_MS = 5000;

/** The hooks an effect of this device's actor uses (write-ahead, lease, recovery flag, slots). */
function accessOf(rt: DeviceRuntime, d: Device): DeviceAccess {
  const { o } = rt;
  const access: DeviceAccess = {
    // Write-ahead: the snapshot naming the step is stored first, with every event emitted before it (acknowledged
    // or, if still in flight, in the record for whoever takes it over).
    persist: async (opts) => {
      await rt.persist(d, true, opts?.namedEnough === true);
      await d.lastKnownGood;
    },
    resumed: async () => {
      const after = d.resumeAfter;
      if (!after) return;
      // Bounded: a pass that cannot finish (a store that does not answer) never holds its devices for good.
      await waitAtMost(after, RESUME_WAIT_MS);
      if (d.resumeAfter === after) d.resumeAfter = null;
    },
    takeRecovery: (phase) => {
      if (d.recovery !== phase) return false;
      d.recovery = null;
      return true;
    },
    recovering: (phase) => d.recovery === phase,
    lease: () => o.leases.get(d.key) ?? null,
    confirmLease: () => o.leases.confirm(d.key),
    afterOutcome: (release) => releaseAfterOutcome(rt, d, release),
    letGo: (why) => {
      // Only the actor this access was made for: a device given up and taken again since has another.
      if (rt.access.get(d.key) === access && d.actor) rt.abandon(d, why);
    },
  };
  return access;
}

/** Build the device's actor (from a stored snapshot, or new), wire its events and writes, and start it. */
function start(rt: DeviceRuntime, d: Device, snapshot: Snapshot<unknown> | null): void {
  const { o } = rt;
  rt.access.set(d.key, accessOf(rt, d));
  d.rest = null;
  const input: LifecycleInput = { host: d.host, bdf: d.bdf };
  const actor = snapshot ? createActor(rt.machine, { snapshot, input }) : createActor(rt.machine, { input });
  const sub = actor.subscribe({
    // Stored when it must be: at rest (the lease can go), and when an outcome waits for the snapshot that
    // decided it (with the rest state that follows it at once, when the request held slots). Every other
    // transition (and its events) rides along with the next write, or one made for its events (outbox.ts
    // HOLD_MS); the request's first step runs beside the write that stores it, and the first step that
    // changes the device stores its snapshot before it starts (effects/agent-actors.ts StepRules).
    next: (snap) => {
      // An unstored state (releasing) ends at once in a rest state, whose write stores the outcome with it.
      if (snap.hasTag(UNSTORED) || (!snap.hasTag(REST) && !d.held.some((h) => h.urgent))) return;
      void rt
        .persist(d)
        .then(() => rt.maybeRelease(d))
        .catch(() => undefined);
    },
    error: (err) => rt.log(d).error({ err: describeError(err) }, "device actor failed"),
  });
  const off = actor.on("*", (e) => rt.onEmitted(d, e as LifecycleEmitted));
  d.unsubscribe = () => {
    sub.unsubscribe();
    off.unsubscribe();
  };
  d.actor = actor;
  d.stateSinceMs = o.now();
  actor.start();
  // Restored in a step's state: the step runs again (same input, same operation id), as it did when it was stored.
  if (snapshot) actor.send(RESUME_STEP);
  d.stateName = stateNow(d);
}

/**
 * Make the in-memory actor match the stored one (create it when there is none). Called with the lease
 * just taken: when the lease was held all along, the actor in memory is the truth and nothing is read.
 */
export async function sync(
  rt: DeviceRuntime,
  d: Device,
  opts: { resumeAfter?: Promise<void> | null } = {},
): Promise<Stored<ActorRecord> | null> {
  const { o } = rt;
  if (d.actor && d.owned) return null;
  // Kept at rest under the partition epoch still held: nobody else can have written it since.
  const kept = keptHere(rt, d);
  unkeep(rt, d);
  if (kept) {
    d.owned = true;
    return null;
  }
  await d.writing;
  const rec = await o.store.loadActor(d.key);
  d.owned = true;
  if (!rec) {
    if (!d.actor) start(rt, d, null);
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
  // Read, not written here: the events its record names are not counted as said (held again below if unsaid).
  d.lastWritten = {
    snapshotJson: JSON.stringify(rec.value.snapshot),
    requestsJson: JSON.stringify(d.requests),
    named: new Set(),
  };
  d.recovery = rec.value.active ? rec.value.state : null;
  const snapshot = currentSnapshot(rec.value.snapshot);
  if (rec.value.active) {
    // What the previous owner stored but may not have said goes first, then the takeover, then what this
    // actor does: all held for the claim write, so readers of the stream see them in that order.
    for (const event of await unannounced(rt, d, rec.value)) d.held.push({ event, sent: () => undefined });
    // A recovery pass claims every device it takes before any of them runs a step (claims are cheap, steps
    // are not: a pass of hundreds would otherwise claim its last devices behind the work of its first). Only
    // the pass's own claims wait: a dispatch that takes a device over may wait for that device to settle,
    // and the pass may be queued behind that dispatch in the device's chain.
    d.resumeAfter = opts.resumeAfter ?? null;
    takeOver(rt, d, rec.value);
    // Claimed in the store at once: a previous owner that has not noticed it lost the lease (a bus that
    // dropped lease entries, a frozen process) fails its next write-ahead before it touches the device.
    d.lastWritten = null;
  }
  start(rt, d, snapshot as Snapshot<unknown>);
  if (rec.value.active) {
    const claiming = d.actor;
    await rt.persist(d, true).catch((err: unknown) => {
      // Not claimed (the lease went meanwhile): the actor started for the takeover runs no step.
      if (d.actor === claiming) rt.abandon(d, "takeover not stored");
      throw err;
    });
  } else if (!ownWrite) await rt.reannounce(d, rec.value);
  return rec;
}

/**
 * A device stored mid-operation is continued here (its owner died, froze or gave it up): said on the stream
 * once the claim write lands, before anything the actor does (SRE tools and the chaos checks see who drives
 * the device from when). Held like an outcome: a coordinator whose claim loses to another's says nothing,
 * so the stream never shows two drivers. Its request's host slot is taken without waiting (it runs already).
 */
function takeOver(rt: DeviceRuntime, d: Device, rec: ActorRecord): void {
  const { o } = rt;
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
  // Every event the actor emits from here on queues behind this one (emitted.ts: held while any is held).
  d.held.push({
    event: {
      id: nuid.next(),
      kind: EVENT.recovered,
      data: { coordinator: o.id, state: rec.state, previousOwner: rec.owner },
      time: new Date(o.now()).toISOString(),
      ...(request ? { requestId: request.requestId } : {}),
    },
    sent: () => undefined,
  });
  rt.log(d).info({ state: rec.state, previousOwner: rec.owner }, "device taken over");
}

/** Wait until the actor rests or runs a request (not binding/probing). */
export async function settle(rt: DeviceRuntime, d: Device): Promise<void> {
  const actor = d.actor!;
  await waitFor(
    actor,
    (s) => {
      const st = stateOf(s.value);
      return REST_STATES.has(st) || (s.context.request !== null && s.context.outcome === null);
    },
    { timeout: rt.settleTimeoutMs },
  );
}
