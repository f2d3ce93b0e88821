// The durable keyed-actor host: one XState actor per device (key host+bdf), running machines/lifecycle.ts
// with the effects of effects/agent-actors.ts. The actor is the source of truth for the lifecycle order; the
// runtime keeps it durable and single-owner:
// - a device is driven only under its lease (leases.ts), taken before a request reaches the actor and given
//   back once the actor is at rest (ready, quarantined, unavailable) with that state stored (let-go.ts);
// - every snapshot is stored (CAS) while the lease is held, and every step waits for its own snapshot first
//   (write-ahead), so whoever takes the device over continues from what was really done (persist.ts);
// - a coordinator that holds an actor in memory re-reads it from KV when another coordinator wrote it since
//   (actor.ts sync);
// - the machine's emitted events become JetStream events, metrics and request outcomes (emitted.ts,
//   outbox.ts).
// This file builds the machine once and wires the parts into the DeviceRuntime the handlers drive.
import {
  createLifecycleMachine,
  type LifecycleMachine,
  stepCallOf,
  stepCalls,
} from "../../../machines/lifecycle.ts";
import { stepActions } from "../../../machines/steps.ts";
import { createAgentActors, type DeviceAccess } from "../effects/agent-actors.ts";
import { createStepGate, MAX_RUNNING_STEPS } from "../effects/step-budget.ts";
import { settle, sync } from "./actor.ts";
import { device } from "./device.ts";
import { onEmitted } from "./emitted.ts";
import { abandon, maybeRelease } from "./let-go.ts";
import { announce, holdFor, reannounce } from "./outbox.ts";
import { persist } from "./persist.ts";
import { deviceCounts } from "./status.ts";
import type { DeviceActorsOptions, DeviceRuntime } from "./types.ts";

/** The runtime of one coordinator: no device yet; each is created on its first use. */
export function createDeviceRuntime(o: DeviceActorsOptions): DeviceRuntime {
  /** The device hooks the effects look up by key (the actors themselves are built once, below). */
  const access = new Map<string, DeviceAccess>();
  // One gate for every device's steps: at most this many run at once; its queue tells the outbox it is loaded.
  const gate = createStepGate(o.maxRunningSteps ?? MAX_RUNNING_STEPS);
  const machine = createLifecycleMachine({ now: o.now }, o.policy).provide({
    actions: stepActions(
      createAgentActors(
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
          gate,
          ...(o.agentFeatures ? { agentFeatures: o.agentFeatures } : {}),
          ...(o.hook ? { hook: o.hook } : {}),
        },
        (key) => access.get(key),
      ),
    ),
  }) as LifecycleMachine;
  const calls = stepCalls(o.policy);
  const rt: DeviceRuntime = {
    o,
    machine,
    stepOf: (state, context) => stepCallOf(calls, state, context),
    devices: new Map(),
    dispatching: new Set(),
    announcedStored: new Set(),
    access,
    settleTimeoutMs: o.settleTimeoutMs ?? 30_000,
    stopping: false,
    takingOver: null,
    kept: new Map(),
    device: (host, bdf) => device(rt, host, bdf),
    log: (d) => o.log.child({ host: d.host, bdf: d.bdf }),
    persist: (d, strict, namedEnough) => persist(rt, d, strict, namedEnough),
    announce: (d, n) => announce(rt, d, n),
    holdFor: (d) => holdFor(rt, d),
    queued: () => gate.load().waiting > 0,
    reannounce: (d, rec) => reannounce(rt, d, rec),
    onEmitted: (d, e) => onEmitted(rt, d, e),
    maybeRelease: (d) => maybeRelease(rt, d),
    abandon: (d, why) => abandon(rt, d, why),
    sync: (d, opts) => sync(rt, d, opts),
    settle: (d) => settle(rt, d),
  };
  o.metrics.countDevicesWith(() => deviceCounts(rt));
  return rt;
}

/** Stop every actor; wait for their writes first unless `release: false` (a crash: leases expire). */
export async function stop(rt: DeviceRuntime, opts: { release?: boolean } = {}): Promise<void> {
  if (opts.release !== false) {
    await Promise.all([...rt.devices.values()].map((d) => d.writing));
  }
  rt.stopping = true;
  for (const d of rt.devices.values()) {
    d.unsubscribe?.();
    d.unsubscribe = null;
    d.actor?.stop();
    d.actor = null;
  }
}

/** Drop a device after its lease was lost (leases.ts onLost). */
export function leaseLost(rt: DeviceRuntime, key: string): void {
  const d = rt.devices.get(key);
  if (d) rt.abandon(d, "lease lost");
}
