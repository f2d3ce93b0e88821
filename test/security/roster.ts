// The principals of the security tests: one of each role, two simulated hosts and one "real hardware" host
// (a simulated device whose backend reports no fault injection, as the sysfs backend does). The controllers are
// scoped: "controller" to the simulated hosts (a glob), "controller-hw" to hw-1 (an exact name).
import type { Roster } from "../../shared/bus/permissions.ts";
import { createSimHost, type SimHost, simpleHost, VirtualClock } from "../../shared/sim/index.ts";

export const TEST_ROSTER: Roster = {
  principals: [
    { name: "coord-1", role: "coordinator" },
    { name: "agent-sim-a", role: "agent", host: "sim-a", backend: "sim" },
    { name: "agent-sim-b", role: "agent", host: "sim-b", backend: "sim" },
    { name: "agent-hw-1", role: "agent", host: "hw-1", backend: "sysfs" },
    { name: "controller", role: "controller", hosts: ["sim-*"] },
    { name: "controller-hw", role: "controller", hosts: ["hw-1"] },
    { name: "sre", role: "sre" },
    { name: "operator", role: "operator" },
    { name: "chaos", role: "chaos" },
  ],
};

export function simHost(name: string): SimHost {
  return createSimHost(simpleHost({ name }), { clock: new VirtualClock() });
}

/** A simulated host that, like real hardware (sysfs backend), has no fault injection. */
export function hardwareLikeHost(name: string): SimHost {
  const sim = simHost(name);
  return new Proxy(sim, {
    get(target, key) {
      if (key === "capabilities") return { ...target.capabilities, faults: false };
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
