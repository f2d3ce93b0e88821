import { describe, expect, it } from "vitest";
import { checkInvariants } from "../../machines/invariants.ts";
import {
  CONTEXT_KEYS_MAX,
  type LifecycleEmitted,
  type LifecycleInput,
} from "../../machines/lifecycle-types.ts";
import { DEFAULT_POLICY } from "../../machines/policy/defaults.ts";
import { CxlrcError } from "../../shared/errors.ts";
import {
  type ActorName,
  BDF,
  BRIDGE,
  facts,
  guards,
  HANG,
  HOST,
  harness,
  reqEvent,
  request,
  SIBLING,
  settle,
  statesEntered,
} from "./builders.ts";

const ofType = <T extends LifecycleEmitted["type"]>(events: LifecycleEmitted[], type: T) =>
  events.filter((e): e is Extract<LifecycleEmitted, { type: T }> => e.type === type);

/** Start, probe, and wait in ready. */
async function readyHarness(opts: Parameters<typeof harness>[0] = {}, input: Partial<LifecycleInput> = {}) {
  const h = harness(opts);
  const actor = h.start(input);
  await settle();
  expect(actor.getSnapshot().value).toBe("ready");
  h.events.length = 0;
  h.calls.length = 0;
  return { h, actor };
}

describe("binding and probing", () => {
  it("binds, probes and waits in ready with the facts", async () => {
    const h = harness();
    const actor = h.start();
    await settle();
    expect(statesEntered(h.events)).toEqual(["binding", "probing", "ready"]);
    expect(actor.getSnapshot().context.facts?.bdf).toBe(BDF);
    expect(h.callsTo("probeDevice")[0]?.input.opId).toBe(`${HOST}/${BDF}/1/probing/0`);
  });

  it("a failed probe leaves the device unavailable until PROBE; requests meanwhile are refused", async () => {
    const h = harness({ script: { probeDevice: [new Error("agent down")] } });
    const actor = h.start();
    await settle();
    expect(actor.getSnapshot().value).toBe("unavailable");
    const req = request();
    actor.send(reqEvent(req));
    expect(ofType(h.events, "refused").at(-1)?.refusal.reason).toBe("device-unavailable");
    actor.send({ type: "PROBE" });
    await settle();
    expect(actor.getSnapshot().value).toBe("ready");
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });
});

