// One device's record in the runtime: found or created by key, its work run one after the other (the chain),
// and what its actor says now.
import type { LifecycleContext } from "../../../machines/lifecycle-types.ts";
import { deviceKey } from "../../../shared/bus/subjects.ts";
import { stateOf } from "./snapshot.ts";
import type { Device, DeviceRuntime } from "./types.ts";

/** The device's record, created (no actor yet) on first use. */
export function device(rt: DeviceRuntime, host: string, bdf: string): Device {
  const { o, devices } = rt;
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
      resumeAfter: null,
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
      holdTimer: null,
      outcomeSent: null,
      pendingRelease: null,
      rest: null,
      kept: null,
    };
    devices.set(key, d);
  }
  return d;
}

/** Run `fn` in the device's chain: after everything queued for the device before it. */
export function serialize<T>(d: Device, fn: () => Promise<T>): Promise<T> {
  const next = d.chain.then(fn, fn);
  d.chain = next.catch(() => undefined);
  return next;
}

/** The live actor's context (null: no actor here). */
export function contextOf(d: Device): LifecycleContext | null {
  return d.actor?.getSnapshot().context ?? null;
}

/** The live actor's state ("unknown": no actor here). */
export function stateNow(d: Device): string {
  return d.actor ? stateOf(d.actor.getSnapshot().value) : "unknown";
}
