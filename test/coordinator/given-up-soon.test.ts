// A device given up here mid-operation (its lease lost: renewals refused, a step not allowed to act) is
// continued as soon as its lease can be taken again, by a pass of that device alone (recovery.ts soon), not
// half a lease time later at the next periodic pass. Seen in the fault sweep: after a NATS node came back, the
// devices its outage had cost their leases waited for the periodic pass (7.5 s with the default lease).
import { Kvm } from "@nats-io/kv";
import { afterEach, describe, expect, it } from "vitest";
import type { StepHook } from "../../services/coordinator/effects/agent-actors.ts";
import { BUCKETS } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { publishRequest, readEvents, sleep, startWorld, type World } from "./helpers.ts";

const TTL_MS = 2000;
const BDF = "0000:01:00.0";

describe("a device given up mid-operation", () => {
  let w: World | undefined;
  afterEach(async () => {
    await w?.close();
    w = undefined;
  });

  it("is taken again and finished by a pass of its own, long before the periodic pass", async () => {
    const host = "given-up";
    w = await startWorld([simpleHost({ name: host })]);
    const world = w;
    // Before the device is first changed, the host's partition lease entry is deleted under the coordinator
    // (an operator's mistake, a bucket restored from an old backup): its next renewal finds it gone and the
    // coordinator gives the device up, mid-reset. Once only.
    let struck = false;
    let lostAt = 0;
    const hook: StepHook = async (phase, point) => {
      if (struck || phase !== "quiescing" || point !== "before") return;
      struck = true;
      const kv = await new Kvm(world.js).open(BUCKETS.leases);
      await kv.delete(host);
      // A renewal every quarter lease time notices it.
      await sleep(TTL_MS / 2);
      lostAt = performance.now();
    };
    // The periodic pass far off: only a pass of the given-up device can finish the request in time.
    const c = await w.coordinator({
      id: "soon-A",
      stepHook: hook,
      leaseTtlMs: TTL_MS,
      recoveryIntervalMs: 120_000,
    });
    await publishRequest(w.js, { requestId: "gu-1", host, bdf: BDF, scope: "full", reason: "given up" });
    const outcome = await c.handle.waitForOutcome("gu-1", 20_000);
    const afterLossMs = performance.now() - lostAt;
    expect(struck).toBe(true);
    expect([outcome.outcome, outcome.message]).toEqual(["verified", undefined]);
    // Within a few seconds of the loss (the first such pass waits 250 ms), not at the periodic pass.
    expect(afterLossMs).toBeLessThan(10_000);
    // The device was given up: the coordinator said so, and drove it again under a new epoch.
    const events = (await readEvents(w.jsm, { host, source: "coordinator" })).filter(
      (e) => e.event.bdf === BDF,
    );
    const kinds = events.map((e) => e.event.kind);
    expect(kinds).toContain("lease.lost");
    const epochs = new Set(events.map((e) => e.event.epoch).filter((x) => x !== undefined));
    expect(epochs.size).toBe(2);
    // Continued from its stored record: one CXL Reset, never a second.
    expect(w.sims.get(host)!.counters(BDF).cxlReset).toBe(1);
    expect(kinds.filter((k) => k === "verified")).toHaveLength(1);
  }, 40_000);
});
