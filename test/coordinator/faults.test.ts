// Failure paths: an FLR that wrongly clears HDM state (scope violation: detected, published, repaired by the
// full restore, counted, verified) and a decoder that will not commit (restore retried once, then
// quarantined; a new request is refused until an operator releases the device).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callAgent } from "../../shared/bus/client.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  control,
  kindsOf,
  probe,
  publishRequest,
  type RunningCoordinator,
  readEvents,
  rested,
  startWorld,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";

describe("faults", () => {
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "viol" }), simpleHost({ name: "commit" })]);
    c = await w.coordinator({ metricsPort: 0 });
  });
  afterAll(async () => {
    await w?.close();
  });

  it("scope violation: detected, published with the fields, repaired, counted, verified", async () => {
    const sim = w.sims.get("viol")!;
    const before = await probe(w.nc, "viol", BDF);
    sim.faults.set(BDF, { name: "flr-clears-hdm" });
    await publishRequest(w.js, { requestId: "viol-1", host: "viol", bdf: BDF, scope: "io", reason: "test" });
    const out = await c.handle.waitForOutcome("viol-1", 20_000);
    expect(out.outcome).toBe("verified");
    expect(out.repaired).toBe(true);
    expect(sim.counters(BDF).flr).toBe(1);

    const events = await readEvents(w.jsm, { requestId: "viol-1", source: "coordinator" });
    const kinds = events.map((e) => e.event.kind);
    expect(kinds.indexOf("verify.failed")).toBeLessThan(kinds.indexOf("scope.violation"));
    expect(kinds.indexOf("scope.violation")).toBeLessThan(kinds.lastIndexOf("verify.passed"));
    const violation = events.find((e) => e.event.kind === "scope.violation")!.event.data as {
      fields: Array<{ field: string; area: string }>;
      count: number;
    };
    expect(violation.count).toBe(1);
    expect(violation.fields.length).toBeGreaterThan(0);
    expect(violation.fields.every((f) => f.area === "cxl")).toBe(true);
    expect(violation.fields.some((f) => f.field.startsWith("decoder0."))).toBe(true);

    // Repaired: the decoders are back as they were.
    expect((await probe(w.nc, "viol", BDF)).decoders).toEqual(before.decoders);
    expect(await rested(c.handle, "viol", BDF)).toBe("ready");
    const dev = (await c.handle.status()).devices.find((d) => d.host === "viol");
    expect(dev?.scopeViolations).toBe(1);
    const text = await (await fetch(c.handle.metricsUrl!)).text();
    expect(text).toMatch(/^cxlrc_scope_violations_total 1$/m);
  });

  it("commit error: restore retried once, then quarantined; refused while quarantined; release → ready", async () => {
    const sim = w.sims.get("commit")!;
    sim.faults.set(BDF, { name: "commit-error", decoder: 0 });
    await publishRequest(w.js, {
      requestId: "commit-1",
      host: "commit",
      bdf: BDF,
      scope: "full",
      reason: "test",
    });
    const out = await c.handle.waitForOutcome("commit-1", 20_000);
    expect(out.outcome).toBe("quarantined");
    expect(out.message).toMatch(/restore from the image failed 2 time/);
    const events = await readEvents(w.jsm, { requestId: "commit-1", source: "coordinator" });
    const failures = events.filter((e) => e.event.kind === "step.failed").map((e) => e.event.data);
    expect(failures.map((f) => f.willRetry)).toEqual([true, false]);
    expect(failures.every((f) => (f.error as { kind: string }).kind === "commit-error")).toBe(true);
    expect(sim.counters(BDF).cxlReset).toBe(1); // the reset itself is never repeated
    expect(await rested(c.handle, "commit", BDF)).toBe("quarantined");

    await publishRequest(w.js, {
      requestId: "commit-2",
      host: "commit",
      bdf: BDF,
      scope: "io",
      reason: "test",
    });
    const refused = await c.handle.waitForOutcome("commit-2", 20_000);
    expect(refused.outcome).toBe("refused");
    expect(refused.refusal?.reason).toBe("quarantined");
    expect(sim.counters(BDF).flr).toBe(0);

    // Releasing needs an operator and a reason: a bad release names the field and changes nothing.
    const bad = await control(w.nc, subjects.release, { host: "commit", bdf: BDF });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error.message).toMatch(/operator/);
    expect((await c.handle.status()).devices.find((d) => d.host === "commit")?.state).toBe("quarantined");

    // The failed restore left the device disabled (Command = INTx Disable only). The operator fixes the
    // decoder and puts the device back from its last known good image, kept in the store, then releases it.
    sim.faults.clear(BDF);
    const img = await control<{ image: unknown; requestId: string }>(w.nc, subjects.image, {
      host: "commit",
      bdf: BDF,
    });
    if (!img.ok) throw new Error(img.error.message);
    expect(img.result.requestId).toBe("commit-1");
    await callAgent(
      w.nc,
      "commit",
      "restore",
      "operator-restore",
      { bdf: BDF, scope: "full", image: img.result.image },
      {
        timeoutMs: 5000,
      },
    );
    const rel = await control<{ state: string }>(w.nc, subjects.release, {
      host: "commit",
      bdf: BDF,
      operator: "sre-1",
      reason: "decoder fixed",
    });
    expect(rel.ok).toBe(true);
    if (rel.ok) expect(rel.result.state).toBe("ready");
    const released = await readEvents(w.jsm, { host: "commit", source: "coordinator" });
    expect(released.some((e) => e.event.kind === "released" && e.event.data.operator === "sre-1")).toBe(true);

    await publishRequest(w.js, {
      requestId: "commit-3",
      host: "commit",
      bdf: BDF,
      scope: "io",
      reason: "test",
    });
    expect((await c.handle.waitForOutcome("commit-3", 20_000)).outcome).toBe("verified");
    expect(await kindsOf(w.jsm, "commit-3")).toContain("verify.passed");

    const text = await (await fetch(c.handle.metricsUrl!)).text();
    expect(text).toMatch(/^cxlrc_resets_total\{method="cxl",scope="full",outcome="quarantined"\} 1$/m);
    expect(text).toMatch(/^cxlrc_refusals_total\{reason="quarantined"\} 1$/m);
  });
});
