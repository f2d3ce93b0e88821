// The runtime's outbox: events held until the snapshot that decided them is stored, then published in order
// (announce), and the events a stored record names published again by whoever takes it over or finds its
// writer gone (reannounce, announceStored), under the same ids.
import { type EventInput, pipelines } from "../events.ts";
import type { ActorRecord, AnnouncedEvent, Stored } from "../store.ts";
import type { Device, DeviceRuntime } from "./types.ts";

/** Event kinds that are a request's outcome: one per request on the stream (runtime/emitted.ts eventId). */
export const OUTCOMES: ReadonlySet<string> = new Set([
  "refused",
  "planned",
  "verified",
  "failed",
  "quarantined",
]);
/** Within this age of a stored record, the events stream's duplicate window (2 min) drops a repeat. */
const DEDUP_TRUST_MS = 90_000;

function eventOf(d: Device, a: AnnouncedEvent): EventInput {
  return {
    host: d.host,
    bdf: d.bdf,
    kind: a.kind,
    data: a.data,
    id: a.id,
    // Only events of a stored record come here: said whatever became of the lease since (events.ts stored).
    stored: true,
    ...(a.time ? { time: a.time } : {}),
    ...(a.requestId ? { requestId: a.requestId } : {}),
  };
}

/**
 * How long an event that is neither an outcome nor a rest state waits for a write that stores it anyway (the
 * next step's write-ahead, the outcome's) before one is made for it: a step that runs long is still seen live.
 */
export const HOLD_MS = 500;
/**
 * How long they wait while the coordinator is overloaded (steps queued for their turn at the step gate): a
 * write made only to show them takes a turn from the steps themselves, and the next write-ahead or outcome
 * stores them anyway. At 1,000 resets at once these writes were 2 of 8 per reset.
 */
export const HOLD_LOADED_MS = 5000;

/** The first `n` held events are in a stored snapshot now: publish them, in order. */
export function announce(rt: DeviceRuntime, d: Device, n: number): void {
  const { o } = rt;
  for (const h of d.held.splice(0, n)) h.sent(o.events.publish(eventOf(d, h.event)));
  if (d.held.length === 0 && d.holdTimer) {
    clearTimeout(d.holdTimer);
    d.holdTimer = null;
  }
}

/**
 * Held events that are not urgent: if no write has stored them within HOLD_MS (HOLD_LOADED_MS while steps
 * queue), one is made for them.
 */
export function holdFor(rt: DeviceRuntime, d: Device): void {
  if (d.holdTimer) return;
  const since = performance.now();
  const arm = (ms: number) => {
    d.holdTimer = setTimeout(() => {
      d.holdTimer = null;
      if (d.held.length === 0 || !d.actor) return;
      const waited = performance.now() - since;
      if (rt.queued() && waited < HOLD_LOADED_MS) {
        arm(Math.min(HOLD_MS, HOLD_LOADED_MS - waited));
        return;
      }
      void rt.persist(d).catch(() => undefined);
    }, ms);
    d.holdTimer.unref?.();
  };
  arm(HOLD_MS);
}

/**
 * A stored record taken over: the events its writer held for it may never have been sent (it crashed
 * between the write and the publish). Those to send again, under their ids: JetStream drops what was sent
 * within its duplicate window; past it, an outcome is sent only if the stream's last one of its kind for the
 * device is not already it.
 */
export async function unannounced(rt: DeviceRuntime, d: Device, rec: ActorRecord): Promise<AnnouncedEvent[]> {
  const { o } = rt;
  const list = rec.announce ?? [];
  if (list.length === 0) return [];
  // The record's last event is one that goes out alone once every earlier one is acknowledged (an anchor):
  // found on the stream, all of them are there. Nothing is sent again, not even to live subscribers (the
  // stream drops a repeat it holds, but core subscribers of the subject would see an outcome twice).
  const tail = list[list.length - 1]!;
  if (!pipelines(tail)) {
    const last = await o.events.last(d, tail.kind).catch(() => undefined);
    if (last?.id === tail.id) return [];
  }
  const age = o.now() - Date.parse(rec.savedAt);
  if (Number.isFinite(age) && age < DEDUP_TRUST_MS) return [...list];
  const out: AnnouncedEvent[] = [];
  for (const a of list) {
    if (!OUTCOMES.has(a.kind) || !a.requestId) continue;
    const last = await o.events.last(d, a.kind).catch(() => undefined);
    if (last === undefined || last?.requestId === a.requestId) continue;
    out.push(a);
  }
  return out;
}

/** Send a stored record's unannounced events again now (a record at rest: nothing else is said meanwhile). */
export async function reannounce(rt: DeviceRuntime, d: Device, rec: ActorRecord): Promise<void> {
  for (const a of await unannounced(rt, d, rec)) void rt.o.events.publish(eventOf(d, a));
}

/** The record of `key` at `revision` was written by this process, which announced its events right after. */
export function announcedHere(rt: DeviceRuntime, key: string, revision: number | undefined): boolean {
  const mine = rt.devices.get(key);
  return mine !== undefined && mine.revision === revision && mine.storedOwner === rt.o.id;
}

/**
 * A stored record at rest whose writer may have died between storing it and publishing what it decided
 * (its `announce`): publish that now, under the same ids. Once per record revision per process. Resolves
 * false when it was left for the device's current holder (a later pass must look again), true otherwise.
 */
export async function announceStored(
  rt: DeviceRuntime,
  key: string,
  rec: Stored<ActorRecord>,
): Promise<boolean> {
  const { o } = rt;
  const id = `${key}@${rec.revision}`;
  if (!rec.value.announce?.length || rt.announcedStored.has(id)) return true;
  if (announcedHere(rt, key, rec.revision)) return true;
  // Someone holds it now: its owner re-announces when it syncs; if it only passes by, a later pass does.
  if (await o.leases.holder(key).catch(() => null)) return false;
  if (rt.announcedStored.size > 10_000) rt.announcedStored.clear();
  rt.announcedStored.add(id);
  await reannounce(rt, rt.device(rec.value.host, rec.value.bdf), rec.value);
  return true;
}
