// 200 concurrent reset() calls from one client, over one connection: each gets its own decision, its own
// events and its own outcome (verified), and each device is reset exactly once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientOn } from "../../client/index.ts";
import { generateFleet } from "../../services/chaos/scenario.ts";
import { type RunningCoordinator, startWorld, type World } from "../coordinator/helpers.ts";

const fleet = generateFleet({
  hosts: 20,
  devicesPerHost: 10,
  prefix: "many",
  noFlrEvery: 0,
  twoDecodersEvery: 0,
  driver: null,
});
const devices = fleet.hosts.flatMap((h) => h.devices.map((d) => ({ host: h.name, bdf: d.bdf })));

describe("200 resets at once from one client", () => {
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld(fleet.hosts);
    c = await w.coordinator({ policy: { maxConcurrentPerHost: 10 } });
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
    await w?.close();
  });

  it("every call ends verified with its own events", async () => {
    expect(devices).toHaveLength(200);
    const client = clientOn(w.nc);
    const results = await Promise.all(
      devices.map(async (d, i) => {
        const h = await client.reset({ requestId: `many-${i}`, ...d, scope: "full", reason: "client load" });
        let mine = 0;
        let foreign = 0;
        for await (const e of h.events) {
          if (e.requestId === h.requestId && e.host === d.host && e.bdf === d.bdf) mine++;
          else foreign++;
        }
        return { d, h, out: await h.outcome, mine, foreign };
      }),
    );
    for (const r of results) {
      // Planned at once, or queued for a host slot (the plan comes when it starts).
      expect(["plan", "waiting"]).toContain(r.h.decision.kind);
      expect(r.out).toMatchObject({
        kind: "verified",
        requestId: r.h.requestId,
        host: r.d.host,
        bdf: r.d.bdf,
      });
      expect(r.mine).toBeGreaterThan(5);
      expect(r.foreign).toBe(0);
      expect(w.sims.get(r.d.host)!.counters(r.d.bdf).cxlReset).toBe(1);
    }
  }, 120_000);
});