describe("a successful reset", () => {
  it("io scope: FLR, PCI config restore, verify that CXL state survived", async () => {
    const { h, actor } = await readyHarness();
    const req = request({ scope: "io" });
    actor.send(reqEvent(req));
    await settle();
    expect(h.types()).toEqual([
      "request.received",
      "plan",
      "image.persisted",
      "reset.started",
      "reset.completed",
      "verify.passed",
      "verified",
    ]);
    expect(statesEntered(h.events)).toEqual([
      "planning",
      "gating",
      "savingImage",
      "persistingImage",
      "regating",
      "quiescing",
      "resetting",
      "awaitingReady",
      "restoring",
      "verifying",
      "releasing",
      "ready",
    ]);
    expect(h.callsTo("resetDevice")[0]?.input).toMatchObject({
      method: "flr",
      opId: `${req.requestId}/resetting/0`,
    });
    expect(h.callsTo("restoreDevice")[0]?.input).toMatchObject({
      scope: "io",
      image: { key: `image.${req.requestId}` },
    });
    expect(h.callsTo("verifyDevice")[0]?.input.scope).toBe("io");
    expect(h.callsTo("commitDecoders")).toHaveLength(0);
    expect(h.callsTo("releaseDevice")[0]?.input.outcome).toBe("verified");
    const ctx = actor.getSnapshot().context;
    expect(ctx).toMatchObject({
      outcome: "verified",
      run: { persisted: true, leaseHeld: false },
      image: { revision: 7 },
    });
    expect(ctx.timings.map((t) => t.phase)).toContain("resetting");
    expect(ctx.timings.every((t) => t.endMs !== null)).toBe(true);
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });

  it("full scope by CXL Reset: cache flush, Mem Clr, full restore, decoder commits, verify", async () => {
    const f = facts({ cacheCapable: true, cacheEnabled: true, wbInvCapable: true, memClrCapable: true });
    const { h, actor } = await readyHarness({ facts: f });
    actor.send(reqEvent(request({ scope: "full", memClear: true })));
    await settle();
    expect(h.callsTo("quiesceDevice")[0]?.input).toMatchObject({
      scope: "full",
      cacheFlush: true,
      cacheFlushTimeoutMs: 1000,
    });
    expect(h.callsTo("resetDevice")[0]?.input).toMatchObject({
      method: "cxl",
      memClear: true,
      targets: [BDF],
    });
    expect(h.callsTo("restoreDevice")[0]?.input.scope).toBe("full");
    expect(h.callsTo("commitDecoders")[0]?.input.commitTimeoutMs).toBe(DEFAULT_POLICY.commitTimeoutMs);
    expect(ofType(h.events, "decoder.committed").map((e) => e.decoder.index)).toEqual([0]);
    expect(ofType(h.events, "verified")[0]).toMatchObject({ scope: "full", method: "cxl", repaired: false });
    expect(actor.getSnapshot().value).toBe("ready");
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });

  it("full scope by SBR with the siblings included: each saved, reset through the bridge, restored", async () => {
    const f = facts({ cxlResetCapable: false, siblings: [SIBLING] });
    const { h, actor } = await readyHarness({ facts: f });
    actor.send(reqEvent(request({ scope: "full", includeSiblings: true })));
    await settle();
    expect(h.callsTo("saveImage")[0]?.input.targets).toEqual([BDF, SIBLING]);
    expect(h.callsTo("resetDevice")[0]?.input).toMatchObject({
      method: "sbr",
      bridge: BRIDGE,
      unmaskSbr: true,
      targets: [BDF, SIBLING],
    });
    expect(h.callsTo("restoreDevice")[0]?.input.targets).toEqual([BDF, SIBLING]);
    expect(actor.getSnapshot().context.outcome).toBe("verified");
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });

  it("escalates io to full only with the opt-in, and says so in the plan", async () => {
    const { h, actor } = await readyHarness({ facts: facts({ flrCapable: false }) });
    actor.send(reqEvent(request({ scope: "io", allowEscalation: true })));
    await settle();
    expect(ofType(h.events, "plan")[0]?.plan).toMatchObject({
      escalated: true,
      scope: "full",
      method: "cxl",
    });
    expect(ofType(h.events, "reset.started")[0]?.scope).toBe("full");
    expect(actor.getSnapshot().context.outcome).toBe("verified");
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });
});

