// Intake and control endpoints: duplicate request ids reset once, a dry run touches neither the device nor
// the store, bad messages are rejected with the problem named while the coordinator keeps serving, submit
// answers with the decision at once, and status and metrics show what happened.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeJson } from "../../shared/bus/codec.ts";
import { BUCKETS, subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  control,
  publishRequest,
  type RunningCoordinator,
  readEvents,
  rootPortHost,
  startWorld,
  until,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";

describe("intake and control", () => {
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld([
      simpleHost({ name: "sim0" }),
      simpleHost({ name: "dup" }),
      simpleHost({ name: "dry" }),
      simpleHost({ name: "sub" }),
      simpleHost({ name: "noflr", device: { flr: false } }),
      rootPortHost("sel", 2),
    ]);
    c = await w.coordinator({ metricsPort: 0 });
  });
  afterAll(async () => {
    await w?.close();
  });

  it("a duplicate request id resets once (JetStream dedup, and a re-send the stream let through)", async () => {
    const req = { requestId: "dup-1", host: "dup", bdf: BDF, scope: "io" as const, reason: "test" };
    expect((await publishRequest(w.js, req)).duplicate).toBe(false);
    expect((await publishRequest(w.js, req)).duplicate).toBe(true);
    expect((await c.handle.waitForOutcome("dup-1", 20_000)).outcome).toBe("verified");
    // Same request id under another message id (a controller re-sending after the dedup window).
    await w.js.publish(subjects.request("dup"), encodeJson(req), { msgID: "dup-1-resent" });
    const seen = await until(async () =>
      (await readEvents(w.jsm, { requestId: "dup-1" })).some((e) => e.event.kind === "request.duplicate"),
    );
    expect(seen).toBe(true);
    // And through submit: JetStream recognises it.
    const sub = await control<{ duplicate: boolean }>(w.nc, subjects.submit("dup"), req);
    expect(sub.ok && sub.result.duplicate).toBe(true);
    expect(w.sims.get("dup")!.counters(BDF).flr).toBe(1);
    const plans = (await readEvents(w.jsm, { requestId: "dup-1", source: "coordinator" })).filter(
      (e) => e.event.kind === "plan",
    );
    expect(plans).toHaveLength(1);
  });

  it("a dry run touches nothing: device registers and every KV bucket unchanged", async () => {
    const sim = w.sims.get("dry")!;
    const regs = sim.snapshot(BDF);
    const kvSeq = async () =>
      Promise.all(
        Object.values(BUCKETS).map(async (b) => (await w.jsm.streams.info(`KV_${b}`)).state.last_seq),
      );
    const seqBefore = await kvSeq();

    await publishRequest(w.js, {
      requestId: "dry-1",
      host: "dry",
      bdf: BDF,
      scope: "full",
      reason: "what if",
      dryRun: true,
    });
    const out = await c.handle.waitForOutcome("dry-1", 20_000);
    expect(out.outcome).toBe("planned");
    expect(out.plan?.method).toBe("cxl");
    expect(out.plan?.dryRun).toBe(true);
    expect(out.plan?.deadlines.phasesMs.resetting).toBeGreaterThan(0);

    const planned = await control<{ decisions: Array<{ plan?: { method: string }; refusal?: unknown }> }>(
      w.nc,
      subjects.plan("dry"),
      { requestId: "dry-2", host: "dry", bdf: BDF, scope: "io", reason: "what if" },
    );
    expect(planned.ok && planned.result.decisions[0]?.plan?.method).toBe("flr");

    const after = sim.snapshot(BDF);
    expect(Buffer.from(after.config).equals(Buffer.from(regs.config))).toBe(true);
    expect(Buffer.from(after.component).equals(Buffer.from(regs.component))).toBe(true);
    expect(sim.counters(BDF)).toMatchObject({ flr: 0, cxlReset: 0, conventionalReset: 0, commits: 0 });
    expect(await kvSeq()).toEqual(seqBefore);
    expect((await c.handle.status()).devices.some((d) => d.host === "dry")).toBe(false);
  });

  it("bad request messages are rejected with the problem named; the coordinator keeps serving", async () => {
    await w.js.publish(subjects.request("sim0"), new TextEncoder().encode("not json {"), {
      msgID: "garbage-1",
    });
    await publishRequest(w.js, {
      requestId: "bad-types",
      host: "sim0",
      bdf: 42,
      scope: "sideways",
      reason: "x",
    } as never);
    await publishRequest(w.js, { requestId: "bad-host", host: "nohost", bdf: BDF, scope: "io", reason: "x" });
    await publishRequest(w.js, {
      requestId: "bad-bdf",
      host: "sim0",
      bdf: "0000:09:00.0",
      scope: "io",
      reason: "x",
    });
    await publishRequest(w.js, {
      requestId: "bad-key",
      host: "sim0",
      bdf: BDF,
      scope: "io",
      reason: "x",
      colour: "red",
    } as never);

    const types = await c.handle.waitForOutcome("bad-types", 20_000);
    expect(types.outcome).toBe("rejected");
    expect(types.message).toMatch(/field "bdf"/);
    expect(types.message).toMatch(/field "scope"/);
    const host = await c.handle.waitForOutcome("bad-host", 20_000);
    expect(host.outcome).toBe("rejected");
    expect(host.message).toMatch(/unknown host "nohost"/);
    expect((await c.handle.waitForOutcome("bad-bdf", 20_000)).message).toMatch(/no device 0000:09:00.0/);
    expect((await c.handle.waitForOutcome("bad-key", 20_000)).message).toMatch(/unknown field "colour"/);
    const garbage = await until(async () =>
      (await readEvents(w.jsm, { host: "sim0" })).some(
        (e) => e.event.kind === "request.rejected" && /not JSON/.test(JSON.stringify(e.event.data)),
      ),
    );
    expect(garbage).toBe(true);

    // Control endpoints answer bad input with an error naming it.
    const notJson = await control(w.nc, subjects.plan("sim0"), "{{");
    expect(!notJson.ok && notJson.error.kind).toBe("bad-input");
    const unknownKey = await control(w.nc, subjects.status, { verbose: true });
    expect(!unknownKey.ok && unknownKey.error.message).toMatch(/unknown field "verbose"/);
    const noImage = await control(w.nc, subjects.image, { host: "sim0", bdf: "0000:07:00.0" });
    expect(!noImage.ok && noImage.error.message).toMatch(/no image stored/);

    // Still serving.
    await publishRequest(w.js, { requestId: "after-bad", host: "sim0", bdf: BDF, scope: "io", reason: "x" });
    expect((await c.handle.waitForOutcome("after-bad", 20_000)).outcome).toBe("verified");
    const notQuarantined = await control(w.nc, subjects.release, {
      host: "sim0",
      bdf: BDF,
      operator: "o",
      reason: "r",
    });
    expect(!notQuarantined.ok && notQuarantined.error.message).toMatch(/not quarantined/);
  });

  it("submit answers with the plan or the refusal at once", async () => {
    type Sub = { queued: boolean; decisions: Array<{ kind: string; data: Record<string, unknown> }> };
    const accepted = await control<Sub>(w.nc, subjects.submit("sub"), {
      requestId: "sub-1",
      host: "sub",
      bdf: BDF,
      scope: "io",
      reason: "x",
    });
    if (!accepted.ok) throw new Error(accepted.error.message);
    expect(accepted.result.queued).toBe(false);
    expect(accepted.result.decisions[0]?.kind).toBe("plan");
    expect((accepted.result.decisions[0]?.data.plan as { method?: string } | undefined)?.method).toBe("flr");
    expect((await c.handle.waitForOutcome("sub-1", 20_000)).outcome).toBe("verified");

    const refused = await control<Sub>(w.nc, subjects.submit("noflr"), {
      requestId: "sub-2",
      host: "noflr",
      bdf: BDF,
      scope: "io",
      reason: "x",
    });
    if (!refused.ok) throw new Error(refused.error.message);
    expect(refused.result.decisions[0]?.kind).toBe("refused");
    expect((refused.result.decisions[0]?.data.refusal as { reason?: string } | undefined)?.reason).toBe(
      "flr-unsupported",
    );

    const bad = await control(w.nc, subjects.submit("sub"), {
      requestId: "sub-3",
      host: "sub",
      scope: "io",
      reason: "x",
    });
    expect(!bad.ok && bad.error.message).toMatch(/exactly one of bdf or deviceSelector/);
  });

  it("a device selector resets every matching device, one outcome each", async () => {
    await publishRequest(w.js, {
      requestId: "sel-1",
      host: "sel",
      deviceSelector: { vendorId: 0x8086 },
      scope: "io",
      reason: "fleet-wide",
    });
    for (const bdf of ["0000:01:00.0", "0000:02:00.0"]) {
      const out = await c.handle.waitForOutcome(`sel-1@${bdf.replace(/[:.]/g, "-")}`, 20_000);
      expect(out.outcome).toBe("verified");
      expect(out.bdf).toBe(bdf);
      expect(w.sims.get("sel")!.counters(bdf).flr).toBe(1);
    }
    await publishRequest(w.js, {
      requestId: "sel-2",
      host: "sel",
      deviceSelector: { vendorId: 0x1234 },
      scope: "io",
      reason: "x",
    });
    expect((await c.handle.waitForOutcome("sel-2", 20_000)).message).toMatch(/matches no CXL device/);
  });

  it("status and metrics show the fleet and the counters", async () => {
    // Leases go back once each device's "ready" is stored, just after the outcome.
    expect(await until(async () => (await c.handle.status()).leasesHeld.length === 0)).toBe(true);
    const st = await control<{
      states: Record<string, number>;
      leasesHeld: string[];
      breaker: { status: string };
    }>(w.nc, subjects.status, {});
    if (!st.ok) throw new Error(st.error.message);
    expect(st.result.states.ready).toBeGreaterThanOrEqual(3);
    expect(st.result.leasesHeld).toEqual([]);
    expect(st.result.breaker.status).toBe("closed");

    const res = await fetch(c.handle.metricsUrl!);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/^cxlrc_resets_total\{method="flr",scope="io",outcome="verified"\} 5$/m);
    expect(text).toMatch(/^cxlrc_reset_duration_seconds_count\{method="flr",outcome="verified"\} 5$/m);
    expect(text).toMatch(/^cxlrc_state_duration_seconds_count\{state="resetting"\} [1-9]/m);
    expect(text).toMatch(/^cxlrc_devices\{state="ready"\} [3-9]/m);
    // Counted when scraped: every lease went back above.
    expect(text).toMatch(/^cxlrc_leases_held 0$/m);
    expect(text).toMatch(/^cxlrc_partitions_held [0-9]+$/m);
    expect(text).toMatch(/^cxlrc_fleet_view_restarts_total 0$/m);
    expect(text).toMatch(/^cxlrc_refusals_total\{reason="flr-unsupported"\} 1$/m);
    expect(text).toMatch(/^cxlrc_requests_total\{result="rejected"\} [4-9]/m);
    expect((await fetch(c.handle.metricsUrl!.replace("/metrics", "/other"))).status).toBe(404);
  });
});
