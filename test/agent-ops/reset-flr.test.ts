import { describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { DEV, PCIE_CAP, readDecoder, rig } from "./fixtures.ts";

async function catchErr(p: () => Promise<unknown>): Promise<CxlrcError> {
  try {
    await p();
  } catch (e) {
    if (e instanceof CxlrcError) return e;
    throw e;
  }
  throw new Error("expected a CxlrcError");
}

describe("FLR (io scope)", () => {
  it("keeps CXL state; PCI state comes back from the image and verify io passes", async () => {
    const { ctx, sim, rec, events } = rig();
    const image = await operations.save(ctx, { bdf: DEV });
    const cmdBefore = await sim.configRead(DEV, 4, 2);
    expect(cmdBefore & 0x2).toBe(0x2); // Memory Space on (firmware)
    const q = await operations.quiesce(ctx, { opId: "q", bdf: DEV, scope: "io" } as never);
    expect(q.cache).toBe("not-needed");
    expect((await sim.configRead(DEV, 4, 2)) & 0x4).toBe(0); // Bus Master read back off
    rec.clear();
    const r = await operations.reset(ctx, { bdf: DEV, method: "flr" });
    expect(r.reached).toEqual([DEV]);
    expect(sim.counters(DEV).flr).toBe(1);
    // The FLR reset the function's Command register (read back), proving it happened.
    expect(await sim.configRead(DEV, 4, 2)).toBe(0);
    // Nothing touched the function in the 100 ms after Initiate FLR.
    const init = rec.log.findIndex(
      (a) => a.op === "configWrite" && a.offset === PCIE_CAP + 8 && a.value & 0x8000,
    );
    expect(init).toBeGreaterThanOrEqual(0);
    const t0 = rec.log[init]!.t;
    expect(rec.log.slice(init + 1).every((a) => a.t >= t0 + 100)).toBe(true);
    // CXL state survived (read back).
    expect((await readDecoder(sim, 0)).committed).toBe(true);

    await operations.restore(ctx, { bdf: DEV, scope: "io", image });
    expect(await sim.configRead(DEV, 4, 2)).toBe(cmdBefore);
    const v = await operations.verify(ctx, { bdf: DEV, scope: "io", image });
    expect(v.mismatches).toEqual([]);
    expect(v.passed).toBe(true);
    expect(v.registersChecked).toBeGreaterThan(20);
    expect(events.map((e) => e.kind)).toEqual(
      expect.arrayContaining(["reset.started", "reset.initiated", "reset.completed", "restore.completed"]),
    );
    expect(events.find((e) => e.kind === "reset.completed")?.data).toMatchObject({ method: "flr" });
  });

  it("refuses a function without FLR with reason flr-unsupported", async () => {
    const { ctx, sim } = rig({ device: { flr: false } });
    const err = await catchErr(() => operations.reset(ctx, { bdf: DEV, method: "flr" }));
    expect(err.kind).toBe("unsupported");
    expect(err.details).toMatchObject({ reason: "flr-unsupported", register: "pcie.devCap" });
    expect(sim.counters(DEV).flr).toBe(0);
  });

  it("flr-clears-hdm: verify io reports every changed CXL field as a scope violation", async () => {
    const { ctx, sim } = rig();
    const image = await operations.save(ctx, { bdf: DEV });
    sim.faults.set(DEV, { name: "flr-clears-hdm" });
    await operations.reset(ctx, { bdf: DEV, method: "flr" });
    await operations.restore(ctx, { bdf: DEV, scope: "io", image });
    expect((await readDecoder(sim, 0)).committed).toBe(false);
    const v = await operations.verify(ctx, { bdf: DEV, scope: "io", image });
    expect(v.passed).toBe(false);
    expect(v.scopeViolation).toBe(true);
    const named = v.mismatches.map((m) => `${m.register}.${m.field}`);
    expect(named).toEqual(
      expect.arrayContaining([
        "decoder0.control.committed",
        "decoder0.baseHigh.memoryBaseHigh",
        "decoder0.sizeLow.memorySizeLow",
        "hdm.hdmGlobalControl.hdmDecoderEnable",
        "dvsec.control.memEnable",
      ]),
    );
    expect(v.mismatches.every((m) => m.domain === "cxl")).toBe(true);
    expect(v.mismatches.find((m) => m.register === "decoder0.baseHigh")).toMatchObject({
      expected: 1,
      actual: 0,
    });
  });

  it("gone: a function that never answers after FLR fails with not-ready", async () => {
    const { ctx, sim, rec } = rig();
    await operations.save(ctx, { bdf: DEV });
    // The device vanishes the moment Initiate FLR is written.
    rec.afterWrite = (a) => {
      if (a.offset === PCIE_CAP + 8 && a.value & 0x8000) sim.faults.set(DEV, { name: "gone" });
    };
    const err = await catchErr(() => operations.reset(ctx, { bdf: DEV, method: "flr" }));
    expect(err.kind).toBe("not-ready");
    expect(err.details).toMatchObject({ bdf: DEV, register: "pci.vendorId", value: "0xffff" });
  });

  it("long-not-ready past readyTimeoutMs: not-ready; within it: success", async () => {
    const slow = rig();
    slow.sim.faults.set(DEV, { name: "long-not-ready", ms: 2000 });
    expect((await catchErr(() => operations.reset(slow.ctx, { bdf: DEV, method: "flr" }))).kind).toBe(
      "not-ready",
    );
    const ok = rig();
    ok.sim.faults.set(DEV, { name: "long-not-ready", ms: 600 });
    const r = await operations.reset(ok.ctx, { bdf: DEV, method: "flr" });
    expect(r.durationMs).toBeGreaterThanOrEqual(600);
    expect((await ok.sim.configRead(DEV, 0, 2)) !== 0xffff).toBe(true);
  });
});
