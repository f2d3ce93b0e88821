// The guards' state as the device actors see it, with nothing fleet-wide in one document: host/switch slots in
// the admission ledger (admission.ts, in the memory of the host's owner), attempt budgets per device (budgets.ts,
// one key per device), the circuit breaker fed by the outcome events (breaker-feed.ts, one key holding open/closed).
// machines/policy keeps the rules, pure; grant and finish here are what the lifecycle's acquireDevice and
// releaseDevice call.
import type { BreakerState } from "../../machines/policy/breaker.ts";
import { breakerSample } from "../../machines/policy/breaker.ts";
import type { SlotClaim } from "../../machines/policy/concurrency.ts";
import type { Policy } from "../../machines/policy/defaults.ts";
import type { GuardSnapshot, Outcome } from "../../machines/policy/types.ts";
import { hostOfKey } from "../../shared/bus/subjects.ts";
import type { Admission, InFlight } from "./admission.ts";
import type { BreakerFeed } from "./breaker-feed.ts";
import type { Budgets } from "./budgets.ts";

export type { InFlight } from "./admission.ts";

export interface FleetState {
  breaker: BreakerState;
  /** Requests granted here (past their gating step) that still hold their slots. */
  inflight: Record<string, InFlight>;
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
  current(): FleetState;
  /** The request was granted here and still holds its slots (no copy of the whole ledger). */
  granted(requestId: string): boolean;
  /** Read a device's budget again (the breaker and the slots follow their keys by themselves). */
  refresh(key?: string): Promise<FleetState>;
  /** Guard snapshot for a device's RESET_REQUESTED (activeRequestId and quarantined are the caller's). */
  guards(key: string, extra: Pick<GuardSnapshot, "activeRequestId" | "quarantined">): GuardSnapshot;
  /** Slots held (taken now if the request has none), breaker closed, budget counted. Idempotent per request id. */
  grant(claim: SlotClaim & { key: string; bdf: string; owner: string }, nowMs: number): Promise<GrantResult>;
  /** Slots back, outcome counted by the breaker. Idempotent per request id. */
  finish(requestId: string, outcome: Outcome | null, nowMs: number): Promise<void>;
  closeBreaker(operator: string, nowMs: number): Promise<FleetState>;
}

export const FLEET_TIMING = {
  /** A request reaching its gating step without a slot (rare: it was not admitted first) waits this long for one. */
  slotWaitMs: 250,
} as const;

export interface FleetDeps {
  admission: Admission;
  budgets: Budgets;
  breaker: BreakerFeed;
  policy: Pick<Policy, "busyRetryAfterMs">;
}

export function createFleetStore(d: FleetDeps): FleetStore {
  /** Requests granted here, still holding their slots. */
  const granted = new Map<string, InFlight>();

  /** Granted here once, slots gone since (given up with the device): nothing left to finish here. */
  const held = (requestId: string) => {
    if (!granted.has(requestId)) return false;
    if (d.admission.holds(requestId)) return true;
    granted.delete(requestId);
    return false;
  };
  const current = (): FleetState => {
    for (const id of [...granted.keys()]) held(id);
    return { breaker: d.breaker.state(), inflight: Object.fromEntries(granted) };
  };

  return {
    current,
    granted: held,
    async refresh(key) {
      if (key !== undefined) await d.budgets.refresh(key);
      return current();
    },
    guards(key, extra) {
      const host = hostOfKey(key);
      return {
        ...extra,
        budget: d.budgets.cached(key),
        breaker: d.breaker.state(),
        concurrency: d.admission.concurrency(host),
      };
    },
    async grant(claim, nowMs) {
      if (held(claim.requestId)) return { granted: true };
      if (!d.admission.holds(claim.requestId)) {
        const gaveUp = new AbortController();
        const admitted = d.admission.admit(claim, { signal: gaveUp.signal }).then(
          () => true,
          () => false,
        );
        const timer = setTimeout(() => gaveUp.abort(), FLEET_TIMING.slotWaitMs);
        const ok = await admitted;
        clearTimeout(timer);
        if (!ok) {
          const holders = d.admission.concurrency(claim.host).hosts[claim.host] ?? [];
          return {
            granted: false,
            reason: "host-busy",
            message: `${claim.host} already runs ${holders.length} reset(s): ${holders.join(", ")}`,
            retryAfterMs: d.policy.busyRetryAfterMs,
          };
        }
      }
      const breaker = d.breaker.state();
      if (breaker.status === "open") {
        return {
          granted: false,
          reason: "breaker-open",
          message: `fleet circuit breaker open: ${breaker.reason ?? "too many failures"}; an operator must close it`,
        };
      }
      const b = await d.budgets.take(claim.key, claim.requestId, nowMs);
      if (!b.ok) {
        return {
          granted: false,
          reason: "cooldown",
          message: `${claim.bdf} spent its attempt budget; cooldown ends ${new Date(b.untilMs).toISOString()}`,
          retryAfterMs: Math.max(0, b.untilMs - nowMs),
        };
      }
      granted.set(claim.requestId, {
        key: claim.key,
        host: claim.host,
        bdf: claim.bdf,
        owner: claim.owner,
        sinceMs: nowMs,
      });
      return { granted: true };
    },
    async finish(requestId, outcome, nowMs) {
      granted.delete(requestId);
      const sample = outcome === null ? null : breakerSample(outcome);
      try {
        if (sample !== null) await d.breaker.record(requestId, sample === "failure", nowMs);
      } finally {
        // The slots go back whether or not the breaker could count the outcome: one place gives them back.
        d.admission.release(requestId);
      }
    },
    async closeBreaker(operator, nowMs) {
      await d.breaker.close(operator, nowMs);
      return current();
    },
  };
}
