import { describe, expect, it } from "vitest";
import { closedBreaker, recordOutcome } from "../../machines/policy/breaker.ts";
import { emptyBudget, recordAttempt } from "../../machines/policy/budget.ts";
import { DEFAULT_POLICY } from "../../machines/policy/defaults.ts";
import { regate } from "../../machines/policy/gates.ts";
import { isRefusal, planReset } from "../../machines/policy/plan.ts";
import type { Plan, Refusal } from "../../machines/policy/types.ts";
import { BDF, BRIDGE, facts, HOST, policyCtx, request, SIBLING, T0 } from "./builders.ts";

function plan(...args: Parameters<typeof planReset>): Plan {
  const r = planReset(...args);
  if (isRefusal(r)) throw new Error(`expected a plan, got refusal ${r.reason}: ${r.message}`);
  return r;
}
function refusal(...args: Parameters<typeof planReset>): Refusal {
  const r = planReset(...args);
  if (!isRefusal(r)) throw new Error(`expected a refusal, got a ${r.scope} plan by ${r.method}`);
  return r;
}

describe("io scope", () => {
  it("is an FLR of the one function, with no decoder commit step", () => {
    const p = plan(request({ scope: "io" }), facts({ functions: [BDF, SIBLING] }), policyCtx());
    expect(p).toMatchObject({ scope: "io", method: "flr", escalated: false, targets: [BDF] });
    expect(p.functions).toEqual([BDF, SIBLING]);
    expect(p.steps).not.toContain("committingDecoders");
    expect(p.steps.indexOf("persistingImage")).toBeLessThan(p.steps.indexOf("resetting"));
  });

  it("refuses flr-unsupported when the function has no FLR and escalation is not allowed", () => {
    const r = refusal(request({ scope: "io" }), facts({ flrCapable: false }), policyCtx());
    expect(r.reason).toBe("flr-unsupported");
    expect(r.message).toMatch(/FLR/);
  });

  it("escalates to full scope only with allowEscalation, and the plan says so", () => {
    const p = plan(
      request({ scope: "io", allowEscalation: true }),
      facts({ flrCapable: false }),
      policyCtx(),
    );
    expect(p).toMatchObject({ requestedScope: "io", scope: "full", method: "cxl", escalated: true });
    expect(p.escalationReason).toMatch(/allowEscalation/);
    expect(p.notes).toContain(p.escalationReason);
    expect(p.steps).toContain("committingDecoders");
  });

  it("does not escalate when FLR is there, even if allowed", () => {
    const p = plan(request({ scope: "io", allowEscalation: true }), facts(), policyCtx());
    expect(p).toMatchObject({ scope: "io", method: "flr", escalated: false });
  });

  it("refuses an explicit full-scope method on an io request", () => {
    expect(refusal(request({ scope: "io", method: "cxl" }), facts(), policyCtx()).reason).toBe("bad-request");
  });

  it("applies full-scope gates to an escalated plan", () => {
    const f = facts({ flrCapable: false, holders: [{ kind: "process", detail: "pid 42 (qemu)", pid: 42 }] });
    const r = refusal(request({ scope: "io", allowEscalation: true }), f, policyCtx());
    expect(r.reason).toBe("device-busy");
  });
});

describe("full scope: method choice", () => {
  it("prefers CXL Reset and covers every function of the device", () => {
    const p = plan(request({ scope: "full" }), facts({ functions: [BDF, SIBLING] }), policyCtx());
    expect(p).toMatchObject({ method: "cxl", targets: [BDF, SIBLING], bridge: null, unmaskSbr: false });
  });

  it("falls back to SBR through the bridge, unmasking SBR on a CXL port", () => {
    const p = plan(request({ scope: "full" }), facts({ cxlResetCapable: false }), policyCtx());
    expect(p).toMatchObject({ method: "sbr", bridge: BRIDGE, unmaskSbr: true });
  });

  it("falls back to VFIO_DEVICE_RESET when bound to vfio-pci and nothing narrower exists", () => {
    const p = plan(
      request({ scope: "full" }),
      facts({ cxlResetCapable: false, bridge: null, vfioBound: true }),
      policyCtx(),
    );
    expect(p.method).toBe("vfio");
  });

  it("refuses no-full-reset-method when there is none", () => {
    const r = refusal(
      request({ scope: "full" }),
      facts({ cxlResetCapable: false, bridge: null }),
      policyCtx(),
    );
    expect(r.reason).toBe("no-full-reset-method");
  });

  it("honours an explicit method, or refuses it with the reason", () => {
    expect(plan(request({ scope: "full", method: "sbr" }), facts(), policyCtx()).method).toBe("sbr");
    const r = refusal(request({ scope: "full", method: "vfio" }), facts(), policyCtx());
    expect(r.reason).toBe("method-unsupported");
    expect(r.message).toMatch(/vfio-pci/);
  });
});

