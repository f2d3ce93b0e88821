// Per-requester rate limits for request/reply endpoints (the coordinator's cxlrc.ctl.*): a token bucket per
// requester plus one for everyone together, so one noisy fleet controller cannot starve the others and all
// of them together cannot flood the coordinator.
//
// Who is the requester? The caller the server authenticated: callers cross an account import (`share: true`),
// and the server names them in the Nats-Request-Info header (shared/bus/trust.ts callerOf), which a client
// cannot forge across the import. The reply subject names nobody (a sender chooses it, and across an import the
// server rewrites it to _R_.…).
import { CxlrcError } from "../errors.ts";
import { remember } from "../remember.ts";

export interface RateLimitOptions {
  /** Sustained requests per second per requester. */
  perRequesterPerSec: number;
  /** Bucket size per requester (requests allowed at once after a quiet period). */
  perRequesterBurst: number;
  /** Sustained requests per second of everyone together. Default: no global limit. */
  globalPerSec?: number;
  globalBurst?: number;
  /** Requesters remembered (least recently seen forgotten first, once an eighth more have come). Default 10,000. */
  maxRequesters?: number;
  /** Clock in ms. Default performance.now. */
  now?: () => number;
}

export type RateDecision = { ok: true } | { ok: false; retryAfterMs: number; scope: "requester" | "global" };

class Bucket {
  tokens: number;
  constructor(
    private readonly ratePerMs: number,
    private readonly burst: number,
    private last: number,
  ) {
    this.tokens = burst;
  }
  refill(now: number): void {
    const dt = Math.max(0, now - this.last);
    this.last = Math.max(this.last, now);
    this.tokens = Math.min(this.burst, this.tokens + dt * this.ratePerMs);
  }
  /** ms until `cost` tokens are there (0 = now). */
  wait(cost: number): number {
    if (this.tokens >= cost) return 0;
    return this.ratePerMs > 0 ? Math.ceil((cost - this.tokens) / this.ratePerMs) : Number.POSITIVE_INFINITY;
  }
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly global: Bucket | null;
  private readonly now: () => number;
  private readonly maxRequesters: number;
  private readonly counters = { allowed: 0, limited: 0 };

  constructor(private readonly opts: RateLimitOptions) {
    if (!(opts.perRequesterPerSec >= 0) || !(opts.perRequesterBurst >= 1)) {
      throw new TypeError("rate limit: perRequesterPerSec >= 0 and perRequesterBurst >= 1");
    }
    this.now = opts.now ?? (() => performance.now());
    this.maxRequesters = opts.maxRequesters ?? 10_000;
    this.global =
      opts.globalPerSec !== undefined
        ? new Bucket(opts.globalPerSec / 1000, opts.globalBurst ?? Math.max(1, opts.globalPerSec), this.now())
        : null;
  }

  /** Take `cost` tokens for `requester`: allowed, or refused with the wait until it would be allowed. */
  take(requester: string, cost = 1): RateDecision {
    const now = this.now();
    const b =
      this.buckets.get(requester) ??
      new Bucket(this.opts.perRequesterPerSec / 1000, this.opts.perRequesterBurst, now);
    // Re-inserted: the most recently seen last, the least recently seen forgotten first.
    remember(this.buckets, requester, b, this.maxRequesters);
    b.refill(now);
    this.global?.refill(now);
    const own = b.wait(cost);
    if (own > 0) {
      this.counters.limited++;
      return { ok: false, retryAfterMs: own, scope: "requester" };
    }
    const all = this.global?.wait(cost) ?? 0;
    if (all > 0) {
      this.counters.limited++;
      return { ok: false, retryAfterMs: all, scope: "global" };
    }
    b.tokens -= cost;
    if (this.global) this.global.tokens -= cost;
    this.counters.allowed++;
    return { ok: true };
  }

  stats(): { allowed: number; limited: number; requesters: number } {
    return { ...this.counters, requesters: this.buckets.size };
  }
}

/** The error a limited request is answered with (kind "in-progress", details.reason "rate-limited"). */
export function rateLimitedError(
  subject: string,
  requester: string,
  d: Extract<RateDecision, { ok: false }>,
) {
  return new CxlrcError(
    "in-progress",
    `${subject}: too many requests from ${requester}${d.scope === "global" ? " (all requesters together)" : ""}; retry in ${d.retryAfterMs} ms`,
    { reason: "rate-limited", requester, scope: d.scope, retryAfterMs: d.retryAfterMs },
  );
}