describe("refusals touch nothing", () => {
  it("a plan refusal (flr-unsupported) goes straight back to ready", async () => {
    const { h, actor } = await readyHarness({ facts: facts({ flrCapable: false }) });
    actor.send(reqEvent(request({ scope: "io" })));
    await settle();
    expect(ofType(h.events, "refused")[0]?.refusal.reason).toBe("flr-unsupported");
    expect(h.calls).toHaveLength(0);
    expect(actor.getSnapshot().value).toBe("ready");
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });

  it("the coordinator's gate (cooldown under CAS) refuses; no lease to release", async () => {
    const refusal = {
      kind: "refusal",
      requestId: "x",
      host: HOST,
      bdf: BDF,
      reason: "cooldown",
      message: "budget spent",
      details: {},
      gates: [],
    };
    const { h, actor } = await readyHarness({ script: { acquireDevice: [{ granted: false, refusal }] } });
    actor.send(reqEvent(request({ scope: "full" })));
    await settle();
    expect(ofType(h.events, "refused")[0]?.refusal.reason).toBe("cooldown");
    // The gates the plan passed come with the refusal (the step's input does not carry the plan).
    const planned = ofType(h.events, "plan")[0]?.plan.gates ?? [];
    expect(planned.length).toBeGreaterThan(0);
    expect(ofType(h.events, "refused")[0]?.refusal.gates).toEqual(planned);
    expect(h.calls.map((c) => c.src)).toEqual(["acquireDevice"]);
    expect(h.calls[0]?.input).not.toHaveProperty("plan");
    expect(actor.getSnapshot().value).toBe("ready");
  });

  it("a save that fails refuses (write-ahead) and releases the lease", async () => {
    const { h, actor } = await readyHarness({ script: { saveImage: [new CxlrcError("backend", "EIO")] } });
    actor.send(reqEvent(request({ scope: "full" })));
    await settle();
    expect(ofType(h.events, "refused")[0]?.refusal).toMatchObject({ reason: "save-failed" });
    expect(h.callsTo("quiesceDevice")).toHaveLength(0);
    expect(h.callsTo("releaseDevice")[0]?.input.outcome).toBe("refused");
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });

  it("the re-check under the lease refuses when a holder opened the device after planning", async () => {
    const busy = facts({ holders: [{ kind: "vfio-group", detail: "/dev/vfio/9" }] });
    const { h, actor } = await readyHarness({ script: { recheckGates: [busy] } });
    actor.send(reqEvent(request({ scope: "full" })));
    await settle();
    expect(ofType(h.events, "refused")[0]?.refusal.reason).toBe("device-busy");
    expect(ofType(h.events, "image.persisted")).toHaveLength(1);
    expect(h.callsTo("quiesceDevice")).toHaveLength(0);
    expect(h.callsTo("releaseDevice")).toHaveLength(1);
    expect(actor.getSnapshot().value).toBe("ready");
  });

  it("a request while another runs is refused in-progress and the running one is untouched", async () => {
    const { h, actor } = await readyHarness({ script: { resetDevice: [HANG] } });
    const first = request({ scope: "full" });
    actor.send(reqEvent(first));
    await settle();
    expect(actor.getSnapshot().value).toBe("resetting");
    const second = request({ scope: "io" });
    actor.send(reqEvent(second));
    const refused = ofType(h.events, "refused");
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({
      requestId: second.requestId,
      refusal: { reason: "in-progress", details: { activeRequestId: first.requestId } },
    });
    expect(refused[0]?.refusal.message).toContain(first.requestId);
    expect(actor.getSnapshot().value).toBe("resetting");
    expect(actor.getSnapshot().context.request?.requestId).toBe(first.requestId);
  });

  it("a request while the last one is still releasing is refused in-progress; before probing, unavailable", async () => {
    const { h, actor } = await readyHarness({ script: { releaseDevice: [HANG] } });
    actor.send(reqEvent(request({ scope: "io" })));
    await settle();
    expect(actor.getSnapshot().value).toBe("releasing");
    actor.send(reqEvent(request()));
    expect(ofType(h.events, "refused").at(-1)?.refusal.reason).toBe("in-progress");

    const early = harness({ script: { bindDevice: [HANG] } });
    const binding = early.start();
    binding.send(reqEvent(request()));
    expect(ofType(early.events, "refused")[0]?.refusal.reason).toBe("device-unavailable");
  });

  it("a dry run plans and reports, and calls no actor", async () => {
    const { h, actor } = await readyHarness();
    actor.send(reqEvent(request({ scope: "full", dryRun: true })));
    await settle();
    expect(h.types()).toEqual(["request.received", "plan", "planned"]);
    expect(ofType(h.events, "plan")[0]?.plan.dryRun).toBe(true);
    expect(h.calls).toHaveLength(0);
    expect(actor.getSnapshot().value).toBe("ready");
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });
});

