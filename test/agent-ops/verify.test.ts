import { describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { DEV, DVSEC, decoderOffset, rig } from "./fixtures.ts";
import { rejection } from "./helpers.ts";

const COMMIT = 1 << 9;

describe("verify", () => {
  it("passes on an untouched device in both scopes", async () => {
    const { ctx } = rig();
    const image = await operations.save(ctx, { bdf: DEV });
    for (const scope of ["io", "full"] as const) {
      const v = await operations.verify(ctx, { bdf: DEV, scope, image });
      expect(v).toMatchObject({ passed: true, mismatches: [], scopeViolation: false });
    }
  });

  it("lists every changed field, not only the first", async () => {
    const { ctx, sim } = rig();
    const image = await operations.save(ctx, { bdf: DEV });
    await sim.configWrite(DEV, DVSEC + 0x10, 2, 1 << 3); // Control2: Mem Clr Enable
    await sim.configWrite(DEV, 0x3c, 1, 0x05); // Interrupt Line (firmware: 0x0b)
    const v = await operations.verify(ctx, { bdf: DEV, scope: "io", image });
    expect(v.passed).toBe(false);
    expect(v.mismatches).toEqual([
      { register: "pci.interruptLine", field: "interruptLine", expected: 0x0b, actual: 0x05, domain: "pci" },
      {
        register: "dvsec.control2",
        field: "cxlResetMemClrEnable",
        expected: false,
        actual: true,
        domain: "cxl",
      },
    ]);
    expect(v.scopeViolation).toBe(true);
  });

  it("never relies on the Commit bit reading back (QEMU clears it once committed)", async () => {
    const { ctx, rec } = rig();
    const image = await operations.save(ctx, { bdf: DEV });
    await operations.reset(ctx, { bdf: DEV, method: "cxl" });
    rec.readHook = (a) =>
      a.op === "mmioRead" &&
      (a.offset - decoderOffset(0, 0x10)) % 0x20 === 0 &&
      a.offset >= decoderOffset(0, 0x10)
        ? a.value & ~COMMIT
        : a.value;
    const r = await operations.restore(ctx, { bdf: DEV, scope: "full", image });
    expect(r.decoders[0]?.action).toBe("committed");
    const v = await operations.verify(ctx, { bdf: DEV, scope: "full", image });
    expect(v.mismatches).toEqual([]);
    // A decoder the image had committed that does not read Committed is a mismatch.
    rec.readHook = (a) =>
      a.op === "mmioRead" && a.offset === decoderOffset(0, 0x10) ? a.value & ~(1 << 10) : a.value;
    const bad = await operations.verify(ctx, { bdf: DEV, scope: "full", image });
    expect(bad.mismatches).toEqual([
      { register: "decoder0.control", field: "committed", expected: true, actual: false, domain: "cxl" },
    ]);
  });

  it("a device that does not answer: device-absent", async () => {
    const { ctx, sim } = rig();
    const image = await operations.save(ctx, { bdf: DEV });
    sim.faults.set(DEV, { name: "gone" });
    const err = await rejection(operations.verify(ctx, { bdf: DEV, scope: "io", image }));
    expect(err.kind).toBe("device-absent");
    expect(err.details).toMatchObject({ register: "pci.vendorId", value: "0xffff" });
  });
});
