// dry run: a plan or refusal for the request from fresh facts and the fleet's guards, as the device's actor
// would decide it now. Nothing is touched, nothing stored.
import type { ResetRequest } from "../../../machines/facts.ts";
import { planReset } from "../../../machines/policy/plan.ts";
import type { Plan, Refusal } from "../../../machines/policy/types.ts";
import { deviceKey } from "../../../shared/bus/subjects.ts";
import { contextOf, stateNow } from "../runtime/device.ts";
import type { DeviceRuntime } from "../runtime/types.ts";
import { freshFacts } from "./fresh-facts.ts";

/** A plan or refusal for the request from fresh facts: nothing is touched, nothing stored. */
export async function dryRun(rt: DeviceRuntime, request: ResetRequest): Promise<Plan | Refusal> {
  const { o } = rt;
  const key = deviceKey(request.host, request.bdf);
  const d = rt.devices.get(key);
  const facts = await freshFacts(rt, request.host, request.bdf);
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
}
