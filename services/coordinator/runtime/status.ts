// What the runtime shows of its devices: the per-state gauge, each device's status (a live actor, or the rest
// state of one let go), and the requests it is handing to an actor or running.
import { contextOf, stateNow } from "./device.ts";
import { REST_STATES } from "./snapshot.ts";
import type { Device, DeviceRuntime, DeviceStatus } from "./types.ts";

/** The devices gauge (read when scraped): how many devices known here are in each state. */
export function deviceCounts(rt: DeviceRuntime): Map<string, number> {
  const counts = new Map<string, number>();
  for (const d of rt.devices.values())
    if (d.actor || d.rest) counts.set(d.stateName, (counts.get(d.stateName) ?? 0) + 1);
  return counts;
}

/** A device as status shows it (this coordinator's: a live actor, or the rest state of one let go). */
function statusOf(rt: DeviceRuntime, d: Device): DeviceStatus {
  const { o } = rt;
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
}

/** Every device driven here now or let go at rest. */
export function status(rt: DeviceRuntime): DeviceStatus[] {
  return [...rt.devices.values()].filter((d) => d.actor || d.rest).map((d) => statusOf(rt, d));
}

/** Local actors with the revision of their stored record last read or written here. */
export function local(
  rt: DeviceRuntime,
): Array<{ key: string; revision: number | null; leaseHeld: boolean; status: DeviceStatus }> {
  const { o } = rt;
  return [...rt.devices.values()]
    .filter((d) => d.actor || d.rest)
    .map((d) => ({
      key: d.key,
      revision: d.revision,
      leaseHeld: o.leases.get(d.key) !== undefined,
      status: statusOf(rt, d),
    }));
}

/** Requests this coordinator is handing to an actor or running (a local actor not at rest). */
export function liveRequests(rt: DeviceRuntime): Set<string> {
  const live = new Set(rt.dispatching);
  for (const d of rt.devices.values()) {
    const id = contextOf(d)?.request?.requestId;
    if (id && !REST_STATES.has(stateNow(d))) live.add(id);
  }
  return live;
}
