import { describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { DEV, readDecoder, rig } from "./fixtures.ts";
import { rejection } from "./helpers.ts";

describe("vfio and kernel resets (backend methods)", () => {
  it("vfio: full scope on the sim; restore full + verify full bring the decoders back", async () => {
    const { ctx, sim, rec } = rig({ device: { driver: "vfio-pci" } });
    const image = await operations.save(ctx, { bdf: DEV });
    const r = await operations.reset(ctx, { bdf: DEV, method: "vfio" });
    expect(r.reached).toEqual([DEV]);
    expect(rec.log.filter((a) => a.op === "vfioReset")).toHaveLength(1);
    expect((await readDecoder(sim, 0)).committed).toBe(false);
    await operations.restore(ctx, { bdf: DEV, scope: "full", image });
    expect((await operations.verify(ctx, { bdf: DEV, scope: "full", image })).passed).toBe(true);
    expect((await readDecoder(sim, 0)).committed).toBe(true);
  });

  it("vfio on a backend without VFIO: unsupported", async () => {
    const { ctx } = rig();
    const noVfio = {
      ...ctx,
      backend: Object.assign(Object.create(ctx.backend), {
        capabilities: { ...ctx.backend.capabilities, vfioReset: false },
      }),
    };
    const err = await rejection(operations.reset(noVfio, { bdf: DEV, method: "vfio" }));
    expect(err.details).toMatchObject({ reason: "vfio-reset-unsupported" });
  });

  it("kernel flr: CXL state kept, verify io passes after an io restore", async () => {
    const { ctx, sim } = rig();
    const image = await operations.save(ctx, { bdf: DEV });
    const r = await operations.reset(ctx, { bdf: DEV, method: "kernel", kernelMethod: "flr" });
    expect(r.details).toMatchObject({ kernelMethod: "flr" });
    expect(sim.counters(DEV).flr).toBe(1);
    await operations.restore(ctx, { bdf: DEV, scope: "io", image });
    expect((await operations.verify(ctx, { bdf: DEV, scope: "io", image })).passed).toBe(true);
  });

  it("kernel cxl_bus: decoders wiped, restore full + verify full pass", async () => {
    const { ctx, sim } = rig();
    const image = await operations.save(ctx, { bdf: DEV });
    await operations.reset(ctx, { bdf: DEV, method: "kernel", kernelMethod: "cxl_bus" });
    expect(sim.counters(DEV).conventionalReset).toBe(1);
    expect((await readDecoder(sim, 0)).committed).toBe(false);
    await operations.restore(ctx, { bdf: DEV, scope: "full", image });
    expect((await operations.verify(ctx, { bdf: DEV, scope: "full", image })).passed).toBe(true);
  });

  it("a kernel method the device does not list: unsupported, nothing reset", async () => {
    const { ctx, sim } = rig({ device: { flr: false } });
    const err = await rejection(operations.reset(ctx, { bdf: DEV, method: "kernel", kernelMethod: "flr" }));
    expect(err.details).toMatchObject({ reason: "kernel-method-unsupported", kernelMethod: "flr" });
    expect(sim.counters(DEV).flr).toBe(0);
  });
});
