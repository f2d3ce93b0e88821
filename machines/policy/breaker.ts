// Fleet circuit breaker: opens when the failure ratio of the outcomes in breakerWindowMs reaches
// breakerFailureRatio with at least breakerMinSamples outcomes. It never closes by itself: only an operator
// closes it (reset-rules: "closes only by operator action"). Plain JSON state, time passed in.
import type { Policy } from "./defaults.ts";
import type { Outcome } from "./types.ts";

export interface BreakerOutcome {
  atMs: number;
  failed: boolean;
}

export interface BreakerState {
  status: "closed" | "open";
  /** Outcomes inside the window (older ones are dropped as new ones arrive). */
  outcomes: BreakerOutcome[];
  openedAtMs: number | null;
  /** Why it opened, for the refusal message. */
  reason: string | null;
  /** Who closed it last, and when. */
  closedBy: { operator: string; atMs: number } | null;
}

type BreakerLimits = Pick<Policy, "breakerWindowMs" | "breakerFailureRatio" | "breakerMinSamples">;

export function closedBreaker(): BreakerState {
  return { status: "closed", outcomes: [], openedAtMs: null, reason: null, closedBy: null };
}

/** What a request outcome means to the breaker: refusals and dry runs touched nothing and do not count. */
export function breakerSample(outcome: Outcome): "success" | "failure" | null {
  switch (outcome) {
    case "verified":
      return "success";
    case "failed":
    case "quarantined":
      return "failure";
    case "refused":
    case "planned":
      return null;
  }
}

export function recordOutcome(
  state: BreakerState,
  policy: BreakerLimits,
  nowMs: number,
  failed: boolean,
): BreakerState {
  const outcomes = [
    ...state.outcomes.filter((o) => o.atMs > nowMs - policy.breakerWindowMs),
    { atMs: nowMs, failed },
  ];
  if (state.status === "open") return { ...state, outcomes };
  const reason = openReason(outcomes.filter((o) => o.failed).length, outcomes.length, policy);
  if (reason !== null) return { ...state, status: "open", outcomes, openedAtMs: nowMs, reason };
  return { ...state, outcomes };
}

/** The rule, on counts of the window: why the breaker opens, or null while it stays closed. */
export function openReason(failures: number, samples: number, policy: BreakerLimits): string | null {
  if (samples < policy.breakerMinSamples || samples === 0) return null;
  if (failures / samples < policy.breakerFailureRatio) return null;
  return `${failures} of ${samples} resets failed in the last ${policy.breakerWindowMs} ms (threshold ${policy.breakerFailureRatio})`;
}

export function isBreakerOpen(state: BreakerState): boolean {
  return state.status === "open";
}

/** The only way back to closed. The window starts afresh, so old failures cannot reopen it at once. */
export function closeBreaker(state: BreakerState, operator: string, nowMs: number): BreakerState {
  return {
    ...state,
    status: "closed",
    outcomes: [],
    openedAtMs: null,
    reason: null,
    closedBy: { operator, atMs: nowMs },
  };
}
