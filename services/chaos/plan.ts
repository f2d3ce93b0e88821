// A scenario's random parts made concrete from its seed: the random requests and the random faults become
// ordinary RequestSpec / ScheduledFault entries, so a run is the same list of moments every time.

import { createRng, type Rng } from "../../shared/rng.ts";
import type { FaultSpec } from "../../shared/sim/faults.ts";
import type { Fleet } from "../../shared/sim/index.ts";
import {
  type FaultAction,
  fleetDevices,
  type RandomFaultKind,
  type RequestSpec,
  type Scenario,
  type ScheduledFault,
} from "./scenario.ts";

export interface PlannedFault extends ScheduledFault {
  source: "scenario" | "random";
}

export interface ChaosPlan {
  requests: RequestSpec[];
  faults: PlannedFault[];
}

/** Device faults a random run draws from: each bites at a different step of a reset. */
function randomDeviceFault(rng: Rng): FaultSpec {
  const options: FaultSpec[] = [
    { name: "commit-error", decoder: 0 },
    { name: "commit-stuck", decoder: 0 },
    { name: "cxl-reset-error" },
    { name: "cxl-reset-stuck" },
    { name: "cache-invalid-stuck" },
    { name: "flr-clears-hdm" },
    { name: "long-not-ready", ms: 300 },
    { name: "memory-online" },
    { name: "holder", kind: "process", detail: "pid 4242 (chaos)" },
  ];
  return rng.pick(options);
}

export function planScenario(s: Scenario, fleet: Fleet): ChaosPlan {
  const rng = createRng(s.seed);
  const devices = fleetDevices(fleet);
  const requests: RequestSpec[] = [...s.requests];
  if (s.randomRequests) {
    const r = s.randomRequests;
    for (let i = 0; i < r.count; i++) {
      const d = rng.pick(devices);
      const full = rng.chance(r.fullRatio);
      requests.push({
        at: r.fromMs + rng.int(r.spreadMs + 1),
        requestId: `${r.idPrefix}-${s.seed}-${i}`,
        host: d.host,
        bdf: d.bdf,
        scope: full ? "full" : "io",
        allowEscalation: full ? false : rng.chance(r.escalateRatio),
        memClear: false,
        reason: "chaos: random request",
        dryRun: false,
      });
    }
  }

  const faults: PlannedFault[] = s.faults.map((f) => ({ ...f, source: "scenario" as const }));
  if (s.randomFaults && s.randomFaults.count > 0) {
    const rf = s.randomFaults;
    const moments = Array.from({ length: rf.count }, () => rf.fromMs + rng.int(rf.spreadMs + 1)).sort(
      (a, b) => a - b,
    );
    // NATS faults never overlap (two nodes of three down is a quorum loss, not a chaos step).
    let natsFreeAt = 0;
    const hosts = fleet.hosts.map((h) => h.name);
    for (const [i, at0] of moments.entries()) {
      const kind: RandomFaultKind = rng.pick(rf.kinds);
      const down = rf.downMs;
      const base = { name: `random-${i}-${kind}`, delayMs: 0, source: "random" as const };
      let at = at0;
      switch (kind) {
        case "device": {
          const d = rng.pick(devices);
          faults.push({
            ...base,
            at,
            action: "device-fault",
            target: { device: { host: d.host, bdf: d.bdf } },
            fault: randomDeviceFault(rng),
            durationMs: down,
          });
          break;
        }
        case "agent-kill":
        case "agent-slow":
        case "agent-freeze":
        case "agent-partition":
        case "host-reboot": {
          const { action, ms } = ON_A_HOST[kind];
          faults.push({
            ...base,
            at,
            action,
            target: { agent: rng.pick(hosts) },
            ...(ms !== undefined ? { ms } : {}),
            durationMs: down,
          });
          break;
        }
        case "coordinator-kill":
        case "coordinator-pause":
        case "coordinator-partition":
          faults.push({
            ...base,
            at,
            action: ON_A_COORDINATOR[kind],
            target: { coordinator: rng.int(s.coordinators.count) },
            durationMs: down,
          });
          break;
        case "nats-kill":
        case "nats-pause": {
          if (s.cluster.size < 3) {
            // One node: killing it stops everything; pause it briefly instead (clients reconnect).
            faults.push({
              ...base,
              at,
              action: "pause",
              target: { nats: 0 },
              durationMs: Math.min(down, 1000),
            });
            break;
          }
          at = Math.max(at, natsFreeAt);
          // A node back from a kill needs a moment to catch up before the next one goes (the driver also
          // waits until every stream is whole again before it breaks another node).
          natsFreeAt = at + down + 6000;
          const target = rng.chance(0.5)
            ? { nats: "stream-leader" as const, stream: rng.pick(STREAM_CHOICES) }
            : { nats: rng.int(3) };
          faults.push({
            ...base,
            at,
            action: kind === "nats-kill" ? "kill" : "pause",
            target,
            durationMs: down,
          });
          break;
        }
      }
    }
  }
  faults.sort((a, b) => (a.at ?? 0) - (b.at ?? 0));
  return { requests, faults };
}

/** Random kinds that hit one host's agent (or the whole host): the action, and its ms where it takes one. */
const ON_A_HOST: Record<
  "agent-kill" | "agent-slow" | "agent-freeze" | "agent-partition" | "host-reboot",
  { action: FaultAction; ms?: number }
> = {
  "agent-kill": { action: "kill" },
  "agent-slow": { action: "slow", ms: 20 },
  "agent-freeze": { action: "freeze" },
  "agent-partition": { action: "partition" },
  "host-reboot": { action: "reboot" },
};

/** Random kinds that hit one coordinator. */
const ON_A_COORDINATOR: Record<
  "coordinator-kill" | "coordinator-pause" | "coordinator-partition",
  FaultAction
> = {
  "coordinator-kill": "kill",
  "coordinator-pause": "pause",
  "coordinator-partition": "partition",
};

const STREAM_CHOICES = ["KV_cxlrc-images", "KV_cxlrc-actors", "KV_cxlrc-leases", "CXLRC_EVENTS"] as const;
