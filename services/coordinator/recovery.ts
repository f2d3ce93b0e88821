// Recovery: continue what a coordinator left half-done. On start, and every few seconds after (a peer may
// die at any time), every stored actor that is mid-operation and whose lease is free (expired, released,
// or left by an earlier process of this coordinator) is restored here and continues from its last stored
// state. A step whose completion was not recorded runs again under the same operation id (the agent answers
// a repeat with its first result) or, where that is not enough (the reset itself), re-reads the device first:
// effects/agent-actors.ts. A step run again starts its time budget afresh (effects/step-budget.ts): the time
// the device spent without an owner does not count.
// The same scan frees host/switch slots held by requests nobody drives any more.
//
// The candidates come from the fleet view (one headers-only consumer of the actors bucket): only devices whose
// stored record says mid-operation, or holds announcements, are read, with bounded parallelism. A device at
// rest costs nothing.
import { describeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { Admission } from "./admission.ts";
import type { DeviceActors } from "./device-actors.ts";
import type { FleetView } from "./fleet-view.ts";
import type { LeaseManager } from "./leases.ts";
import type { CoordinatorStore } from "./store.ts";

export interface RecoveryOptions {
  store: CoordinatorStore;
  leases: LeaseManager;
  actors: DeviceActors;
  log: Logger;
  /** Local host/switch slots, given back when their request runs here no more. */
  admission?: Admission;
  /** The stored fleet by headers; without it (or before it has synced) every stored key is read. */
  view?: FleetView;
  /** Records (key@revision) at rest already handled by an earlier pass: not read again. */
  handled?: Set<string>;
}

/** Stored actors read at once. */
const RECOVERY_WIDTH = 32;

/**
 * The keys worth reading: mid-operation or not summarized (an older writer) (`active`, taken over first), and
 * at rest holding announcements (`resting`, read after every takeover of the pass).
 */
async function candidates(o: RecoveryOptions): Promise<{ active: string[]; resting: string[] }> {
  const view = o.view;
  const synced = view
    ? await Promise.race([view.synced.then(() => true), new Promise<false>((r) => setTimeout(r, 0, false))])
    : false;
  if (!view || !synced) return { active: await o.store.listActorKeys(), resting: [] };
  const active: string[] = [];
  const resting: string[] = [];
  for (const key of view.keys()) {
    const s = view.summary(key);
    const revision = view.revision(key);
    if (s?.active) active.push(key);
    else if (o.handled?.has(`${key}@${revision}`)) continue;
    // Written and announced by this process (every reset's last write holds its outcome): nothing to read.
    else if (o.actors.announcedHere(key, revision)) continue;
    // Not summarized (an older writer): it may be mid-operation, so it is read with those.
    else if (s === null || s === undefined) active.push(key);
    else if (s.announce > 0) resting.push(key);
  }
  return { active, resting };
}

/** Run `fn` over `items`, `width` at a time. */
async function eachBounded<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

export interface RecoveryPass {
  /** The keys taken over: resolves once every device left mid-operation was looked at. */
  taken: Promise<string[]>;
  /** The whole pass, with the resting records' announcements (which never hold a takeover up). */
  done: Promise<void>;
}

/**
 * One pass: take over every abandoned device first; then publish what resting records' writers may not have
 * said, and free the slots of requests nobody drives. `only`: a pass of these devices alone (given up here
 * mid-operation: RecoveryLoop.soon), looked at as mid-operation ones are.
 */
export function recoverOnce(o: RecoveryOptions, only?: readonly string[]): RecoveryPass {
  const taken: string[] = [];
  const found = only ? Promise.resolve({ active: [...only], resting: [] }) : candidates(o);
  const visit = async (key: string) => {
    if (o.leases.get(key)) return; // ours and running
    try {
      if (o.view?.summary(key)?.active) {
        // Mid-operation by its headers: read only under the lease, if it is free.
        const holder = await o.leases.holder(key);
        if (holder && (holder.owner !== o.leases.owner || holder.instance === o.leases.instance)) return;
        if (await o.actors.recover(key, { active: true })) taken.push(key);
        // Not mid-operation after all (its actor rests here, or the record read under the lease says so):
        // read it next time rather than take the device (and its host's partition) again on every pass.
        else o.view?.suspect(key);
        return;
      }
      const rec = await o.store.loadActor(key);
      if (!rec) return;
      if (!rec.value.active) {
        // At rest, nobody driving it: what its last writer decided may never have reached the stream.
        const done = rec.value.announce?.length ? await o.actors.announceStored(key, rec) : true;
        if (done && o.handled) {
          if (o.handled.size > 100_000) o.handled.clear();
          o.handled.add(`${key}@${rec.revision}`);
        }
        return;
      }
      const holder = await o.leases.holder(key);
      // Held by a live peer: not ours. Held under our own id by an earlier process: ours to continue.
      if (holder && (holder.owner !== o.leases.owner || holder.instance === o.leases.instance)) return;
      if (await o.actors.recover(key)) taken.push(key);
    } catch (err) {
      o.log.warn({ key, err: describeError(err) }, "device not recovered (next pass retries)");
    }
  };
  const takeovers = found.then(async ({ active }) => {
    if (active.length === 0) return taken;
    // Every device of the pass is claimed before any of them runs its next step.
    const resume = o.actors.holdTakeovers();
    try {
      await eachBounded(active, RECOVERY_WIDTH, visit);
    } finally {
      resume();
    }
    return taken;
  });
  const done = takeovers.then(async () => {
    await eachBounded((await found).resting, RECOVERY_WIDTH, visit);
    reclaim(o);
  });
  return { taken: takeovers, done };
}

/** Slots of requests that no longer run here go back (the ledger is this coordinator's: admission.ts). */
function reclaim(o: RecoveryOptions): void {
  if (o.admission) {
    const live = o.actors.liveRequests();
    const local = o.admission.reconcile((id) => live.has(id));
    if (local.length > 0)
      o.log.warn({ requests: local }, "local slots of requests no longer running here freed");
  }
}

export interface RecoveryLoop {
  /**
   * Run a pass now (also used at start), or join the one running: resolves with the keys taken over once the
   * pass's takeovers are done; the rest of the pass goes on (`idle()` waits for it).
   */
  runOnce(): Promise<string[]>;
  /**
   * A device was given up here mid-operation: a pass of it alone after SOON_MS, then again at twice the wait
   * while it is neither held here nor at rest in the fleet view (its lease not free yet: the bus away, a peer
   * holding it), until the wait reaches the periodic interval, which covers it from there.
   */
  soon(key: string): void;
  /** Until no pass is running. */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

/** The first wait before a pass of a device given up here mid-operation (RecoveryLoop.soon). */
export const SOON_MS = 250;

/** A pass every `intervalMs` (default: half the lease time, so a dead peer's devices move within ~1.5 TTL). */
export function startRecovery(o: RecoveryOptions & { intervalMs: number }): RecoveryLoop {
  let running: RecoveryPass | null = null;
  /** The running pass is one of given-up devices alone (`soon`), not of the whole fleet. */
  let runningOnly = false;
  let stopped = false;
  const handled = new Set<string>();
  /** One pass at a time (a device is never taken over by two passes of this process at once). */
  const begin = (only?: readonly string[]): RecoveryPass => {
    const pass = recoverOnce({ ...o, handled }, only);
    running = pass;
    runningOnly = only !== undefined;
    pass.done
      .catch((err) => o.log.warn({ err: describeError(err) }, "recovery pass failed"))
      .finally(() => {
        if (running === pass) running = null;
      });
    return pass;
  };
  const idle = async () => {
    while (running) await running.done.catch(() => undefined);
  };
  const runOnce = async (): Promise<string[]> => {
    // A pass of given-up devices alone is not the whole fleet's: this one waits for it, then looks at all.
    while (running && runningOnly) await running.done.catch(() => undefined);
    return (running ?? begin()).taken;
  };

  /** Devices given up here mid-operation, waiting for a pass of their own. */
  const waiting = new Set<string>();
  /** A wait or pass for them is under way (its end looks at what is still waiting). */
  let soonArmed = false;
  let soonTimer: NodeJS.Timeout | null = null;
  /** Still to continue: not held here, and not at rest by the fleet view (a peer may hold it: looked at again). */
  const stillWaiting = (key: string) => !o.leases.get(key) && o.view?.summary(key)?.active !== false;
  const soonPass = async (waitMs: number) => {
    soonTimer = null;
    if (stopped) return;
    await idle();
    if (stopped) return;
    const keys = [...waiting].filter(stillWaiting);
    if (keys.length > 0) {
      o.log.info({ devices: keys }, "continuing devices given up here mid-operation");
      await begin(keys).done.catch(() => undefined);
    }
    for (const key of waiting) if (!stillWaiting(key)) waiting.delete(key);
    // None left, or the periodic pass covers them from here.
    if (waiting.size === 0 || stopped || waitMs * 2 >= o.intervalMs) {
      waiting.clear();
      soonArmed = false;
      return;
    }
    armSoon(waitMs * 2);
  };
  const armSoon = (waitMs: number) => {
    soonArmed = true;
    soonTimer = setTimeout(() => {
      soonPass(waitMs).catch((err) => {
        soonArmed = false;
        o.log.warn({ err: describeError(err) }, "recovery of given-up devices failed");
      });
    }, waitMs);
    soonTimer.unref();
  };
  const soon = (key: string) => {
    if (stopped) return;
    waiting.add(key);
    if (!soonArmed) armSoon(SOON_MS);
  };
  const timer = setInterval(() => {
    // A failed pass is logged once, by its `done` (runOnce).
    if (!stopped) runOnce().catch(() => undefined);
  }, o.intervalMs);
  timer.unref();
  return {
    runOnce,
    soon,
    idle,
    async stop() {
      stopped = true;
      clearInterval(timer);
      if (soonTimer) clearTimeout(soonTimer);
      waiting.clear();
      await idle();
    },
  };
}
