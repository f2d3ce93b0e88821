// The lifecycle owns the device's driver for the length of a full reset (issue #17), on the simulator's
// cxl_pci (BAR claimed, Mem_Enable set on probe and cleared on unbind, as the real kernel does): saved under
// the driver, taken, reset, restored, bound again and verified with the driver back; refused without touching
// it while its memory is online; a driver that does not bind again fails the request with an event.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { simpleHost } from "../../shared/sim/index.ts";
import { publishRequest, readEvents, startWorld, type World } from "./helpers.ts";

const BDF = "0000:01:00.0";
const device = {
  driver: "cxl_pci",
  firmware: { memEnable: false, decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000 }] },
};
const MEM_ENABLE = 1 << 2;

describe("driver hand-over through the coordinator", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([
      simpleHost({ name: "kern0", device }),
      simpleHost({ name: "kern1", device }),
      simpleHost({ name: "kern2", device }),
      simpleHost({
        name: "kern3",
        device: {
          ...device,
          functions: [
            { fn: 1, driver: "cxl_pci" },
            { fn: 2, cxl: false, driver: null },
          ],
        },
      }),
    ]);
  });
  afterAll(async () => {
    await w?.close();
  });

  const driverOf = async (host: string) =>
    (await w.sims.get(host)!.listFunctions()).find((f) => f.bdf === BDF)?.driver;

  it("takes cxl_pci for the reset and gives it back: verified, driver and Mem_Enable back", async () => {
    const sim = w.sims.get("kern0")!;
    const c = await w.coordinator();
    await publishRequest(w.js, { requestId: "ho-1", host: "kern0", bdf: BDF, scope: "full", reason: "t" });
    const out = await c.handle.waitForOutcome("ho-1", 20_000);
    expect(out.outcome).toBe("verified");
    expect(sim.counters(BDF).cxlReset).toBe(1);
    expect(await driverOf("kern0")).toBe("cxl_pci");
    expect((await sim.configRead(BDF, 0x100 + 0x0c, 2)) & MEM_ENABLE).toBe(MEM_ENABLE);
    const events = await readEvents(w.jsm, { host: "kern0" });
    const kinds = events.map((e) => `${e.event.source}:${e.event.kind}`);
    const at = (k: string) => kinds.indexOf(k);
    // Unbound by the save (after the image was read under the driver), bound again before the outcome.
    expect(at("agent:driver.unbound")).toBeGreaterThan(-1);
    expect(at("agent:driver.unbound")).toBeLessThan(at("agent:reset.started"));
    expect(at("agent:driver.rebound")).toBeGreaterThan(at("agent:restore.completed"));
    expect(at("coordinator:driver.rebound")).toBeGreaterThan(at("coordinator:verify.passed"));
    expect(at("coordinator:driver.rebound")).toBeLessThan(at("coordinator:verified"));
    const plan = events.find((e) => e.event.kind === "plan")?.event.data as {
      plan: { handover: Record<string, string> };
    };
    expect(plan.plan.handover).toEqual({ [BDF]: "cxl_pci" });
    const rebound = events.find((e) => e.event.source === "coordinator" && e.event.kind === "driver.rebound");
    expect(rebound?.event.data).toMatchObject({
      drivers: { [BDF]: "cxl_pci" },
      verify: { passed: true, mismatches: [] },
    });
    await c.stop();
  });

  it("refuses while the device's memory is online, naming it, and never unbinds the driver", async () => {
    const sim = w.sims.get("kern1")!;
    sim.faults.set(BDF, { name: "memory-online" });
    const c = await w.coordinator();
    await publishRequest(w.js, { requestId: "ho-2", host: "kern1", bdf: BDF, scope: "full", reason: "t" });
    const out = await c.handle.waitForOutcome("ho-2", 20_000);
    expect(out.outcome).toBe("refused");
    expect(JSON.stringify(out)).toMatch(/device-busy/);
    expect(JSON.stringify(out)).toMatch(/0x100000000-0x10fffffff/);
    expect(await driverOf("kern1")).toBe("cxl_pci");
    expect(sim.counters(BDF).cxlReset).toBe(0);
    sim.faults.clear(BDF, "memory-online");
    await c.stop();
  });

  it("a driver that does not bind again: failed, driver.rebind-failed names it", async () => {
    const sim = w.sims.get("kern2")!;
    const bind = sim.bindDriver.bind(sim);
    sim.bindDriver = async (bdf, driver, opts) => {
      if (driver === "cxl_pci") throw new Error("probe of cxl_pci failed (-6)");
      return bind(bdf, driver, opts);
    };
    const c = await w.coordinator({ metricsPort: 0 });
    await publishRequest(w.js, { requestId: "ho-3", host: "kern2", bdf: BDF, scope: "full", reason: "t" });
    const out = await c.handle.waitForOutcome("ho-3", 20_000);
    expect(out.outcome).toBe("failed");
    const events = await readEvents(w.jsm, { requestId: "ho-3", source: "coordinator" });
    const failed = events.find((e) => e.event.kind === "driver.rebind-failed")?.event.data as {
      drivers: Record<string, string>;
      error: { kind: string; message: string };
    };
    expect(failed.drivers).toEqual({ [BDF]: "cxl_pci" });
    expect(failed.error.kind).toBe("driver-rebind");
    expect(failed.error.message).toMatch(/probe of cxl_pci failed/);
    expect(await driverOf("kern2")).toBeNull();
    // The reset itself went through: the device was restored and verified before the hand-back.
    expect(events.map((e) => e.event.kind)).toContain("verify.passed");
    // What an SRE alerts on.
    const text = await (await fetch(c.handle.metricsUrl!)).text();
    expect(text).toMatch(/^cxlrc_driver_handbacks_total\{result="failed",driver="cxl_pci"\} 1$/m);
    sim.bindDriver = bind;
    await c.stop();
  });

  it("a CXL Reset of a multi-function device takes every function's driver and gives each back", async () => {
    const sim = w.sims.get("kern3")!;
    const F1 = "0000:01:00.1";
    const c = await w.coordinator();
    await publishRequest(w.js, { requestId: "ho-4", host: "kern3", bdf: BDF, scope: "full", reason: "t" });
    const out = await c.handle.waitForOutcome("ho-4", 20_000);
    expect(out.outcome).toBe("verified");
    const fns = await sim.listFunctions();
    expect(fns.filter((f) => f.bdf.startsWith("0000:01:00.")).map((f) => [f.bdf, f.driver])).toEqual([
      [BDF, "cxl_pci"],
      [F1, "cxl_pci"],
      ["0000:01:00.2", null],
    ]);
    const events = await readEvents(w.jsm, { requestId: "ho-4", source: "coordinator" });
    const plan = events.find((e) => e.event.kind === "plan")?.event.data as {
      plan: { handover: Record<string, string>; targets: string[] };
    };
    expect(plan.plan.targets).toEqual([BDF, F1, "0000:01:00.2"]);
    expect(plan.plan.handover).toEqual({ [BDF]: "cxl_pci", [F1]: "cxl_pci" });
    const rebound = events.find((e) => e.event.kind === "driver.rebound")?.event.data;
    expect(rebound).toMatchObject({
      drivers: { [BDF]: "cxl_pci", [F1]: "cxl_pci" },
      verify: { passed: true },
    });
    await c.stop();
  });
});
