// Per-device attempt budget with cooldown: at most maxAttemptsPerWindow resets in attemptWindowMs; spending
// the last one starts a cooldown of cooldownMs. Plain JSON state (the coordinator persists it), time passed in.
import type { Policy } from "./defaults.ts";

export interface BudgetState {
  /** Start times (ms epoch) of the attempts still inside the window. */
  attemptsMs: number[];
  /** No attempt before this time (ms epoch), or null. */
  cooldownUntilMs: number | null;
}

export type BudgetCheck =
  | { allowed: true; remaining: number }
  | { allowed: false; untilMs: number; attemptsInWindow: number };

type BudgetLimits = Pick<Policy, "maxAttemptsPerWindow" | "attemptWindowMs" | "cooldownMs">;

export function emptyBudget(): BudgetState {
  return { attemptsMs: [], cooldownUntilMs: null };
}

function inWindow(state: BudgetState, policy: BudgetLimits, nowMs: number): number[] {
  return state.attemptsMs.filter((t) => t > nowMs - policy.attemptWindowMs && t <= nowMs);
}

export function checkBudget(state: BudgetState, policy: BudgetLimits, nowMs: number): BudgetCheck {
  const recent = inWindow(state, policy, nowMs);
  if (state.cooldownUntilMs !== null && nowMs < state.cooldownUntilMs) {
    return { allowed: false, untilMs: state.cooldownUntilMs, attemptsInWindow: recent.length };
  }
  if (recent.length >= policy.maxAttemptsPerWindow) {
    // Cooldown already over but the window still holds the budget: free when the oldest one ages out.
    return {
      allowed: false,
      untilMs: Math.min(...recent) + policy.attemptWindowMs,
      attemptsInWindow: recent.length,
    };
  }
  return { allowed: true, remaining: policy.maxAttemptsPerWindow - recent.length };
}

/** Count one attempt (the coordinator calls it when a reset is granted). Spending the last one starts the cooldown. */
export function recordAttempt(state: BudgetState, policy: BudgetLimits, nowMs: number): BudgetState {
  const attemptsMs = [...inWindow(state, policy, nowMs), nowMs];
  const spent = attemptsMs.length >= policy.maxAttemptsPerWindow;
  const previous =
    state.cooldownUntilMs !== null && state.cooldownUntilMs > nowMs ? state.cooldownUntilMs : null;
  return { attemptsMs, cooldownUntilMs: spent ? nowMs + policy.cooldownMs : previous };
}