describe("memory clear", () => {
  it("is planned only with CXL Reset on a Mem Clr capable device", () => {
    expect(
      plan(request({ scope: "full", memClear: true }), facts({ memClrCapable: true }), policyCtx()).memClear,
    ).toBe(true);
    expect(refusal(request({ scope: "full", memClear: true }), facts(), policyCtx()).reason).toBe(
      "mem-clear-unsupported",
    );
    const sbr = request({ scope: "full", memClear: true, method: "sbr" });
    expect(refusal(sbr, facts({ memClrCapable: true }), policyCtx()).reason).toBe("mem-clear-unsupported");
  });
});

describe("device-busy (full scope)", () => {
  it("refuses when a committed decoder's host range is online, naming the range", () => {
    const f = facts({ memoryOnline: [{ base: "0x108000000", size: "0x1000000" }] });
    const r = refusal(request({ scope: "full" }), f, policyCtx());
    expect(r.reason).toBe("device-busy");
    expect(r.message).toContain("0x100000000-0x10fffffff");
  });

  it("passes when the online memory is elsewhere or the decoder is not committed", () => {
    const elsewhere = facts({ memoryOnline: [{ base: "0x200000000", size: "0x10000000" }] });
    expect(isRefusal(planReset(request({ scope: "full" }), elsewhere, policyCtx()))).toBe(false);
    const uncommitted = facts({
      memoryOnline: [{ base: "0x100000000", size: "0x10000000" }],
      decoders: [
        { index: 0, base: "0x100000000", size: "0x10000000", committed: false, lockOnCommit: false },
      ],
    });
    expect(isRefusal(planReset(request({ scope: "full" }), uncommitted, policyCtx()))).toBe(false);
  });

  it("names each holder (open VFIO group, driver in use, process)", () => {
    const f = facts({
      holders: [
        { kind: "vfio-group", detail: "/dev/vfio/12" },
        { kind: "driver", detail: "cxl_pci" },
      ],
    });
    const r = refusal(request({ scope: "full" }), f, policyCtx());
    expect(r.message).toContain("open VFIO group /dev/vfio/12");
    expect(r.message).toContain("driver cxl_pci in use");
  });

  it("does not apply to io scope, which keeps CXL.mem", () => {
    const f = facts({
      memoryOnline: [{ base: "0x100000000", size: "0x10000000" }],
      holders: [{ kind: "driver", detail: "x" }],
    });
    expect(plan(request({ scope: "io" }), f, policyCtx()).method).toBe("flr");
  });
});

describe("siblings (SBR)", () => {
  const sbrFacts = facts({ cxlResetCapable: false, siblings: [SIBLING] });

  it("refuses sibling-busy naming the siblings the plan does not include", () => {
    const r = refusal(request({ scope: "full" }), sbrFacts, policyCtx());
    expect(r.reason).toBe("sibling-busy");
    expect(r.message).toContain(SIBLING);
    expect(r.details).toEqual({ siblings: [SIBLING] });
  });

  it("with includeSiblings they join the plan as targets, each saved and restored", () => {
    const p = plan(request({ scope: "full", includeSiblings: true }), sbrFacts, policyCtx());
    expect(p.targets).toEqual([BDF, SIBLING]);
    expect(p.siblings).toEqual([SIBLING]);
  });

  it("an included sibling that is held makes the device busy", () => {
    const f = facts({
      ...sbrFacts,
      siblingHolders: { [SIBLING]: [{ kind: "process", detail: "pid 7 (fio)" }] },
    });
    const r = refusal(request({ scope: "full", includeSiblings: true }), f, policyCtx());
    expect(r.reason).toBe("device-busy");
    expect(r.message).toContain(`${SIBLING}: process pid 7 (fio)`);
  });

  it("CXL Reset does not reach siblings, so they do not block it", () => {
    expect(plan(request({ scope: "full" }), facts({ siblings: [SIBLING] }), policyCtx()).method).toBe("cxl");
  });
});

