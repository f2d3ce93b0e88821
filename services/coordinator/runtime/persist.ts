// Storing a device's snapshot: a CAS write of the latest snapshot while the lease is held, read back when the
// store does not answer, and the events held for it announced once it is stored (runtime/outbox.ts). A write
// another coordinator's revision refused gives the device up (runtime/let-go.ts abandon).
import { describeError } from "../../../shared/errors.ts";
import { sleepBackoff } from "../../../shared/retry.ts";
import { summaryOf } from "../actor-index.ts";
import { notHeld } from "../leases.ts";
import type { ActorRecord } from "../store.ts";
import { persistedSnapshot, REST_STATES, stateOf, storedJson } from "./snapshot.ts";
import type { Device, DeviceRuntime } from "./types.ts";

/**
 * Store the latest snapshot (CAS). Without the lease nothing is written; `strict` makes that an error, and
 * makes a call with nothing new to store wait for the events sent since (a write-ahead that must not run ahead
 * of them); with `namedEnough` only for those no stored record names.
 */
export function persist(rt: DeviceRuntime, d: Device, strict = false, namedEnough = false): Promise<void> {
  const { o } = rt;
  const run = d.writing.then(async () => {
    const actor = d.actor;
    const lease = o.leases.get(d.key);
    if (!actor || rt.stopping || !lease) {
      if (strict) throw notHeld(`${d.bdf}: not stored, the device lease is not held here`);
      return;
    }
    // Every held event was emitted by a transition this snapshot already contains.
    const heldNow = d.held.length;
    // The actor's snapshot is a new object after every transition, and the requests a new array when they
    // change: the same two as the last write made here are the same record, without serializing it again.
    const current = actor.getSnapshot();
    const last = d.lastWritten;
    const from = last?.from;
    const unchanged = from !== undefined && from.snapshot === current && from.requests === d.requests;
    // Serialized once: the comparison with the last write and the record reuse the same strings.
    const snapshotJson = unchanged ? last!.snapshotJson : storedJson(persistedSnapshot(current, rt.stepOf));
    const requestsJson = unchanged ? last!.requestsJson : JSON.stringify(d.requests);
    if (last && snapshotJson === last.snapshotJson && requestsJson === last.requestsJson) {
      // Nothing new to store: a write-ahead still waits for the events sent since. With `namedEnough`, not for
      // those that went out with the last write: its record names them, and whoever takes it over sends them
      // again (held ones said now are named by no record: waited for).
      const named =
        namedEnough && heldNow === 0 && o.events.unsent(d).every((e) => d.lastWritten!.named.has(e.id));
      if (strict && !named) await o.events.flush(d);
      rt.announce(d, heldNow);
      return;
    }
    // A stored snapshot never runs ahead of the events that led to it (a crash after the write would lose
    // them: the next owner continues from the snapshot and never emits them again). Those not acknowledged
    // yet are stored with it, in order, before the held ones: whoever takes the record over sends them again
    // (same ids), so nothing waits here for their acknowledgements.
    const inflight = o.events.unsent(d);
    const state = stateOf(current.value);
    const announced = [...inflight, ...d.held.slice(0, heldNow).map((h) => h.event)];
    const meta: Omit<ActorRecord, "snapshot" | "requests" | "announce"> = {
      v: 1,
      host: d.host,
      bdf: d.bdf,
      owner: o.id,
      savedAt: new Date(o.now()).toISOString(),
      state,
      active: !REST_STATES.has(state),
    };
    const recordJson = `${JSON.stringify(meta).slice(0, -1)},"snapshot":${snapshotJson},"requests":${requestsJson}${
      announced.length > 0 ? `,"announce":${JSON.stringify(announced)}` : ""
    }}`;
    // What the record's headers summarize (actor-index.ts), from the live snapshot: the stored one is only text.
    const summary = summaryOf(meta, current.context, announced.length);
    /** Stored at `revision` (written now, or found landed): the events held for it go out. */
    const stored = (revision: number) => {
      d.revision = revision;
      d.lastWritten = {
        snapshotJson,
        requestsJson,
        named: new Set(announced.map((e) => e.id)),
        from: { snapshot: current, requests: d.requests },
      };
      d.storedOwner = o.id;
      rt.announce(d, heldNow);
    };
    // Tried again only while the device is still driven by the actor and the lease this write began under: a
    // device given up meanwhile (its lease lost) and taken again here (a recovery pass, a new lease) is another
    // run's, whose own writes go on from its own read of the record; this one must neither land over it nor
    // give it up.
    const superseded = (err: unknown) =>
      d.actor !== actor || o.leases.get(d.key) !== lease
        ? notHeld(`${d.bdf}: not stored, the device was given up while its write was tried`, {
            cause: describeError(err),
          })
        : null;
    for (let attempt = 1; ; attempt++) {
      try {
        stored(await o.store.saveActorJson(d.key, summary, d.revision, recordJson));
        return;
      } catch (err) {
        // No answer is not a refusal: the write may have landed (ack lost) or the store is electing a
        // leader. Read back; only another writer's revision means the device is someone else's now.
        const cur = await o.store.loadActor(d.key).catch(() => undefined);
        const gone = superseded(err);
        if (gone) throw gone;
        const landed =
          cur?.value.owner === o.id &&
          JSON.stringify(cur.value.snapshot) === snapshotJson &&
          JSON.stringify(cur.value.requests) === requestsJson;
        if (cur && landed) {
          stored(cur.revision);
          return;
        }
        const untouched =
          cur === undefined || (cur === null ? d.revision === null : cur.revision === d.revision);
        if (untouched && attempt < 60 && !rt.stopping) {
          // Full jitter under 500 ms: about the 250 ms a round the 60 attempts were sized for.
          await sleepBackoff(attempt - 1, { baseMs: 50, maxMs: 500 });
          const goneSince = superseded(err);
          if (goneSince) throw goneSince;
          continue;
        }
        rt.log(d).error({ err: describeError(err) }, "actor snapshot not stored: giving the device up");
        rt.abandon(d, "snapshot write refused");
        throw err;
      }
    }
  });
  d.writing = run.catch(() => undefined);
  return run;
}