describe("scope violation", () => {
  const violation = {
    passed: false,
    mismatches: [{ field: "dvsec.control.mem_enable", expected: 1, actual: 0 }],
  };

  it("an io reset that changed CXL state is published, repaired by a full restore + verify, and counted", async () => {
    const { h, actor } = await readyHarness({ script: { verifyDevice: [violation] } });
    const req = request({ scope: "io" });
    actor.send(reqEvent(req));
    await settle();
    expect(ofType(h.events, "scope.violation")[0]).toMatchObject({
      fields: [{ field: "dvsec.control.mem_enable" }],
      count: 1,
    });
    expect(h.callsTo("restoreDevice").map((c) => [c.input.scope, c.input.opId])).toEqual([
      ["io", `${req.requestId}/restoring/0`],
      ["full", `${req.requestId}/restoring/1`],
    ]);
    expect(h.callsTo("commitDecoders")).toHaveLength(1);
    expect(h.callsTo("verifyDevice").map((c) => c.input.scope)).toEqual(["io", "full"]);
    expect(ofType(h.events, "verified")[0]?.repaired).toBe(true);
    expect(actor.getSnapshot().context.scopeViolations).toBe(1);
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });

  it("reaching the policy's threshold quarantines the device after the repair", async () => {
    const { h, actor } = await readyHarness(
      { script: { verifyDevice: [violation] } },
      { scopeViolations: 1 },
    );
    actor.send(reqEvent(request({ scope: "io" })));
    await settle();
    expect(ofType(h.events, "quarantined")[0]?.reason).toMatch(/2 scope violation/);
    expect(actor.getSnapshot().value).toBe("quarantined");
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });

  it("a PCI-only mismatch after an io restore is a restore failure, not a violation: retried", async () => {
    const pci = { passed: false, mismatches: [{ field: "command", area: "pci" as const }] };
    const { h, actor } = await readyHarness({ script: { verifyDevice: [pci] } });
    actor.send(reqEvent(request({ scope: "io" })));
    await settle();
    expect(ofType(h.events, "scope.violation")).toHaveLength(0);
    expect(ofType(h.events, "step.failed")[0]).toMatchObject({
      willRetry: true,
      error: { kind: "verify-mismatch" },
    });
    expect(h.callsTo("restoreDevice").map((c) => c.input.scope)).toEqual(["io", "io"]);
    expect(actor.getSnapshot().context.outcome).toBe("verified");
  });
});