describe("guards", () => {
  it("in-progress when another request holds the lease; the same request may re-plan", () => {
    const req = request({ scope: "full" });
    expect(refusal(req, facts(), policyCtx({ activeRequestId: "other" })).reason).toBe("in-progress");
    expect(isRefusal(planReset(req, facts(), policyCtx({ activeRequestId: req.requestId })))).toBe(false);
  });

  it("cooldown when the attempt budget is spent, with the time it ends", () => {
    let budget = emptyBudget();
    for (let i = 0; i < DEFAULT_POLICY.maxAttemptsPerWindow; i++)
      budget = recordAttempt(budget, DEFAULT_POLICY, T0 - 1000);
    const r = refusal(request({ scope: "full" }), facts(), policyCtx({ budget }));
    expect(r.reason).toBe("cooldown");
    expect(r.retryAfterMs).toBe(DEFAULT_POLICY.cooldownMs - 1000);
    expect(r.message).toContain(new Date(T0 - 1000 + DEFAULT_POLICY.cooldownMs).toISOString());
  });

  it("breaker-open when the fleet breaker is open", () => {
    let breaker = closedBreaker();
    for (let i = 0; i < DEFAULT_POLICY.breakerMinSamples; i++)
      breaker = recordOutcome(breaker, DEFAULT_POLICY, T0, true);
    const r = refusal(request({ scope: "io" }), facts(), policyCtx({ breaker }));
    expect(r.reason).toBe("breaker-open");
    expect(r.message).toMatch(/operator/);
  });

  it("quarantined comes first, before anything the device cannot do", () => {
    const r = refusal(
      request({ scope: "io" }),
      facts({ flrCapable: false }),
      policyCtx({ quarantined: true }),
    );
    expect(r.reason).toBe("quarantined");
    expect(r.gates.find((g) => g.gate === "method")?.reason).toBe("flr-unsupported");
  });

  it("deadline-passed when the request's deadline is in the past; a malformed one is a bad request", () => {
    const past = request({ deadline: new Date(T0 - 1).toISOString() });
    expect(refusal(past, facts(), policyCtx()).reason).toBe("deadline-passed");
    const future = request({ deadline: new Date(T0 + 60_000).toISOString() });
    expect(isRefusal(planReset(future, facts(), policyCtx()))).toBe(false);
    expect(refusal(request({ deadline: "soon" }), facts(), policyCtx()).reason).toBe("bad-request");
  });

  it("host-busy and switch-busy refuse with retryAfterMs", () => {
    const hostFull = policyCtx({ concurrency: { hosts: { [HOST]: ["a", "b"] }, switches: {} } });
    const h = refusal(request(), facts(), hostFull);
    expect(h).toMatchObject({ reason: "host-busy", retryAfterMs: DEFAULT_POLICY.busyRetryAfterMs });
    const switchFull = policyCtx({ concurrency: { hosts: {}, switches: { "switch-1": ["x"] } } });
    const s = refusal(request(), facts(), switchFull);
    expect(s).toMatchObject({ reason: "switch-busy", retryAfterMs: DEFAULT_POLICY.busyRetryAfterMs });
    expect(s.message).toContain("x");
  });

  it("refuses facts for another device", () => {
    expect(refusal(request({ bdf: "0000:0e:00.0" }), facts(), policyCtx()).reason).toBe("bad-request");
  });

  it("a refusal lists every gate it evaluated (the dry-run report)", () => {
    const r = refusal(
      request({ scope: "full" }),
      facts({ holders: [{ kind: "driver", detail: "d" }] }),
      policyCtx(),
    );
    expect(r.gates.map((g) => g.gate)).toEqual(
      expect.arrayContaining([
        "quarantine",
        "deadline",
        "lease",
        "method",
        "breaker",
        "budget",
        "device-busy",
      ]),
    );
  });
});

describe("CONFIG_LOCK", () => {
  const locked = facts({ configLock: true });
  it("never refuses; CXL Reset keeps the lock and the locked fields (restore leaves them, verify reads them)", () => {
    const p = plan(request({ scope: "full" }), locked, policyCtx());
    expect(p.configLock).toBe("retained");
    expect(p.gates.find((g) => g.gate === "config-lock")).toMatchObject({ passed: true });
  });
  it("SBR clears it: restore rewrites the fields and relocks last; FLR does not touch it", () => {
    expect(plan(request({ scope: "full", method: "sbr" }), locked, policyCtx()).configLock).toBe(
      "relock-last",
    );
    expect(plan(request({ scope: "io" }), locked, policyCtx()).configLock).toBe("untouched");
    expect(plan(request({ scope: "full" }), facts(), policyCtx()).configLock).toBe("not-set");
  });
  it("Lock On Commit + Committed decoders are expected to be retained by CXL Reset only", () => {
    const f = facts({
      decoders: [
        { index: 0, base: "0x100000000", size: "0x10000000", committed: true, lockOnCommit: true },
        { index: 1, base: "0x110000000", size: "0x10000000", committed: true, lockOnCommit: false },
      ],
    });
    const cxl = plan(request({ scope: "full" }), f, policyCtx());
    expect(cxl.retainedDecoders).toEqual([0]);
    expect(cxl.committedDecoders).toEqual([0, 1]);
    expect(plan(request({ scope: "full", method: "sbr" }), f, policyCtx()).retainedDecoders).toEqual([]);
  });
});

