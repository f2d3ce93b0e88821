// The policy's vocabulary: what a plan says, why a request is refused, and the fleet state the guards read.
import type { ResetMethod, Scope } from "../../shared/bus/agent-messages.ts";
import type { BreakerState } from "./breaker.ts";
import type { BudgetState } from "./budget.ts";
import type { ConcurrencyState } from "./concurrency.ts";
import type { Policy } from "./defaults.ts";

/** How a request ends: exactly one of these per request id. */
export type Outcome = "verified" | "refused" | "failed" | "quarantined" | "planned";

/** The phases of a reset, in order, named as the lifecycle machine's states. */
export const RESET_PHASES = [
  "gating",
  "savingImage",
  "persistingImage",
  "regating",
  "quiescing",
  "resetting",
  "awaitingReady",
  "restoring",
  "committingDecoders",
  "verifying",
  "releasing",
] as const;
export type ResetPhase = (typeof RESET_PHASES)[number];

export type RefusalReason =
  | "bad-request"
  | "quarantined"
  | "deadline-passed"
  | "in-progress"
  | "flr-unsupported"
  | "no-full-reset-method"
  | "method-unsupported"
  | "mem-clear-unsupported"
  | "breaker-open"
  | "cooldown"
  | "device-busy"
  | "sibling-busy"
  | "host-busy"
  | "switch-busy"
  // Raised by the lifecycle, not by planReset: the device is not probed yet, or a step before anything
  // destructive failed (nothing was touched, so the request is refused rather than failed).
  | "device-unavailable"
  | "gate-unavailable"
  | "save-failed"
  | "persist-failed"
  | "regate-failed";

export type GateName =
  | "request"
  | "quarantine"
  | "deadline"
  | "lease"
  | "method"
  | "mem-clear"
  | "breaker"
  | "budget"
  | "device-busy"
  | "siblings"
  | "host-concurrency"
  | "switch-concurrency"
  | "config-lock";

export interface GateResult {
  gate: GateName;
  passed: boolean;
  /** Set when the gate refuses. */
  reason?: RefusalReason;
  /** One human sentence, whether it passed or not. */
  message: string;
  details?: Record<string, unknown>;
  retryAfterMs?: number;
}

/**
 * What CONFIG_LOCK means for this plan (see gates.ts: configLockGate for the reasoning).
 * - not-set: nothing locked.
 * - untouched: FLR does not reach the DVSEC; nothing to restore there.
 * - retained: CXL Reset is not a conventional reset; the lock and the locked fields stay, restore leaves them
 *   and verify reads them back.
 * - relock-last: SBR is a conventional reset; the lock clears, restore rewrites the fields and sets it last.
 * - retained-or-relock: VFIO_DEVICE_RESET lets the kernel pick; the agent reads the lock after the reset.
 */
export type ConfigLockHandling = "not-set" | "untouched" | "retained" | "relock-last" | "retained-or-relock";

export interface PlanDeadlines {
  /** Deadline of each phase, ms from entering it (the machine keeps the absolute time). */
  phasesMs: Record<ResetPhase, number>;
  /** Components, for the report. */
  agentCallMs: number;
  cacheFlushMs: number;
  /** The reset's own wait: FLR/SBR settle time, or max(declared CXL Reset timeout, 100 ms) + margin. */
  resetWaitMs: number;
  commitPerDecoderMs: number;
}

export interface Plan {
  kind: "plan";
  requestId: string;
  host: string;
  bdf: string;
  requestedScope: Scope;
  scope: Scope;
  method: ResetMethod;
  /** io was asked, full is planned (only with allowEscalation: true). */
  escalated: boolean;
  escalationReason: string | null;
  dryRun: boolean;
  /** The request's deadline (ISO): the reset must not start after it; re-checked right before the device is touched. */
  startBy: string | null;
  /** All functions of the device. */
  functions: string[];
  /** Every function the plan saves, quiesces, restores and verifies (FLR: the one function; CXL Reset: all
   *  functions of the device; SBR: everything below the bridge the plan covers). */
  targets: string[];
  /** Siblings below the bridge that joined the plan (SBR with includeSiblings). */
  siblings: string[];
  /** SBR: the bridge, and whether Unmask SBR must be set on it (CXL port). */
  bridge: string | null;
  unmaskSbr: boolean;
  memClear: boolean;
  /** Disable Caching + write-back/invalidate before the reset (full scope, Cache_Capable and Cache_Enable). */
  cacheFlush: boolean;
  configLock: ConfigLockHandling;
  /** Decoders committed before the reset: restore re-commits them and verify checks them. */
  committedDecoders: number[];
  /**
   * The driver taken from the device for the reset (saved under it, unbound, bound again and verified after,
   * on every exit): null when none is bound or it stays (vfio-pci for a VFIO reset). Absent in older plans.
   */
  handover?: Record<string, string> | null;
  /** Lock On Commit + Committed decoders a CXL Reset is expected to retain: restore leaves them, verify checks. */
  retainedDecoders: number[];
  deadlines: PlanDeadlines;
  gates: GateResult[];
  steps: ResetPhase[];
  /** Things the operator should know (reserved timeout encoding, escalation...). */
  notes: string[];
}

export interface Refusal {
  kind: "refusal";
  requestId: string;
  host: string;
  bdf: string;
  reason: RefusalReason;
  message: string;
  details: Record<string, unknown>;
  retryAfterMs?: number;
  /** Every gate evaluated (a dry run reports them all). */
  gates: GateResult[];
}

/** Fleet and device state the guards read; the coordinator keeps it (NATS KV) and passes a snapshot. */
export interface GuardSnapshot {
  /** Request holding the device's lease, or null. */
  activeRequestId: string | null;
  quarantined: boolean;
  budget: BudgetState;
  breaker: BreakerState;
  concurrency: ConcurrencyState;
}

export interface PolicyContext extends GuardSnapshot {
  /** ms epoch. */
  nowMs: number;
  policy: Policy;
}