describe("failure: retry the restore once, then quarantine", () => {
  it("a commit error twice quarantines; the device refuses resets until an operator releases it", async () => {
    const err = new CxlrcError("commit-error", "decoder 0: Error Not Committed");
    const { h, actor } = await readyHarness({ script: { commitDecoders: [err, err] } });
    const req = request({ scope: "full" });
    actor.send(reqEvent(req));
    await settle();
    expect(ofType(h.events, "step.failed").map((e) => [e.phase, e.error.kind, e.willRetry])).toEqual([
      ["committingDecoders", "commit-error", true],
      ["committingDecoders", "commit-error", false],
    ]);
    expect(h.callsTo("commitDecoders").map((c) => c.input.opId)).toEqual([
      `${req.requestId}/committingDecoders/0`,
      `${req.requestId}/committingDecoders/1`,
    ]);
    expect(ofType(h.events, "quarantined")[0]?.error?.kind).toBe("commit-error");
    expect(h.callsTo("releaseDevice")[0]?.input.outcome).toBe("quarantined");
    expect(actor.getSnapshot().value).toBe("quarantined");

    const next = request({ scope: "io" });
    actor.send(reqEvent(next));
    expect(ofType(h.events, "refused").at(-1)).toMatchObject({
      requestId: next.requestId,
      refusal: { reason: "quarantined" },
    });
    expect(actor.getSnapshot().value).toBe("quarantined");

    // A release whose restore did not verify: still quarantined, now for that reason (an event, not an edit).
    actor.send({ type: "RELEASE_FAILED", reason: "the last known good image did not verify" });
    expect(actor.getSnapshot().value).toBe("quarantined");
    expect(actor.getSnapshot().context.quarantineReason).toBe("the last known good image did not verify");

    actor.send({ type: "RELEASE", operator: "alice", reason: "replaced the card" });
    await settle();
    expect(actor.getSnapshot().context.quarantineReason).toBeNull();
    expect(ofType(h.events, "released")[0]).toMatchObject({ operator: "alice" });
    expect(actor.getSnapshot().value).toBe("ready");
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });

  it("a commit error once is retried from the image and verified", async () => {
    const { h, actor } = await readyHarness({ script: { commitDecoders: [new Error("timeout")] } });
    actor.send(reqEvent(request({ scope: "full" })));
    await settle();
    expect(h.callsTo("restoreDevice")).toHaveLength(2);
    expect(actor.getSnapshot().context.outcome).toBe("verified");
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });

  it("a Reset Error is restored from the image; the request failed, the device is back and ready", async () => {
    const { h, actor } = await readyHarness({
      script: { resetDevice: [new CxlrcError("reset-error", "Reset Error set")] },
    });
    actor.send(reqEvent(request({ scope: "full" })));
    await settle();
    expect(ofType(h.events, "reset.completed")).toHaveLength(0);
    expect(h.callsTo("restoreDevice")[0]?.input).toMatchObject({ scope: "full", round: 1 });
    expect(ofType(h.events, "failed")[0]).toMatchObject({ recovered: true, error: { kind: "reset-error" } });
    expect(actor.getSnapshot().value).toBe("ready");
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });

  it("with restoreRetries 0 the first failure quarantines", async () => {
    const { h, actor } = await readyHarness({
      script: { restoreDevice: [new Error("write failed")] },
      policy: { restoreRetries: 0 },
    });
    actor.send(reqEvent(request({ scope: "full" })));
    await settle();
    expect(h.callsTo("restoreDevice")).toHaveLength(1);
    expect(actor.getSnapshot().value).toBe("quarantined");
  });
});

describe("time budgets (declared by the machine, counted by the effect from the step's start)", () => {
  it("an agent silent past the reset budget takes the failure path", async () => {
    const { h, actor } = await readyHarness({ script: { resetDevice: [HANG] } });
    actor.send(reqEvent(request({ scope: "full" })));
    await settle();
    const budget = actor.getSnapshot().context.plan!.deadlines.phasesMs.resetting;
    expect(h.armed.at(-1)).toMatchObject({ src: "resetDevice", timeoutMs: budget });
    h.clock.advance(budget - 1);
    await settle();
    expect(actor.getSnapshot().value).toBe("resetting");
    h.clock.advance(1);
    await settle();
    expect(ofType(h.events, "step.failed")[0]).toMatchObject({
      phase: "resetting",
      error: { kind: "timeout" },
    });
    expect(actor.getSnapshot().context.outcome).toBe("failed");
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });

  it("every step carries its phase's budget from the plan (binding and probing: the agent call's)", async () => {
    const h = harness();
    const actor = h.start();
    await settle();
    for (const src of ["bindDevice", "probeDevice"] as const) {
      expect(h.callsTo(src)[0]?.input.timeoutMs, src).toBe(DEFAULT_POLICY.agentCallTimeoutMs);
    }
    actor.send(reqEvent(request({ scope: "full" })));
    await settle();
    expect(actor.getSnapshot().value).toBe("ready");
    const plan = ofType(h.events, "plan")[0]!.plan;
    const phaseOf: Record<string, keyof typeof plan.deadlines.phasesMs> = {
      acquireDevice: "gating",
      saveImage: "savingImage",
      persistImage: "persistingImage",
      recheckGates: "regating",
      quiesceDevice: "quiescing",
      resetDevice: "resetting",
      awaitReady: "awaitingReady",
      restoreDevice: "restoring",
      commitDecoders: "committingDecoders",
      verifyDevice: "verifying",
    };
    for (const [src, phase] of Object.entries(phaseOf)) {
      const call = h.callsTo(src as ActorName)[0];
      expect(call?.input.timeoutMs, src).toBe(plan.deadlines.phasesMs[phase]);
    }
  });
});

