// Letting a device go: its lease given back once it rests with its state stored, its actor kept in memory while
// its host's partition stays held here and evicted after that (status keeps its rest state), or the device
// abandoned here when its lease or a write was lost (the stored actor, the truth, is continued by whoever takes
// it next).
import { contextOf, serialize, stateNow } from "./device.ts";
import { REST_STATES } from "./snapshot.ts";
import type { Device, DeviceRuntime } from "./types.ts";

/** Lease back once the device rests and its state is stored (in the device's chain: never mid-dispatch). */
export function maybeRelease(rt: DeviceRuntime, d: Device): void {
  const { o } = rt;
  if (d.releaseQueued || d.pinned > 0 || rt.stopping || !o.leases.get(d.key)) return;
  // No actor here (a sync that failed: the store did not answer): nothing is driven, the lease goes too,
  // or it would be renewed for ever and the device would wait for nobody.
  const idle = () => d.actor === null || REST_STATES.has(stateNow(d));
  if (!idle()) return;
  d.releaseQueued = true;
  void serialize(d, async () => {
    d.releaseQueued = false;
    if (d.pinned > 0 || rt.stopping || !o.leases.get(d.key) || !idle()) return;
    if (d.actor) await rt.persist(d);
    // Its request's slots are back (and its outcome counted) before the device rests unheld: the next
    // request, here or elsewhere, sees them.
    await d.pendingRelease?.done;
    // The last known good image is written before the device can be someone else's. Then, at rest, its images
    // are read again only by a later request or release (from the bucket, or the store's recent ones).
    await d.lastKnownGood;
    o.store.releaseImages(d.key);
    d.owned = false;
    const epoch = o.leases.epoch(d.key);
    await o.leases.release(d.key);
    if (!restsUnheld(rt, d)) return;
    // Its host still held here under the epoch it rested in: the actor stays, the next request takes it as is.
    if (d.actor && epoch !== undefined && o.leases.partitionEpoch(d.key) === epoch) keep(rt, d, epoch);
    else evict(rt, d);
  }).catch(() => undefined);
}

/** Nothing runs for the device here (no dispatch, no event waiting, not driven) and it rests: it may go. */
function restsUnheld(rt: DeviceRuntime, d: Device): boolean {
  return (
    d.pinned === 0 &&
    !rt.stopping &&
    d.held.length === 0 &&
    !rt.o.leases.get(d.key) &&
    (d.actor === null || REST_STATES.has(stateNow(d)))
  );
}

/** Kept at rest under the epoch of its host's partition, still held here: nobody else can have written it. */
export function keptHere(rt: DeviceRuntime, d: Device): boolean {
  return d.actor !== null && d.kept !== null && d.kept === rt.o.leases.partitionEpoch(d.key);
}

function keep(rt: DeviceRuntime, d: Device, epoch: number): void {
  d.kept = epoch;
  let set = rt.kept.get(d.host);
  if (!set) {
    set = new Set();
    rt.kept.set(d.host, set);
  }
  set.add(d);
}

/** No longer kept (taken by a request, evicted, abandoned). */
export function unkeep(rt: DeviceRuntime, d: Device): void {
  if (d.kept === null) return;
  d.kept = null;
  const set = rt.kept.get(d.host);
  set?.delete(d);
  if (set?.size === 0) rt.kept.delete(d.host);
}

/** The host's partition is no longer held here: its devices kept at rest are evicted (in their chains). */
export function partitionGone(rt: DeviceRuntime, host: string): void {
  const set = rt.kept.get(host);
  if (!set) return;
  rt.kept.delete(host);
  for (const d of set) {
    void serialize(d, async () => {
      if (d.kept === null) return;
      d.kept = null;
      if (restsUnheld(rt, d)) evict(rt, d);
    }).catch(() => undefined);
  }
}

/**
 * A device at rest, stored, its lease given back: its actor goes from memory (a resting device costs a few
 * bytes, not an actor). Status keeps showing it; its next request builds the actor from the stored record
 * (which that request reads anyway, the lease having been free).
 */
export function evict(rt: DeviceRuntime, d: Device): void {
  unkeep(rt, d);
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
  rt.access.delete(d.key);
}

/** Stop driving the device here (lease lost, snapshot write refused): its stored actor is the truth. */
export function abandon(rt: DeviceRuntime, d: Device, why: string): void {
  const { o } = rt;
  unkeep(rt, d);
  const ctx = contextOf(d);
  const midOperation = d.actor !== null && !REST_STATES.has(stateNow(d));
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
  if (d.holdTimer) clearTimeout(d.holdTimer);
  d.holdTimer = null;
  d.requests = [];
  d.outcomeSent = null;
  // Slots waiting for an outcome that will not be said here now: back at once.
  d.pendingRelease?.now();
  o.store.releaseImages(d.key);
  if (ctx?.request) o.admission.release(ctx.request.requestId);
  // Without releasing, this process would keep renewing a lease for a device nobody drives: the stored
  // actor (the truth) is continued by the next recovery pass, here or on a peer.
  if (!rt.stopping) void o.leases.release(d.key).catch(() => undefined);
  rt.log(d).warn({ why }, "device actor stopped here");
  // Mid-operation: its stored record is continued as soon as its lease can be taken again (here or by a peer),
  // not half a lease time later at the next periodic pass.
  if (midOperation && !rt.stopping) o.onGivenUp?.(d.key);
}
