// The driver comes back after a crash mid-hand-over (issue #17): a coordinator killed with the driver taken
// (after the save unbound it, around the reset, before the hand-back) and another started: the new owner takes
// the same way out and binds the driver again. Also the refusal after the save: memory that came online while
// the owner was dead refuses the reset, and the driver goes back before the refusal is said.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { simpleHost } from "../../shared/sim/index.ts";
import { publishRequest, readEvents, startWorld, stopAt, type World } from "./helpers.ts";

const BDF = "0000:01:00.0";
const device = {
  driver: "cxl_pci",
  firmware: { memEnable: false, decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000 }] },
};

interface Case {
  name: string;
  phase: string;
  point: "before" | "after";
}

const CASES: Case[] = [
  { name: "hc-saved", phase: "savingImage", point: "after" },
  { name: "hc-persisting", phase: "persistingImage", point: "before" },
  { name: "hc-resetting", phase: "resetting", point: "after" },
  { name: "hc-verifying", phase: "verifying", point: "before" },
  { name: "hc-handing-back", phase: "handingBack", point: "before" },
];

describe("coordinator killed with the driver taken", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([
      ...CASES.map((c) => simpleHost({ name: c.name, device })),
      simpleHost({ name: "hc-refused", device }),
    ]);
  });
  afterAll(async () => {
    await w?.close();
  });

  const driverOf = async (host: string) =>
    (await w.sims.get(host)!.listFunctions()).find((f) => f.bdf === BDF)?.driver;

  for (const k of CASES) {
    it(`${k.name}: crash ${k.point} ${k.phase}, the new owner verifies and gives cxl_pci back`, async () => {
      const sim = w.sims.get(k.name)!;
      const stop = stopAt(k.phase, k.point);
      const a = await w.coordinator({ id: `A-${k.name}`, stepHook: stop.hook });
      await publishRequest(w.js, { requestId: k.name, host: k.name, bdf: BDF, scope: "full", reason: "t" });
      await stop.atPoint;
      expect(await driverOf(k.name)).toBeNull(); // taken by the save
      await a.crash();
      stop.release();
      const b = await w.coordinator({ id: `A-${k.name}` });
      const out = await b.handle.waitForOutcome(k.name, 20_000);
      expect(out.outcome).toBe("verified");
      expect(await driverOf(k.name)).toBe("cxl_pci");
      expect(sim.counters(BDF).cxlReset).toBe(1);
      const kinds = (await readEvents(w.jsm, { requestId: k.name, source: "coordinator" })).map(
        (e) => e.event.kind,
      );
      expect(kinds).toContain("driver.rebound");
      await b.stop();
    });
  }

  it("refused after the save (memory came online while the owner was dead): the driver still goes back", async () => {
    const sim = w.sims.get("hc-refused")!;
    const stop = stopAt("savingImage", "after");
    const a = await w.coordinator({ id: "A-refused", stepHook: stop.hook });
    await publishRequest(w.js, {
      requestId: "hc-r",
      host: "hc-refused",
      bdf: BDF,
      scope: "full",
      reason: "t",
    });
    await stop.atPoint;
    await a.crash();
    stop.release();
    sim.faults.set(BDF, { name: "memory-online" });
    const b = await w.coordinator({ id: "A-refused" });
    const out = await b.handle.waitForOutcome("hc-r", 20_000);
    expect(out.outcome).toBe("refused");
    expect(JSON.stringify(out)).toMatch(/device-busy/);
    expect(sim.counters(BDF).cxlReset).toBe(0);
    expect(await driverOf("hc-refused")).toBe("cxl_pci");
    // Said once the driver is back, as the stream orders it.
    const kinds = (await readEvents(w.jsm, { requestId: "hc-r", source: "coordinator" })).map(
      (e) => e.event.kind,
    );
    expect(kinds.indexOf("driver.rebound")).toBeGreaterThanOrEqual(0);
    expect(kinds.indexOf("refused")).toBeGreaterThan(kinds.indexOf("driver.rebound"));
    await b.stop();
  });
});