describe("the context's shape", () => {
  it("keeps at most CONTEXT_KEYS_MAX top-level fields in every state of a reset, repair and retry included", async () => {
    // XState copies the context on every assign; past about 19 top-level fields V8 makes each copy a hash table
    // (lifecycle-types.ts LifecycleContext). A field added at the top level instead of in a group fails here.
    const mismatch = { field: "hdm.0.ctrl", area: "hdm" as const, expected: "1", actual: "0" };
    const { h, actor } = await readyHarness({
      script: {
        verifyDevice: [{ passed: false, mismatches: [mismatch] }, new Error("verify read failed")],
      },
    });
    const sizes = new Set<number>();
    actor.subscribe((snap) => sizes.add(Object.keys(snap.context).length));
    actor.send(reqEvent(request({ scope: "io" })));
    await settle();
    expect(statesEntered(h.events)).toEqual(expect.arrayContaining(["repairing", "restoring", "ready"]));
    expect(ofType(h.events, "step.failed").length).toBeGreaterThan(0);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(CONTEXT_KEYS_MAX);
  });
});

describe("persisted snapshot restored mid-reset", () => {
  async function midReset() {
    const { h, actor } = await readyHarness({ script: { resetDevice: [HANG] } });
    const req = request({ scope: "full" });
    actor.send(reqEvent(req));
    await settle();
    expect(actor.getSnapshot().value).toBe("resetting");
    h.clock.advance(30);
    const snapshot = JSON.parse(JSON.stringify(actor.getPersistedSnapshot()));
    actor.stop();
    return { h, req, snapshot, budget: actor.getSnapshot().context.plan!.deadlines.phasesMs.resetting };
  }

  it("continues with the same operation id and the step's whole budget", async () => {
    const { h: before, req, snapshot, budget } = await midReset();
    const after = harness({ clock: before.clock });
    const actor = after.start({}, snapshot);
    await settle();
    expect(after.callsTo("resetDevice")[0]?.input.opId).toBe(`${req.requestId}/resetting/0`);
    expect(after.callsTo("resetDevice")[0]?.input.timeoutMs).toBe(budget);
    expect(after.types()).toEqual(["reset.completed", "decoder.committed", "verify.passed", "verified"]);
    expect(actor.getSnapshot().value).toBe("ready");
    expect(checkInvariants([...before.events, ...after.events], { complete: true })).toEqual([]);
  });

  it("time spent with nobody running the device does not count: the re-run step starts its budget again", async () => {
    const { h: before, snapshot, budget } = await midReset();
    before.clock.advance(budget * 3);
    const after = harness({ clock: before.clock, script: { resetDevice: [HANG] } });
    const actor = after.start({}, snapshot);
    await settle();
    after.clock.advance(budget - 1);
    await settle();
    expect(actor.getSnapshot().value).toBe("resetting");
    after.clock.advance(1);
    await settle();
    expect(ofType(after.events, "step.failed")[0]?.error.kind).toBe("timeout");
    expect(actor.getSnapshot().context.outcome).toBe("failed");
  });
});

describe("guards snapshot from the coordinator", () => {
  it("is used for planning: an open breaker refuses before any actor runs", async () => {
    const { h, actor } = await readyHarness();
    const g = guards({
      breaker: { status: "open", outcomes: [], openedAtMs: 1, reason: "too many", closedBy: null },
    });
    actor.send(reqEvent(request(), g));
    await settle();
    expect(ofType(h.events, "refused")[0]?.refusal.reason).toBe("breaker-open");
    expect(h.calls).toHaveLength(0);
  });
});
