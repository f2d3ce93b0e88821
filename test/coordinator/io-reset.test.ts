// io scope (FLR) end to end: request through the stream, the device actor plans, saves and persists the
// image, resets, restores and verifies; CXL state survives and is read back from the simulated device.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore } from "../../services/coordinator/store.ts";
import { deviceKey } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  kindsOf,
  LEASE_TTL_MS,
  probe,
  publishRequest,
  type RunningCoordinator,
  rested,
  startWorld,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";

describe("io reset", () => {
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld([
      simpleHost({ name: "sim0" }),
      simpleHost({ name: "noflr", device: { flr: false } }),
    ]);
    c = await w.coordinator();
  });
  afterAll(async () => {
    await w?.close();
  });

  it("resets an FLR device: CXL state survives, verified, events in order", async () => {
    const before = await probe(w.nc, "sim0", BDF);
    expect(before.decoders[0]?.committed).toBe(true);
    await publishRequest(w.js, { requestId: "io-1", host: "sim0", bdf: BDF, scope: "io", reason: "test" });
    const out = await c.handle.waitForOutcome("io-1", 20_000);
    expect(out.outcome).toBe("verified");
    expect(out.plan?.method).toBe("flr");
    expect(w.sims.get("sim0")!.counters(BDF).flr).toBe(1);

    const after = await probe(w.nc, "sim0", BDF);
    expect(after.decoders).toEqual(before.decoders);
    expect(after.cxl?.memEnabled).toBe(true);

    const kinds = await kindsOf(w.jsm, "io-1");
    const at = (k: string) => kinds.indexOf(k);
    expect(kinds).not.toContain("step.failed");
    expect(at("plan")).toBeGreaterThanOrEqual(0);
    expect(at("image.persisted")).toBeGreaterThan(at("plan"));
    expect(at("reset.started")).toBeGreaterThan(at("image.persisted"));
    expect(at("verify.passed")).toBeGreaterThan(at("reset.started"));
    expect(at("verified")).toBeGreaterThan(at("verify.passed"));

    // At rest: ready, lease given back.
    expect(await rested(c.handle, "sim0", BDF)).toBe("ready");
    expect((await c.handle.status()).leasesHeld).not.toContain(deviceKey("sim0", BDF));

    // The stored record holds the device's state, not the coordinator's configuration (its policy).
    const store = await openStore(w.nc, { leaseTtlMs: LEASE_TTL_MS });
    const rec = await store.loadActor(deviceKey("sim0", BDF));
    expect(rec?.value.state).toBe("ready");
    const context = (rec?.value.snapshot as { context?: Record<string, unknown> } | undefined)?.context;
    expect(context?.bdf).toBe(BDF);
    expect(context).not.toHaveProperty("policy");
  });

  it("refuses io on a device without FLR (flr-unsupported); escalates to full only when allowed", async () => {
    await publishRequest(w.js, {
      requestId: "noflr-1",
      host: "noflr",
      bdf: BDF,
      scope: "io",
      reason: "test",
    });
    const refused = await c.handle.waitForOutcome("noflr-1", 20_000);
    expect(refused.outcome).toBe("refused");
    expect(refused.refusal?.reason).toBe("flr-unsupported");
    expect(w.sims.get("noflr")!.counters(BDF).cxlReset).toBe(0);

    await publishRequest(w.js, {
      requestId: "noflr-2",
      host: "noflr",
      bdf: BDF,
      scope: "io",
      allowEscalation: true,
      reason: "test",
    });
    const escalated = await c.handle.waitForOutcome("noflr-2", 20_000);
    expect(escalated.outcome).toBe("verified");
    expect(escalated.plan?.escalated).toBe(true);
    expect(escalated.plan?.scope).toBe("full");
    expect(escalated.plan?.escalationReason).toMatch(/allowEscalation/);
    expect(w.sims.get("noflr")!.counters(BDF).cxlReset).toBe(1);
    const after = await probe(w.nc, "noflr", BDF);
    expect(after.decoders[0]?.committed).toBe(true);
  });
});
