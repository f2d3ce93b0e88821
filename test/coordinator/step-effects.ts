// The coordinator's step effects (effects/agent-actors.ts) over one device's access and stand-in deps: the
// tests that drive a step directly, without a coordinator around it, build them here.
import type { NatsConnection } from "@nats-io/transport-node";
import { DEFAULT_POLICY } from "../../machines/policy/defaults.ts";
import {
  type AgentActorDeps,
  createAgentActors,
  type DeviceAccess,
} from "../../services/coordinator/effects/agent-actors.ts";
import { createStepGate } from "../../services/coordinator/effects/step-budget.ts";
import { silentLogger } from "../../shared/log.ts";

/** Effects whose directory knows one device (`key` → `access`); every dep not given is a stand-in. */
export function stepEffects(key: string, access: DeviceAccess, over: Partial<AgentActorDeps> = {}) {
  return createAgentActors(
    {
      nc: {} as NatsConnection,
      link: {} as never,
      store: {} as never,
      fleet: {} as never,
      coordinatorId: "c-test",
      policy: DEFAULT_POLICY,
      log: silentLogger,
      now: Date.now,
      inventory: () => Promise.reject(new Error("no inventory here")),
      gate: createStepGate(4),
      ...over,
    },
    (k) => (k === key ? access : undefined),
  );
}
