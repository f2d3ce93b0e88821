// Every wait of the agent's operations, named, with its unit. Sources: reset-rules.md "Details that decide
// correctness", PCIe base spec §6.6 (100 ms after FLR / SBR), CXL r2.0 §8.2.5.12.20 (commit ~10 ms).

export interface AgentTimeouts {
  /** Decoder Commit → Committed / Error Not Committed (spec 10 ms, plus margin). */
  commitTimeoutMs: number;
  commitPollMs: number;
  /** Decoder decommit (Commit cleared → Committed reads 0). */
  decommitTimeoutMs: number;
  /** Initiate Cache WB+I → Cache Invalid (rules: default 100 ms; policy may set 1 s). */
  cacheFlushTimeoutMs: number;
  /** About every 100 µs. */
  cacheFlushPollMs: number;
  /** After Initiate CXL Reset config access is undefined: touch nothing for this long. */
  cxlResetNoTouchMs: number;
  /** Status2 poll interval while waiting for Reset Complete / Reset Error. */
  cxlResetPollMs: number;
  /** Lower bound of the CXL Reset deadline (deadline = max(declared timeout, this)). */
  cxlResetMinTimeoutMs: number;
  /** Before FLR: wait for Transactions Pending to clear (as the kernel's pcie_flr), then go on anyway. */
  flrPendingTimeoutMs: number;
  flrPendingPollMs: number;
  /** After Initiate FLR: touch nothing for this long. */
  flrWaitMs: number;
  /** Secondary Bus Reset held asserted at least this long (PCIe: ≥ 1 ms). */
  sbrHoldMs: number;
  /** After SBR release: touch nothing for this long. */
  sbrSettleMs: number;
  /** After the post-reset wait: until the function answers (vendor id not all-ones). */
  readyTimeoutMs: number;
  readyPollMs: number;
}

export const DEFAULT_AGENT_TIMEOUTS: Readonly<AgentTimeouts> = Object.freeze({
  commitTimeoutMs: 20,
  commitPollMs: 1,
  decommitTimeoutMs: 20,
  cacheFlushTimeoutMs: 100,
  cacheFlushPollMs: 0.1,
  cxlResetNoTouchMs: 100,
  cxlResetPollMs: 20,
  cxlResetMinTimeoutMs: 100,
  flrPendingTimeoutMs: 100,
  flrPendingPollMs: 10,
  flrWaitMs: 100,
  sbrHoldMs: 1,
  sbrSettleMs: 100,
  readyTimeoutMs: 1000,
  readyPollMs: 10,
});

/** Defaults with overrides; the SBR hold never goes below the spec's 1 ms. */
export function agentTimeouts(overrides: Partial<AgentTimeouts> = {}): AgentTimeouts {
  const t = { ...DEFAULT_AGENT_TIMEOUTS, ...overrides };
  for (const [k, v] of Object.entries(t)) {
    if (!(typeof v === "number" && Number.isFinite(v) && v >= 0)) {
      throw new RangeError(`agent timeout ${k} must be a non-negative number of ms, got ${String(v)}`);
    }
  }
  return { ...t, sbrHoldMs: Math.max(1, t.sbrHoldMs) };
}
