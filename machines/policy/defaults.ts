// Every limit and timeout the policy uses, named with its unit. The coordinator may override any of them
// from its config; the machine and the pure guards read nothing else.

export interface Policy {
  /** Attempt budget per device: at most this many resets in attemptWindowMs... */
  maxAttemptsPerWindow: number;
  attemptWindowMs: number;
  /** ...and once spent, no new attempt until this long after the last one. */
  cooldownMs: number;

  maxConcurrentPerHost: number;
  maxConcurrentPerSwitch: number;
  /** host-busy / switch-busy refusals tell the caller to come back after this long. */
  busyRetryAfterMs: number;

  /** Fleet circuit breaker: outcomes counted in this window... */
  breakerWindowMs: number;
  /** ...open when failures / outcomes reaches this ratio (0..1)... */
  breakerFailureRatio: number;
  /** ...and at least this many outcomes were seen. It closes only by operator action. */
  breakerMinSamples: number;

  /** Cache write-back + invalidate: poll Cache Invalid up to this long (reset-rules step 3). */
  cacheFlushTimeoutMs: number;
  /** Per decoder: poll Committed / Error Not Committed up to this long (spec 10 ms + margin). */
  commitTimeoutMs: number;
  /** Transport and bookkeeping margin added to every agent call. */
  agentCallTimeoutMs: number;
  /**
   * An agent absent from the bus (nobody answers its subject: restarting, reconnecting) or frozen (no reply, and
   * no answer to its ping either) is waited for up to this long per step, beyond the step's own budget: a request
   * sent to nobody was not delivered, and one an agent has not read yet is answered once (same opId), so sending
   * it again once the agent is back is safe. An agent that answers its ping and not the operation gets no grace.
   */
  agentAbsentGraceMs: number;
  verifyTimeoutMs: number;
  /**
   * Writing the image to JetStream KV and getting the acknowledgement. Long enough to wait out a stream leader's
   * fail-over in a cluster (4-6 s on nats-server 2.9): a node lost then must not refuse the reset.
   */
  imagePersistTimeoutMs: number;
  /** Acquiring / releasing the device lease and the concurrency slots. */
  leaseTimeoutMs: number;

  /** FLR and SBR: config space is undefined this long after the reset (PCIe base spec). */
  postResetWaitMs: number;
  /** SBR: hold the Secondary Bus Reset bit at least this long. */
  sbrHoldMs: number;
  /** After the post-reset wait: until the function answers (vendor id not all-ones). PCIe allows 1 s. */
  deviceReadyTimeoutMs: number;
  /** CXL Reset: never wait less than this, whatever the device declares (reset-rules: max(declared, 100 ms)). */
  minCxlResetWaitMs: number;
  /** Reserved CXL Reset Timeout encodings (5-7): wait this long and say so. */
  reservedCxlResetTimeoutMs: number;
  /** Added to the CXL Reset wait: the final read after the deadline and the poll interval. */
  cxlResetMarginMs: number;
  /** VFIO_DEVICE_RESET: the kernel picks the method; allow this long. */
  vfioResetTimeoutMs: number;

  /** Restores retried from the image after a failure, before quarantine. */
  restoreRetries: number;
  /** Scope violations (io reset changed CXL state) counted against a device before it is quarantined. */
  scopeViolationQuarantineThreshold: number;
  /** A device quarantined after a driver hand-over stays without its driver, for the operator (issue #17). */
  quarantineUnbound: boolean;
}

export const DEFAULT_POLICY: Readonly<Policy> = Object.freeze({
  maxAttemptsPerWindow: 3,
  attemptWindowMs: 60 * 60_000,
  cooldownMs: 10 * 60_000,

  maxConcurrentPerHost: 2,
  maxConcurrentPerSwitch: 1,
  busyRetryAfterMs: 30_000,

  breakerWindowMs: 30 * 60_000,
  breakerFailureRatio: 0.5,
  breakerMinSamples: 4,

  cacheFlushTimeoutMs: 1000,
  commitTimeoutMs: 20,
  agentCallTimeoutMs: 2000,
  agentAbsentGraceMs: 10_000,
  verifyTimeoutMs: 5000,
  imagePersistTimeoutMs: 15_000,
  leaseTimeoutMs: 5000,

  postResetWaitMs: 100,
  sbrHoldMs: 1,
  deviceReadyTimeoutMs: 1000,
  minCxlResetWaitMs: 100,
  reservedCxlResetTimeoutMs: 100_000,
  cxlResetMarginMs: 100,
  vfioResetTimeoutMs: 10_000,

  restoreRetries: 1,
  scopeViolationQuarantineThreshold: 2,
  quarantineUnbound: false,
});
