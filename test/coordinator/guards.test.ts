// Fleet guards kept in KV: the attempt budget (cooldown) per device and the circuit breaker, which opens on
// failures and closes only by operator action. Both block with a named refusal.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  control,
  publishRequest,
  type RunningCoordinator,
  rested,
  startWorld,
  TEST_POLICY,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";

describe("fleet guards", () => {
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld([
      simpleHost({ name: "g0" }),
      simpleHost({ name: "g1" }),
      simpleHost({ name: "g2" }),
    ]);
    c = await w.coordinator({
      policy: {
        ...TEST_POLICY,
        maxAttemptsPerWindow: 1,
        cooldownMs: 60_000,
        breakerMinSamples: 2,
        breakerFailureRatio: 0.5,
      },
    });
  });
  afterAll(async () => {
    await w?.close();
  });

  it("a device that spent its attempt budget is refused with cooldown", async () => {
    await publishRequest(w.js, { requestId: "b-1", host: "g0", bdf: BDF, scope: "io", reason: "x" });
    expect((await c.handle.waitForOutcome("b-1", 20_000)).outcome).toBe("verified");
    await rested(c.handle, "g0", BDF);
    await publishRequest(w.js, { requestId: "b-2", host: "g0", bdf: BDF, scope: "io", reason: "x" });
    const out = await c.handle.waitForOutcome("b-2", 20_000);
    expect(out.outcome).toBe("refused");
    expect(out.refusal?.reason).toBe("cooldown");
    expect(w.sims.get("g0")!.counters(BDF).flr).toBe(1);
  });

  it("failures open the breaker for the whole fleet; only an operator closes it", async () => {
    // One success (b-1 above) and one quarantine: 1 of 2 failed reaches the 0.5 ratio.
    w.sims.get("g1")!.faults.set(BDF, { name: "commit-error", decoder: 0 });
    await publishRequest(w.js, { requestId: "br-1", host: "g1", bdf: BDF, scope: "full", reason: "x" });
    expect((await c.handle.waitForOutcome("br-1", 20_000)).outcome).toBe("quarantined");
    await rested(c.handle, "g1", BDF);
    expect((await c.handle.status()).breaker.status).toBe("open");

    await publishRequest(w.js, { requestId: "br-2", host: "g2", bdf: BDF, scope: "io", reason: "x" });
    const refused = await c.handle.waitForOutcome("br-2", 20_000);
    expect(refused.refusal?.reason).toBe("breaker-open");
    expect(w.sims.get("g2")!.counters(BDF).flr).toBe(0);

    const bad = await control(w.nc, subjects.breaker, { operator: "sre" });
    expect(!bad.ok && bad.error.message).toMatch(/field "reason"/);
    const closed = await control<{ breaker: { status: string; closedBy: { operator: string } } }>(
      w.nc,
      subjects.breaker,
      { operator: "sre", reason: "decoder replaced" },
    );
    expect(closed.ok && closed.result.breaker.status).toBe("closed");
    expect(closed.ok && closed.result.breaker.closedBy.operator).toBe("sre");

    await publishRequest(w.js, { requestId: "br-3", host: "g2", bdf: BDF, scope: "io", reason: "x" });
    expect((await c.handle.waitForOutcome("br-3", 20_000)).outcome).toBe("verified");
  });
});
