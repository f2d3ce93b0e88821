// The invariant checks must catch what they claim to: each bad trace below breaks exactly one rule.
import { describe, expect, it } from "vitest";
import { checkInvariants, type InvariantName } from "../../machines/invariants.ts";
import type { LifecycleEmitted } from "../../machines/lifecycle-types.ts";
import { planReset } from "../../machines/policy/plan.ts";
import type { Plan } from "../../machines/policy/types.ts";
import { BDF, facts, HOST, harness, policyCtx, reqEvent, request, settle } from "./builders.ts";

type Body = Record<string, unknown> & { type: string };
const ev = (requestId: string | null, body: Body): LifecycleEmitted =>
  ({ host: HOST, bdf: BDF, requestId, atMs: 0, ...body }) as LifecycleEmitted;

const req = request({ requestId: "r1", scope: "full" });
const plan = planReset(req, facts(), policyCtx()) as Plan;

/** A correct full-scope trace, piece by piece. */
const good = (): LifecycleEmitted[] => [
  ev("r1", { type: "request.received", request: req }),
  ev("r1", { type: "plan", plan, request: req }),
  ev("r1", { type: "state.entered", state: "savingImage" }),
  ev("r1", { type: "image.persisted", image: { key: "k", revision: 1 } }),
  ev("r1", { type: "state.entered", state: "resetting" }),
  ev("r1", { type: "reset.started", scope: "full", method: "cxl", targets: [BDF], memClear: false }),
  ev("r1", { type: "state.entered", state: "restoring" }),
  ev("r1", { type: "verify.passed", scope: "full", round: 0, result: { passed: true, mismatches: [] } }),
  ev("r1", { type: "verified", outcome: "verified", scope: "full", method: "cxl", repaired: false }),
  ev("r1", { type: "state.entered", state: "ready" }),
];

const names = (trace: LifecycleEmitted[], complete = true): InvariantName[] => [
  ...new Set(checkInvariants(trace, { complete }).map((v) => v.invariant)),
];

describe("invariants", () => {
  it("accept a correct trace", () => {
    expect(checkInvariants(good(), { complete: true })).toEqual([]);
  });

  it("catch a reset before the image is persisted", () => {
    const t = good().filter((e) => e.type !== "image.persisted");
    expect(names(t)).toEqual(["no-reset-before-persist"]);
  });

  it("catch ready after a reset without a passed verify (and success claimed without read-back)", () => {
    const t = good().filter((e) => e.type !== "verify.passed");
    expect(names(t)).toEqual(["no-ready-without-verify", "success-read-back"]);
  });

  it("catch success after a failed verify", () => {
    const t = good();
    t.splice(
      8,
      0,
      ev("r1", { type: "verify.failed", scope: "full", round: 0, mismatches: [{ field: "x" }] }),
    );
    expect(names(t)).toEqual(["success-read-back"]);
  });

  it("catch a verify.passed whose read-back did not pass", () => {
    const t = good().map((e) =>
      e.type === "verify.passed"
        ? { ...e, result: { passed: true, mismatches: [{ field: "decoder0.base" }] } }
        : e,
    );
    expect(names(t)).toEqual(["success-read-back"]);
  });

  it("catch an escalation without opt-in", () => {
    const ioReq = { ...req, scope: "io" as const };
    const t = good().map((e) => (e.type === "plan" ? { ...e, request: ioReq } : e));
    expect(names(t)).toEqual(["no-silent-escalation"]);
  });

  it("catch a reset wider than the plan", () => {
    const t = good().map((e) => (e.type === "reset.started" ? { ...e, scope: "io" as const } : e));
    expect(names(t)).toEqual(["no-silent-escalation"]);
  });

  it("catch a second outcome, a missing one, and activity after the outcome", () => {
    const twice = [...good(), ev("r1", { type: "refused", outcome: "refused", refusal: {} })];
    expect(names(twice)).toEqual(["one-outcome"]);
    const none = good().filter((e) => e.type !== "verified");
    expect(names(none, true)).toEqual(["one-outcome"]);
    expect(names(none, false)).toEqual([]);
    const after = [...good(), ev("r1", { type: "image.persisted", image: { key: "k", revision: 2 } })];
    expect(names(after)).toEqual(["one-outcome"]);
  });

  it("catch a dry run that touched the device", () => {
    const dry = { ...req, dryRun: true };
    const t = good().map((e) => (e.type === "request.received" ? { ...e, request: dry } : e));
    expect(names(t)).toEqual(["dry-run-touches-nothing"]);
  });

  it("catch an outcome said before the driver taken for the reset is back", () => {
    const handingBack = ev("r1", { type: "state.entered", state: "handingBack" });
    const rebound = ev("r1", { type: "driver.rebound", drivers: { [BDF]: "cxl_pci" }, verify: null });
    const t = good();
    const outcome = t.findIndex((e) => e.type === "verified");
    // In order: handed back, then the outcome.
    const ok = [...t.slice(0, outcome), handingBack, rebound, ...t.slice(outcome)];
    expect(checkInvariants(ok, { complete: true })).toEqual([]);
    // The outcome first, the hand-back after it; and the outcome while the hand-back has no result yet.
    const late = [...t.slice(0, outcome + 1), handingBack, rebound, ...t.slice(outcome + 1)];
    expect(names(late)).toEqual(["driver-back-before-outcome"]);
    const during = [...t.slice(0, outcome), handingBack, ...t.slice(outcome)];
    expect(names(during)).toEqual(["driver-back-before-outcome"]);
  });

  it("hold on a real run's events", async () => {
    const h = harness();
    const actor = h.start();
    await settle();
    actor.send(reqEvent(request({ scope: "full" })));
    await settle();
    expect(h.events.length).toBeGreaterThan(10);
    expect(checkInvariants(h.events, { complete: true })).toEqual([]);
  });
});
