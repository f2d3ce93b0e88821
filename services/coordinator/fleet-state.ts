// Fleet-wide guard state shared by every coordinator: circuit breaker, per-device attempt budgets and the
// host/switch concurrency slots (machines/policy keeps the rules, pure; this file keeps the state durable).
// One JSON document in the actors bucket (FLEET_KEY), changed only by compare-and-set, retried on conflict,
// so two coordinators never both take the last slot of a host.
import {
  type BreakerState,
  breakerSample,
  closeBreaker,
  closedBreaker,
  recordOutcome,
} from "../../machines/policy/breaker.ts";
import { type BudgetState, checkBudget, emptyBudget, recordAttempt } from "../../machines/policy/budget.ts";
import {
  acquireSlots,
  type ConcurrencyState,
  emptyConcurrency,
  releaseSlots,
  type SlotClaim,
} from "../../machines/policy/concurrency.ts";
import type { Policy } from "../../machines/policy/defaults.ts";
import type { GuardSnapshot, Outcome } from "../../machines/policy/types.ts";
import type { CoordinatorStore } from "./store.ts";

export interface InFlight {
  key: string;
  host: string;
  bdf: string;
  owner: string;
  sinceMs: number;
}

export interface FleetState {
  v: 1;
  breaker: BreakerState;
  concurrency: ConcurrencyState;
  budgets: Record<string, BudgetState>;
  /** requestId → device holding slots (to reclaim slots of a coordinator that died). */
  inflight: Record<string, InFlight>;
}

export function emptyFleet(): FleetState {
  return { v: 1, breaker: closedBreaker(), concurrency: emptyConcurrency(), budgets: {}, inflight: {} };
}

export type GrantResult =
  | { granted: true }
  | {
      granted: false;
      reason: "host-busy" | "switch-busy" | "cooldown" | "breaker-open";
      message: string;
      retryAfterMs?: number;
    };

export interface FleetStore {
  /** Latest known state (refreshed by every read and write). */
  current(): FleetState;
  refresh(): Promise<FleetState>;
  /** Guard snapshot for a device's RESET_REQUESTED (activeRequestId and quarantined are the caller's). */
  guards(key: string, extra: Pick<GuardSnapshot, "activeRequestId" | "quarantined">): GuardSnapshot;
  /** Slots + budget + breaker in one CAS (machines' acquireDevice). Idempotent per request id. */
  grant(claim: SlotClaim & { key: string; bdf: string; owner: string }, nowMs: number): Promise<GrantResult>;
  /** Slots back, outcome counted by the breaker (machines' releaseDevice). Idempotent per request id. */
  finish(requestId: string, outcome: Outcome | null, nowMs: number): Promise<void>;
  closeBreaker(operator: string, nowMs: number): Promise<FleetState>;
  /** Drop slots of requests no coordinator drives any more. */
  reclaim(isAlive: (f: InFlight, requestId: string) => Promise<boolean>): Promise<string[]>;
}

export function createFleetStore(store: CoordinatorStore, policy: Policy): FleetStore {
  let state = emptyFleet();
  let revision: number | null = null;

  const refresh = async () => {
    const s = await store.loadFleet<FleetState>();
    if (s) {
      state = { ...emptyFleet(), ...s.value };
      revision = s.revision;
    } else {
      state = emptyFleet();
      revision = null;
    }
    return state;
  };

  /** Read-modify-CAS, retried on conflict. `change` returns the new state or null (nothing to write). */
  const update = async <T>(change: (s: FleetState) => { next: FleetState | null; result: T }): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      const { next, result } = change(state);
      if (next === null) return result;
      try {
        revision = await store.saveFleet(next, revision);
        state = next;
        return result;
      } catch (err) {
        if (attempt >= 50) throw err;
        await refresh();
        await new Promise((r) => setTimeout(r, Math.random() * 5 * Math.min(attempt + 1, 10)));
      }
    }
  };

  return {
    current: () => state,
    refresh,
    guards(key, extra) {
      return {
        ...extra,
        budget: state.budgets[key] ?? emptyBudget(),
        breaker: state.breaker,
        concurrency: state.concurrency,
      };
    },
    async grant(claim, nowMs) {
      await refresh();
      return update<GrantResult>((s) => {
        if (s.inflight[claim.requestId]) return { next: null, result: { granted: true } };
        if (s.breaker.status === "open") {
          return {
            next: null,
            result: {
              granted: false,
              reason: "breaker-open",
              message: `fleet circuit breaker open: ${s.breaker.reason ?? "too many failures"}; an operator must close it`,
            },
          };
        }
        const budget = s.budgets[claim.key] ?? emptyBudget();
        const b = checkBudget(budget, policy, nowMs);
        if (!b.allowed) {
          return {
            next: null,
            result: {
              granted: false,
              reason: "cooldown",
              message: `${claim.bdf} spent its attempt budget; cooldown ends ${new Date(b.untilMs).toISOString()}`,
              retryAfterMs: Math.max(0, b.untilMs - nowMs),
            },
          };
        }
        const slots = acquireSlots(s.concurrency, policy, claim);
        if (!slots.ok) {
          return {
            next: null,
            result: {
              granted: false,
              reason: slots.reason,
              message: `${slots.reason === "host-busy" ? claim.host : claim.switchId} already runs ${slots.inFlight.length} reset(s): ${slots.inFlight.join(", ")}`,
              retryAfterMs: slots.retryAfterMs,
            },
          };
        }
        return {
          next: {
            ...s,
            concurrency: slots.state,
            budgets: { ...s.budgets, [claim.key]: recordAttempt(budget, policy, nowMs) },
            inflight: {
              ...s.inflight,
              [claim.requestId]: {
                key: claim.key,
                host: claim.host,
                bdf: claim.bdf,
                owner: claim.owner,
                sinceMs: nowMs,
              },
            },
          },
          result: { granted: true },
        };
      });
    },
    async finish(requestId, outcome, nowMs) {
      await refresh();
      await update((s) => {
        const holds = s.inflight[requestId] !== undefined;
        const sample = outcome === null ? null : breakerSample(outcome);
        if (!holds) return { next: null, result: undefined };
        const { [requestId]: _gone, ...inflight } = s.inflight;
        return {
          next: {
            ...s,
            concurrency: releaseSlots(s.concurrency, requestId),
            inflight,
            breaker:
              sample !== null ? recordOutcome(s.breaker, policy, nowMs, sample === "failure") : s.breaker,
          },
          result: undefined,
        };
      });
    },
    async closeBreaker(operator, nowMs) {
      await refresh();
      return update((s) => {
        const next = { ...s, breaker: closeBreaker(s.breaker, operator, nowMs) };
        return { next, result: next };
      });
    },
    async reclaim(isAlive) {
      await refresh();
      const dead: string[] = [];
      for (const [id, f] of Object.entries(state.inflight)) if (!(await isAlive(f, id))) dead.push(id);
      if (dead.length === 0) return [];
      await update((s) => {
        let concurrency = s.concurrency;
        const inflight = { ...s.inflight };
        for (const id of dead) {
          concurrency = releaseSlots(concurrency, id);
          delete inflight[id];
        }
        return { next: { ...s, concurrency, inflight }, result: undefined };
      });
      return dead;
    },
  };
}