describe("deadlines", () => {
  const P = DEFAULT_POLICY;
  it("CXL Reset waits max(declared, 100 ms) plus margin", () => {
    const short = plan(request({ scope: "full" }), facts({ cxlResetTimeoutMs: 10 }), policyCtx());
    expect(short.deadlines.resetWaitMs).toBe(100 + P.cxlResetMarginMs);
    // The device alone: its reset operation also restores, commits and verifies, and its budget holds them.
    const after =
      short.deadlines.phasesMs.restoring + short.deadlines.phasesMs.committingDecoders + P.verifyTimeoutMs;
    expect(short.deadlines.phasesMs.resetting).toBe(P.agentCallTimeoutMs + 100 + P.cxlResetMarginMs + after);
    // Other functions too: they are restored in their own steps, and the reset's budget is the reset's.
    const two = plan(
      request({ scope: "full" }),
      facts({ cxlResetTimeoutMs: 10, functions: [BDF, SIBLING] }),
      policyCtx(),
    );
    expect(two.deadlines.phasesMs.resetting).toBe(P.agentCallTimeoutMs + 100 + P.cxlResetMarginMs);
    const long = plan(request({ scope: "full" }), facts({ cxlResetTimeoutMs: 10_000 }), policyCtx());
    expect(long.deadlines.resetWaitMs).toBe(10_000 + P.cxlResetMarginMs);
  });

  it("a reserved timeout encoding waits 100 s and says so", () => {
    const p = plan(
      request({ scope: "full" }),
      facts({ cxlResetTimeoutMs: 100_000, cxlResetTimeoutReserved: true }),
      policyCtx(),
    );
    expect(p.deadlines.resetWaitMs).toBe(100_000 + P.cxlResetMarginMs);
    expect(p.notes.join(" ")).toMatch(/reserved/);
  });

  it("the cache flush is planned and budgeted only for a cache-enabled device in full scope", () => {
    const f = facts({ cacheCapable: true, cacheEnabled: true, wbInvCapable: true });
    const full = plan(request({ scope: "full" }), f, policyCtx());
    expect(full.cacheFlush).toBe(true);
    expect(full.deadlines.phasesMs.quiescing).toBe(P.agentCallTimeoutMs + P.cacheFlushTimeoutMs);
    const io = plan(request({ scope: "io" }), f, policyCtx());
    expect(io.cacheFlush).toBe(false);
    expect(io.deadlines.phasesMs.quiescing).toBe(P.agentCallTimeoutMs);
  });

  it("decoder commits are budgeted per decoder", () => {
    const p = plan(request({ scope: "full" }), facts(), policyCtx());
    expect(p.deadlines.commitPerDecoderMs).toBe(20);
    expect(p.deadlines.phasesMs.committingDecoders).toBe(P.agentCallTimeoutMs + 20);
  });
});

describe("regate (right before the device is touched)", () => {
  it("passes on unchanged facts", () => {
    const p = plan(request({ scope: "full" }), facts(), policyCtx());
    expect(regate(p, facts(), T0)).toBeNull();
  });
  it("refuses device-busy when a holder opened the device since planning", () => {
    const p = plan(request({ scope: "full" }), facts(), policyCtx());
    const r = regate(p, facts({ holders: [{ kind: "vfio-group", detail: "/dev/vfio/3" }] }), T0);
    expect(r?.reason).toBe("device-busy");
  });
  it("refuses deadline-passed when the request's deadline passed since planning", () => {
    const p = plan(
      request({ scope: "full", deadline: new Date(T0 + 1000).toISOString() }),
      facts(),
      policyCtx(),
    );
    expect(regate(p, facts(), T0 + 999)).toBeNull();
    expect(regate(p, facts(), T0 + 1000)?.reason).toBe("deadline-passed");
  });
  it("refuses sibling-busy when a sibling appeared below the bridge (even with includeSiblings)", () => {
    const f = facts({ cxlResetCapable: false, siblings: [SIBLING] });
    const p = plan(request({ scope: "full", includeSiblings: true }), f, policyCtx());
    expect(regate(p, f, T0)).toBeNull();
    const r = regate(p, facts({ cxlResetCapable: false, siblings: [SIBLING, "0000:0d:00.2"] }), T0);
    expect(r?.reason).toBe("sibling-busy");
    expect(r?.message).toContain("0000:0d:00.2");
  });
});
