// Per-phase deadlines from the device's declared timeouts and the policy (reset-rules "Details").
import type { ResetMethod } from "../../shared/bus/agent-messages.ts";
import type { DeviceFacts } from "../facts.ts";
import type { Policy } from "./defaults.ts";
import type { PlanDeadlines, ResetPhase } from "./types.ts";

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
  const phasesMs: Record<ResetPhase, number> = {
    gating: policy.leaseTimeoutMs,
    savingImage: perTarget,
    persistingImage: policy.imagePersistTimeoutMs,
    regating: agentCallMs,
    quiescing: perTarget + cacheFlushMs,
    resetting: agentCallMs + wait,
    awaitingReady: agentCallMs + policy.deviceReadyTimeoutMs,
    restoring: perTarget,
    committingDecoders: agentCallMs + commits * policy.commitTimeoutMs,
    verifying: policy.verifyTimeoutMs,
    releasing: policy.leaseTimeoutMs,
  };
  // The device alone: the reset's operation also quiesces first, and restores, commits and verifies after.
  if (plan.resetAlone) phasesMs.resetting += cacheFlushMs + restoreInResetMs(phasesMs);
  return {
    agentCallMs,
    cacheFlushMs,
    resetWaitMs: wait,
    commitPerDecoderMs: policy.commitTimeoutMs,
    phasesMs,
  };
}

/**
 * What a reset's operation that also restores may spend on that: the restoring, committing and verifying
 * budgets together.
 */
export function restoreInResetMs(phasesMs: Readonly<Record<ResetPhase, number>>): number {
  return phasesMs.restoring + phasesMs.committingDecoders + phasesMs.verifying;
}
