import { describe, expect, it } from "vitest";
import {
  breakerSample,
  closeBreaker,
  closedBreaker,
  isBreakerOpen,
  recordOutcome,
} from "../../machines/policy/breaker.ts";
import { checkBudget, emptyBudget, recordAttempt } from "../../machines/policy/budget.ts";
import {
  acquireSlots,
  checkSlots,
  emptyConcurrency,
  releaseSlots,
} from "../../machines/policy/concurrency.ts";
import { DEFAULT_POLICY, type Policy } from "../../machines/policy/defaults.ts";
import { T0 } from "./builders.ts";

const MIN = 60_000;

describe("attempt budget with cooldown", () => {
  const policy: Policy = {
    ...DEFAULT_POLICY,
    maxAttemptsPerWindow: 3,
    attemptWindowMs: 60 * MIN,
    cooldownMs: 10 * MIN,
  };

  it("allows N attempts per window, then cools down from the last one", () => {
    let b = emptyBudget();
    for (let i = 0; i < 3; i++) {
      expect(checkBudget(b, policy, T0 + i).allowed).toBe(true);
      b = recordAttempt(b, policy, T0 + i);
    }
    const spent = checkBudget(b, policy, T0 + 3);
    expect(spent).toEqual({ allowed: false, untilMs: T0 + 2 + 10 * MIN, attemptsInWindow: 3 });
  });

  it("after the cooldown, the window still holds the budget until the oldest attempt ages out", () => {
    let b = emptyBudget();
    for (let i = 0; i < 3; i++) b = recordAttempt(b, policy, T0 + i * MIN);
    const afterCooldown = T0 + 2 * MIN + 10 * MIN + 1;
    expect(checkBudget(b, policy, afterCooldown)).toMatchObject({ allowed: false, untilMs: T0 + 60 * MIN });
    expect(checkBudget(b, policy, T0 + 60 * MIN + 1)).toMatchObject({ allowed: true, remaining: 1 });
  });

  it("drops attempts that left the window", () => {
    const b = recordAttempt(recordAttempt(emptyBudget(), policy, T0), policy, T0 + 61 * MIN);
    expect(b.attemptsMs).toEqual([T0 + 61 * MIN]);
    expect(b.cooldownUntilMs).toBeNull();
  });
});

describe("fleet circuit breaker", () => {
  const policy: Policy = {
    ...DEFAULT_POLICY,
    breakerWindowMs: 30 * MIN,
    breakerFailureRatio: 0.5,
    breakerMinSamples: 4,
  };
  const feed = (s = closedBreaker(), results: boolean[], at = T0) =>
    results.reduce((acc, failed, i) => recordOutcome(acc, policy, at + i, failed), s);

  it("does not open below the minimum number of samples, even when all failed", () => {
    expect(isBreakerOpen(feed(undefined, [true, true, true]))).toBe(false);
  });

  it("opens when the failure ratio in the window reaches the threshold with enough samples", () => {
    const s = feed(undefined, [false, true, false, true]);
    expect(isBreakerOpen(s)).toBe(true);
    expect(s.reason).toMatch(/2 of 4/);
    expect(isBreakerOpen(feed(undefined, [false, false, false, true]))).toBe(false);
  });

  it("counts only outcomes inside the window", () => {
    const old = feed(undefined, [true, true, true], T0 - 31 * MIN);
    expect(isBreakerOpen(recordOutcome(old, policy, T0, false))).toBe(false);
  });

  it("never closes by itself: not by time passing, not by successes", () => {
    let s = feed(undefined, [true, true, true, true]);
    s = feed(s, [false, false, false, false, false, false, false, false], T0 + 2 * 60 * MIN);
    expect(isBreakerOpen(s)).toBe(true);
  });

  it("closes by operator action, and old failures do not reopen it at once", () => {
    const open = feed(undefined, [true, true, true, true]);
    const closed = closeBreaker(open, "alice", T0 + 10);
    expect(closed).toMatchObject({ status: "closed", closedBy: { operator: "alice", atMs: T0 + 10 } });
    expect(isBreakerOpen(recordOutcome(closed, policy, T0 + 11, true))).toBe(false);
  });

  it("refusals and dry runs are not samples; failed and quarantined are failures", () => {
    expect(breakerSample("refused")).toBeNull();
    expect(breakerSample("planned")).toBeNull();
    expect(breakerSample("verified")).toBe("success");
    expect(breakerSample("failed")).toBe("failure");
    expect(breakerSample("quarantined")).toBe("failure");
  });
});

describe("concurrency per host and per switch", () => {
  const policy: Policy = {
    ...DEFAULT_POLICY,
    maxConcurrentPerHost: 2,
    maxConcurrentPerSwitch: 1,
    busyRetryAfterMs: 5000,
  };

  it("limits per host and per switch, naming what is in flight", () => {
    let s = emptyConcurrency();
    const a = acquireSlots(s, policy, { requestId: "a", host: "h", switchId: "sw" });
    if (!a.ok) throw new Error("a should get a slot");
    s = a.state;
    expect(checkSlots(s, policy, { requestId: "b", host: "h", switchId: "sw" })).toEqual({
      ok: false,
      reason: "switch-busy",
      inFlight: ["a"],
      retryAfterMs: 5000,
    });
    const b = acquireSlots(s, policy, { requestId: "b", host: "h", switchId: null });
    if (!b.ok) throw new Error("b should get a slot");
    expect(checkSlots(b.state, policy, { requestId: "c", host: "h", switchId: null })).toMatchObject({
      ok: false,
      reason: "host-busy",
      inFlight: ["a", "b"],
    });
  });

  it("acquiring again for the same request is idempotent; release frees the slots", () => {
    const first = acquireSlots(emptyConcurrency(), policy, { requestId: "a", host: "h", switchId: "sw" });
    if (!first.ok) throw new Error("first");
    const again = acquireSlots(first.state, policy, { requestId: "a", host: "h", switchId: "sw" });
    if (!again.ok) throw new Error("again");
    expect(again.state).toEqual({ hosts: { h: ["a"] }, switches: { sw: ["a"] } });
    expect(releaseSlots(again.state, "a")).toEqual({ hosts: {}, switches: {} });
  });
});
