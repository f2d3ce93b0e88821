// A read of the device now, for a handler that plans from it (dispatch, dry run): a probe under a fresh
// operation id, never answered from the agent's cache, with the host's inventory.
import { nuid } from "@nats-io/transport-node";
import type { DeviceFacts } from "../../../machines/facts.ts";
import { deviceKey } from "../../../shared/bus/subjects.ts";
import { factsFromProbe } from "../probe-facts.ts";
import type { DeviceRuntime } from "../runtime/types.ts";

/** A read of the device now (a probe under a fresh operation id, never answered from the agent's cache). */
export async function freshFacts(rt: DeviceRuntime, host: string, bdf: string): Promise<DeviceFacts> {
  const { o } = rt;
  const [p, inv] = await Promise.all([
    o.link.call(
      host,
      "probe",
      `${deviceKey(host, bdf)}/facts/${nuid.next()}`,
      // Brief: the plan is made from the facts, not from the decoded registers.
      { bdf, brief: true },
      {
        timeoutMs: o.policy.agentCallTimeoutMs,
      },
    ),
    o.inventory(host).catch(() => null),
  ]);
  return factsFromProbe(host, p, inv);
}
