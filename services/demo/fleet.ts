// The demo's hosts, each with its own agent on its own NATS connection (as if each ran on its machine):
// - sim: the bundled fleet (shared/sim/fleets/default.json) simulated in this process on the real clock;
// - qemu: one host whose devices are QEMU's CXL model (a q35 machine with a CXL switch and two Type-3
//   memory devices), driven over qtest with no guest.
import type { NatsConnection } from "@nats-io/transport-node";
import { connectBus } from "../../shared/bus/client.ts";
import { type HardwareBackend, realClock } from "../../shared/hw/backend.ts";
import type { Logger } from "../../shared/log.ts";
import {
  createSimHost,
  defaultFleet,
  type FaultApi,
  type Fleet,
  type SimTimings,
} from "../../shared/sim/index.ts";
import { type AgentHandle, startAgent } from "../agent/service.ts";
import { qemuScenarios, type Scenario, SIM_SCENARIOS } from "./scenarios.ts";

/**
 * Device timings of the demo: slow enough to watch, inside every limit of the default policy. A device
 * answers 400 ms after an FLR or SBR (PCIe allows 1 s; the policy waits up to deviceReadyTimeoutMs), a CXL
 * Reset completes within the device's declared timeout (the simulator clamps it), a cache write-back takes
 * 150 ms (policy: 1 s), a decoder commits in 3 ms (policy: 20 ms).
 */
export const DEMO_TIMINGS: Partial<SimTimings> = {
  commitDelayMs: 3,
  notReadyMs: 400,
  cxlResetDurationMs: 600,
  cxlResetNoTouchMs: 100,
  cacheFlushDelayMs: 150,
};

export interface DemoHost {
  name: string;
  backend: HardwareBackend;
  /** Fault injection (simulated hosts only). */
  faults: FaultApi | null;
  agent: AgentHandle;
  nc: NatsConnection;
}

/** The hosts of one demo and what to show on them. */
export interface DemoWorld {
  /** One line saying what runs, for the header. */
  description: string;
  hosts: DemoHost[];
  scenarios: readonly Scenario[];
  /** Processes the world started besides the agents (QEMU), by name: all gone after the demo. */
  processes: Record<string, number>;
}

export type DemoBackend = "sim" | "qemu";

async function startHost(
  url: string,
  log: Logger,
  name: string,
  backend: HardwareBackend,
  faults: FaultApi | null,
): Promise<DemoHost> {
  const hostLog = log.child({ host: name });
  const nc = await connectBus({
    servers: url,
    name: `cxlrc-agent ${name}`,
    log: hostLog,
    waitForServer: false,
  });
  try {
    const agent = await startAgent({ nc, host: name, backend, log: hostLog });
    return { name, backend, faults, agent, nc };
  } catch (e) {
    await nc.close().catch(() => undefined);
    throw e;
  }
}

export async function startDemoWorld(opts: {
  backend: DemoBackend;
  url: string;
  log: Logger;
  fleet?: Fleet;
  timings?: Partial<SimTimings>;
}): Promise<DemoWorld> {
  const hosts: DemoHost[] = [];
  try {
    if (opts.backend === "qemu") {
      // Loaded only when asked for: the QEMU backend spawns qemu-system-x86_64.
      const { createQemuBackend } = await import("../agent/backends/qemu/qemu-backend.ts");
      const backend = await createQemuBackend({ topology: "switch", log: opts.log });
      try {
        hosts.push(await startHost(opts.url, opts.log, "qemu", backend, null));
      } catch (e) {
        await backend.close().catch(() => undefined);
        throw e;
      }
      const d = backend.describe();
      return {
        description: `QEMU's CXL model (pid ${d.pid}): a CXL switch with two Type-3 memory devices ${d.memoryDevices.join(", ")}`,
        hosts,
        scenarios: qemuScenarios("qemu", d.memoryDevices),
        processes: { qemu: d.pid },
      };
    }
    const fleet = opts.fleet ?? defaultFleet();
    for (const spec of fleet.hosts) {
      const sim = createSimHost(spec, { clock: realClock, timings: opts.timings ?? DEMO_TIMINGS });
      hosts.push(await startHost(opts.url, opts.log, spec.name, sim, sim.faults));
    }
    return {
      description: "simulated CXL Type-2 devices (shared/sim/fleets/default.json) on the real clock",
      hosts,
      scenarios: SIM_SCENARIOS,
      processes: {},
    };
  } catch (e) {
    await stopDemoHosts(hosts);
    throw e;
  }
}

export async function stopDemoHosts(hosts: DemoHost[]): Promise<void> {
  await Promise.allSettled(
    hosts.map(async (h) => {
      await h.agent.stop().catch(() => undefined);
      await h.nc.close().catch(() => undefined);
      await h.backend.close().catch(() => undefined);
    }),
  );
}
