// planReset: request + device facts + fleet state → a Plan (scope, method, targets, gates, deadlines,
// steps) or a Refusal naming the first gate in the way. Pure: the dry run is exactly this function.
import type { DeviceFacts, ResetRequest } from "../facts.ts";
import { planDeadlines } from "./deadlines.ts";
import {
  breakerGate,
  budgetGate,
  concurrencyGates,
  configLockGate,
  configLockHandling,
  deadlineGate,
  deviceBusyGate,
  firstRefusal,
  handoverOf,
  handoverText,
  leaseGate,
  memClearGate,
  quarantineGate,
  refusalFrom,
  requestGate,
  siblingGate,
} from "./gates.ts";
import { chooseMethod } from "./method.ts";
import type { GateResult, Plan, PolicyContext, Refusal, ResetPhase } from "./types.ts";
import { RESET_PHASES } from "./types.ts";

export function planReset(request: ResetRequest, facts: DeviceFacts, ctx: PolicyContext): Plan | Refusal {
  // Gate order is refusal priority: what the caller must fix first comes first.
  const first: GateResult[] = [
    requestGate(request, facts),
    quarantineGate(ctx, request.bdf),
    deadlineGate(request, ctx.nowMs),
    leaseGate(request, ctx),
  ];
  const choice = chooseMethod(request, facts);
  if (!choice.ok) {
    const methodGate: GateResult = {
      gate: "method",
      passed: false,
      reason: choice.reason,
      message: choice.message,
      details: choice.details,
    };
    const gates = [...first, methodGate, breakerGate(ctx), budgetGate(ctx, request.bdf)];
    return refusalFrom(request, firstRefusal(gates)!, gates);
  }

  const { scope, method } = choice;
  const includeSiblings = method === "sbr" && request.includeSiblings === true;
  const siblings = includeSiblings ? [...facts.siblings] : [];
  // FLR resets the one function; CXL Reset every function of the device; SBR everything below the bridge.
  const deviceTargets = method === "flr" ? [request.bdf] : [...facts.functions];
  const targets = [...deviceTargets, ...siblings.filter((s) => !deviceTargets.includes(s))];
  // The drivers the reset takes (and gives back): no holders for the device-busy gate, a note in the plan.
  const handover = handoverOf(scope, method, facts, targets);

  const gates: GateResult[] = [
    ...first,
    {
      gate: "method",
      passed: true,
      message: choice.escalationReason ?? `${scope} scope by ${method}`,
      details: { scope, method, escalated: choice.escalated },
    },
    memClearGate(request, facts, method),
    breakerGate(ctx),
    budgetGate(ctx, request.bdf),
    deviceBusyGate(scope, facts, targets, handover),
    siblingGate(method, facts, targets),
    ...concurrencyGates(request, facts, ctx),
    configLockGate(facts, method),
  ];
  const failed = firstRefusal(gates);
  if (failed) return refusalFrom(request, failed, gates);

  const committedDecoders = facts.decoders.filter((d) => d.committed).map((d) => d.index);
  const cacheFlush = scope === "full" && facts.cacheCapable && facts.cacheEnabled;
  const steps: ResetPhase[] = RESET_PHASES.filter((p) => p !== "committingDecoders" || scope === "full");
  const notes: string[] = [];
  if (choice.escalationReason) notes.push(choice.escalationReason);
  if (method === "cxl" && facts.cxlResetTimeoutReserved) {
    notes.push(
      `CXL Reset Timeout uses a reserved encoding: waiting ${ctx.policy.reservedCxlResetTimeoutMs} ms (the longest defined)`,
    );
  }
  if (cacheFlush && !facts.wbInvCapable) {
    notes.push("cache is enabled but not Writeback-and-Invalidate capable: Disable Caching only, no WB+I");
  }
  if (includeSiblings && siblings.length > 0) notes.push(`siblings join the plan: ${siblings.join(", ")}`);
  if (handover) {
    notes.push(
      `driver ${handoverText(handover)} is taken for the reset and bound again after, on every exit`,
    );
  }

  return {
    kind: "plan",
    requestId: request.requestId,
    host: request.host,
    bdf: request.bdf,
    requestedScope: request.scope,
    scope,
    method,
    escalated: choice.escalated,
    escalationReason: choice.escalationReason,
    dryRun: request.dryRun === true,
    startBy: request.deadline ?? null,
    functions: [...facts.functions],
    targets,
    siblings,
    bridge: method === "sbr" ? (facts.bridge?.bdf ?? null) : null,
    unmaskSbr: method === "sbr" && facts.bridge?.cxlPort === true,
    memClear: request.memClear === true,
    cacheFlush,
    configLock: configLockHandling(facts, method),
    committedDecoders,
    handover,
    retainedDecoders:
      method === "cxl" ? facts.decoders.filter((d) => d.committed && d.lockOnCommit).map((d) => d.index) : [],
    deadlines: planDeadlines(
      {
        method,
        targets,
        cacheFlush,
        committedDecoders,
        resetAlone: resetsAlone({ targets }, request.bdf),
      },
      facts,
      ctx.policy,
    ),
    gates,
    steps,
    notes,
  };
}

export function isRefusal(x: Plan | Refusal): x is Refusal {
  return x.kind === "refusal";
}

/**
 * A plan of the device alone: its reset operation quiesces it first (after quiescing's write-ahead, the
 * decision to reset) and restores it from the image after (with the verify): one agent call for what would be
 * three. A plan with other functions quiesces and restores each of them in their own steps.
 */
export function resetsAlone(plan: Pick<Plan, "targets">, bdf: string): boolean {
  return plan.targets.length === 1 && plan.targets[0] === bdf;
}
