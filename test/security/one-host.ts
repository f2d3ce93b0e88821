// One coordinator (coord-1) and the agent of one simulated host (sim-a), each connected as its own principal on
// a secure bus: what the client's and the fleet page's secure tests drive.
import { type AgentHandle, startAgent } from "../../services/agent/service.ts";
import { type CoordinatorHandle, startCoordinator } from "../../services/coordinator/service.ts";
import type { SimHost } from "../../shared/sim/index.ts";
import type { SecureBus } from "./env.ts";
import { simHost } from "./roster.ts";

export interface SecureHost {
  coordinator: CoordinatorHandle;
  agent: AgentHandle;
  /** The simulated devices of sim-a (their counters say what reached them). */
  sim: SimHost;
  stop(): Promise<void>;
}

/** `hosts`: the coordinator's configured hosts (default: found on the bus). */
export async function startSecureHost(bus: SecureBus, opts: { hosts?: string[] } = {}): Promise<SecureHost> {
  const coordinator = await startCoordinator({
    nc: (await bus.connectAs("coord-1")).nc,
    id: "coord-1",
    metricsPort: null,
    leaseTtlMs: 5000,
    ...(opts.hosts ? { hosts: opts.hosts } : {}),
  });
  const sim = simHost("sim-a");
  const agent = await startAgent({
    nc: (await bus.connectAs("agent-sim-a")).nc,
    host: "sim-a",
    backend: sim,
    heartbeatMs: 60_000,
  });
  return {
    coordinator,
    agent,
    sim,
    async stop() {
      await agent.stop().catch(() => undefined);
      await coordinator.stop().catch(() => undefined);
    },
  };
}
