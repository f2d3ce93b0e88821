// Per-phase deadlines from the device's declared timeouts and the policy (reset-rules "Details").
import type { ResetMethod } from "../../shared/bus/agent-messages.ts";
import type { DeviceFacts } from "../facts.ts";
import type { Policy } from "./defaults.ts";
import type { PlanDeadlines } from "./types.ts";

/** The CXL Reset wait: max(declared timeout, 100 ms); a reserved encoding waits 100 s. */
export function cxlResetWaitMs(facts: DeviceFacts, policy: Policy): number {
  const declared = facts.cxlResetTimeoutReserved ? policy.reservedCxlResetTimeoutMs : facts.cxlResetTimeoutMs;
  return Math.max(declared, policy.minCxlResetWaitMs);
}

function resetWaitMs(method: ResetMethod, facts: DeviceFacts, policy: Policy): number {
  switch (method) {
    case "flr":
      return policy.postResetWaitMs;
    case "cxl":
      return cxlResetWaitMs(facts, policy) + policy.cxlResetMarginMs;
    case "sbr":
      return policy.sbrHoldMs + policy.postResetWaitMs;
    case "vfio":
    case "kernel":
      return policy.vfioResetTimeoutMs;
  }
}

export function planDeadlines(
  plan: {
    method: ResetMethod;
    targets: string[];
    cacheFlush: boolean;
    committedDecoders: number[];
    /**
     * The reset's operation quiesces first and restores after (policy/plan.ts resetsAlone): its budget holds
     * the flush, the restore with its commits and the verify.
     */
    resetAlone?: boolean;
  },
  facts: DeviceFacts,
  policy: Policy,
): PlanDeadlines {
  const agentCallMs = policy.agentCallTimeoutMs;
  const perTarget = agentCallMs * Math.max(1, plan.targets.length);
  const cacheFlushMs = plan.cacheFlush ? policy.cacheFlushTimeoutMs : 0;
  const wait = resetWaitMs(plan.method, facts, policy);
  // Decoders are committed one after the other; siblings may bring their own, so bound by target count.
  const commits = Math.max(1, plan.committedDecoders.length) * Math.max(1, plan.targets.length);
  const restoringMs = perTarget;
  const committingMs = agentCallMs + commits * policy.commitTimeoutMs;
  const alone = plan.resetAlone === true;
  return {
    agentCallMs,
    cacheFlushMs,
    resetWaitMs: wait,
    commitPerDecoderMs: policy.commitTimeoutMs,
    phasesMs: {
      gating: policy.leaseTimeoutMs,
      savingImage: perTarget,
      persistingImage: policy.imagePersistTimeoutMs,
      regating: agentCallMs,
      quiescing: perTarget + cacheFlushMs,
      resetting:
        agentCallMs + wait + (alone ? cacheFlushMs + restoringMs + committingMs + policy.verifyTimeoutMs : 0),
      awaitingReady: agentCallMs + policy.deviceReadyTimeoutMs,
      restoring: restoringMs,
      committingDecoders: committingMs,
      verifying: policy.verifyTimeoutMs,
      releasing: policy.leaseTimeoutMs,
    },
  };
}
