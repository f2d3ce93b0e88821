// Scenarios built in code (too repetitive for a file): a coordinator killed at every lifecycle step.
import { RESET_PHASES } from "../../machines/policy/types.ts";
import type { ScenarioInput } from "./scenario.ts";

export interface KillEveryStepOptions {
  /** Kill before the step's effect, after it (done but not recorded), or both (default). */
  points?: Array<"before" | "after">;
  phases?: readonly string[];
  /** Restart the killed process (same id) after this long; undefined: it stays down. Default 0. */
  restartAfterMs?: number | undefined;
  coordinators?: number;
  leaseTtlMs?: number;
  clusterSize?: 1 | 3;
}

/**
 * One full-scope request per (phase, point) on a device of its own, all at once, and a fault killing the
 * coordinator that runs that request when it reaches that step. Host k<n> per point, one device per phase.
 */
export function killEveryStep(o: KillEveryStepOptions = {}): ScenarioInput {
  const points = o.points ?? ["before", "after"];
  const phases = o.phases ?? RESET_PHASES;
  const dev = (i: number) => `0000:${(i + 1).toString(16).padStart(2, "0")}:00.0`;
  const requests: NonNullable<ScenarioInput["requests"]> = [];
  const faults: NonNullable<ScenarioInput["faults"]> = [];
  points.forEach((point, h) => {
    phases.forEach((phase, i) => {
      const id = `kill-${point}-${phase}`;
      requests.push({ requestId: id, host: `k${h + 1}`, bdf: dev(i), scope: "full" });
      faults.push({
        name: id,
        on: { step: phase as never, point, requestId: id },
        action: "kill",
        target: { coordinator: "driver" },
        ...(o.restartAfterMs === undefined ? {} : { durationMs: o.restartAfterMs }),
      });
    });
  });
  return {
    name: `coordinator-killed-at-every-step${o.restartAfterMs === undefined ? "-no-restart" : ""}`,
    description:
      "A coordinator SIGKILLed at each lifecycle step (before its effect and after it): its devices continue from their stored state.",
    cluster: { size: o.clusterSize ?? 3 },
    coordinators: {
      count: o.coordinators ?? 2,
      leaseTtlMs: o.leaseTtlMs ?? 10_000,
      // Every request at once on one host: no host slot waits.
      policy: { maxConcurrentPerHost: 32 },
    },
    deadlineMs: 90_000,
    fleet: { generate: { hosts: points.length, devicesPerHost: phases.length, prefix: "k", noFlrEvery: 0 } },
    timings: { commitDelayMs: 1, notReadyMs: 10, cxlResetDurationMs: 5, cxlResetNoTouchMs: 10 },
    agentTimeouts: { flrWaitMs: 10, sbrSettleMs: 10, cxlResetNoTouchMs: 10, cxlResetMinTimeoutMs: 20 },
    requests,
    faults,
  };
}
