// Concurrency limits per host and per switch: how many resets may run at once. Plain JSON state (request ids
// in flight per host and per switch); acquiring is idempotent for the same request id.
import type { Policy } from "./defaults.ts";

export interface ConcurrencyState {
  hosts: Record<string, string[]>;
  switches: Record<string, string[]>;
}

export interface SlotClaim {
  requestId: string;
  host: string;
  /** The switch above the device, or null when it hangs off a root port. */
  switchId: string | null;
}

export type SlotCheck =
  | { ok: true }
  | { ok: false; reason: "host-busy" | "switch-busy"; inFlight: string[]; retryAfterMs: number };

type ConcurrencyLimits = Pick<Policy, "maxConcurrentPerHost" | "maxConcurrentPerSwitch" | "busyRetryAfterMs">;

export function emptyConcurrency(): ConcurrencyState {
  return { hosts: {}, switches: {} };
}

function others(list: string[] | undefined, requestId: string): string[] {
  return (list ?? []).filter((id) => id !== requestId);
}

export function checkSlots(state: ConcurrencyState, policy: ConcurrencyLimits, claim: SlotClaim): SlotCheck {
  const onHost = others(state.hosts[claim.host], claim.requestId);
  if (onHost.length >= policy.maxConcurrentPerHost) {
    return { ok: false, reason: "host-busy", inFlight: onHost, retryAfterMs: policy.busyRetryAfterMs };
  }
  if (claim.switchId !== null) {
    const onSwitch = others(state.switches[claim.switchId], claim.requestId);
    if (onSwitch.length >= policy.maxConcurrentPerSwitch) {
      return { ok: false, reason: "switch-busy", inFlight: onSwitch, retryAfterMs: policy.busyRetryAfterMs };
    }
  }
  return { ok: true };
}

export function acquireSlots(
  state: ConcurrencyState,
  policy: ConcurrencyLimits,
  claim: SlotClaim,
): { ok: true; state: ConcurrencyState } | Extract<SlotCheck, { ok: false }> {
  const check = checkSlots(state, policy, claim);
  if (!check.ok) return check;
  const hosts = {
    ...state.hosts,
    [claim.host]: [...others(state.hosts[claim.host], claim.requestId), claim.requestId],
  };
  const switches =
    claim.switchId === null
      ? state.switches
      : {
          ...state.switches,
          [claim.switchId]: [...others(state.switches[claim.switchId], claim.requestId), claim.requestId],
        };
  return { ok: true, state: { hosts, switches } };
}

/** Release every slot the request holds (idempotent). Empty lists are dropped. */
export function releaseSlots(state: ConcurrencyState, requestId: string): ConcurrencyState {
  const prune = (m: Record<string, string[]>) =>
    Object.fromEntries(
      Object.entries(m)
        .map(([k, ids]) => [k, ids.filter((id) => id !== requestId)] as const)
        .filter(([, ids]) => ids.length > 0),
    );
  return { hosts: prune(state.hosts), switches: prune(state.switches) };
}
