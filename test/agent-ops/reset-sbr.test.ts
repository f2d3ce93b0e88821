import { describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { DEV, heldDecoderControl, PORT, PORT_DVSEC, readDecoder, rig } from "./fixtures.ts";
import { rejection } from "./helpers.ts";

const PORT_CONTROL = PORT_DVSEC + 0x0c;
const BRIDGE_CONTROL = 0x3e;
const UNMASK_SBR = 1;
const SBR = 1 << 6;

describe("secondary bus reset", () => {
  it("unmasks SBR on the CXL root port, resets, puts Unmask SBR back; restore full + verify pass", async () => {
    const { ctx, sim, rec } = rig({ device: { driver: "cxl_accel" } });
    expect((await sim.configRead(PORT, PORT_CONTROL, 2)) & UNMASK_SBR).toBe(0);
    const image = await operations.save(ctx, { bdf: DEV });
    rec.clear();
    const r = await operations.reset(ctx, { bdf: DEV, method: "sbr" });
    expect(r).toMatchObject({ target: PORT, reached: [DEV] });
    expect(r.details).toMatchObject({ bridge: PORT, cxlPort: true, unmaskSbrWas: false });
    expect(sim.counters(DEV).conventionalReset).toBe(1);
    // Read back: Unmask SBR is back to 0, SBR released; the device lost its decoders and its BARs.
    expect((await sim.configRead(PORT, PORT_CONTROL, 2)) & UNMASK_SBR).toBe(0);
    expect((await sim.configRead(PORT, BRIDGE_CONTROL, 2)) & SBR).toBe(0);
    expect(await sim.configRead(DEV, 4, 2)).toBe(0);
    expect([await sim.configRead(DEV, 0x10, 4), await sim.configRead(DEV, 0x14, 4)]).not.toEqual([
      Number(image.pci.header[4]),
      Number(image.pci.header[5]),
    ]);
    expect(heldDecoderControl(sim, 0)).toBe(0);

    // Order on the port: Unmask SBR, SBR on, ≥ 1 ms, SBR off, Unmask SBR restored.
    const w = rec.writes().filter((a) => a.bdf === PORT);
    expect(w.map((a) => [a.offset, a.value & (a.offset === PORT_CONTROL ? UNMASK_SBR : SBR)])).toEqual([
      [PORT_CONTROL, UNMASK_SBR],
      [BRIDGE_CONTROL, SBR],
      [BRIDGE_CONTROL, 0],
      [PORT_CONTROL, 0],
    ]);
    expect(w[2]!.t - w[1]!.t).toBeGreaterThanOrEqual(1);
    // Nothing below the bridge was touched for 100 ms after the release.
    const released = w[2]!.t;
    expect(rec.log.filter((a) => a.bdf === DEV).every((a) => a.t >= released + 100)).toBe(true);

    await operations.restore(ctx, { bdf: DEV, scope: "full", image });
    expect((await readDecoder(sim, 0)).committed).toBe(true);
    const v = await operations.verify(ctx, { bdf: DEV, scope: "full", image });
    expect(v.mismatches).toEqual([]);
  });

  it("leaves an Unmask SBR that was already set as it was", async () => {
    const { ctx, sim } = rig({ rootPort: { unmaskSbr: true } });
    const r = await operations.reset(ctx, { bdf: DEV, method: "sbr" });
    expect(r.details).toMatchObject({ unmaskSbrWas: true });
    expect((await sim.configRead(PORT, PORT_CONTROL, 2)) & UNMASK_SBR).toBe(UNMASK_SBR);
    expect(sim.counters(DEV).conventionalReset).toBe(1);
  });

  it("a non-CXL bridge: no port DVSEC writes, the bus still resets", async () => {
    const { ctx, sim, rec } = rig({ rootPort: { cxl: false } });
    const r = await operations.reset(ctx, { bdf: DEV, method: "sbr" });
    expect(r.details).toMatchObject({ cxlPort: false, unmaskSbrWas: null });
    expect(
      rec
        .writes()
        .filter((a) => a.bdf === PORT)
        .map((a) => a.offset),
    ).toEqual([BRIDGE_CONTROL, BRIDGE_CONTROL]);
    expect(sim.counters(DEV).conventionalReset).toBe(1);
  });

  it("reaches every function of a multi-function device and reports them", async () => {
    const { ctx, sim } = rig({ device: { functions: [{ fn: 1 }] } });
    const fn1 = "0000:01:00.1";
    const p = await operations.probe(ctx, { bdf: DEV });
    expect(p.functions).toEqual([DEV, fn1]);
    expect(p.siblings).toEqual([]);
    const r = await operations.reset(ctx, { bdf: DEV, method: "sbr" });
    expect(r.reached).toEqual([DEV, fn1]);
    expect(sim.counters(fn1).conventionalReset).toBe(1);
  });

  it("a function that stays down after the reset: not-ready naming it", async () => {
    const { ctx, sim } = rig();
    sim.faults.set(DEV, { name: "long-not-ready", ms: 5000 });
    const err = await rejection(operations.reset(ctx, { bdf: DEV, method: "sbr" }));
    expect(err.kind).toBe("not-ready");
    expect(err.details).toMatchObject({
      bdf: DEV,
      method: "sbr",
      bridge: PORT,
      reached: [],
      unreached: [DEV],
    });
    expect((await sim.configRead(PORT, PORT_CONTROL, 2)) & UNMASK_SBR).toBe(0);
  });
});
