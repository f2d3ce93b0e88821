import { describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { PCI } from "../../shared/cxl/registers.ts";
import { DEV, rig } from "./fixtures.ts";

// A quarantined device is left with Command = INTx Disable only (reset-rules.md, "Failures"): Memory Space off,
// so its component registers read all-ones. Probe and save after an operator's release must still read them.
const INTX_ONLY = 0x0400;

describe("component registers behind a disabled Memory Space", () => {
  it("probe reads the HDM decoders and leaves Command exactly as it found it", async () => {
    const { ctx, sim } = rig();
    await sim.configWrite(DEV, PCI.command.offset, 2, INTX_ONLY);
    const p = await operations.probe(ctx, { bdf: DEV });
    expect(p.decoders[0]).toMatchObject({ committed: true, base: "0x100000000", size: "0x10000000" });
    expect(await sim.configRead(DEV, PCI.command.offset, 2)).toBe(INTX_ONLY);
  });

  it("save records Command as it was (Memory Space off) and the decoders as they are", async () => {
    const { ctx, sim } = rig();
    await sim.configWrite(DEV, PCI.command.offset, 2, INTX_ONLY);
    const image = await operations.save(ctx, { bdf: DEV });
    expect(Number(image.pci.header[1]) & 0xffff).toBe(INTX_ONLY);
    const d0 = image.cxl?.hdm?.decoders[0]?.registers;
    expect(d0?.baseHigh?.raw).toBe("0x00000001");
    expect(d0?.control?.committed).toBe(true);
    expect(await sim.configRead(DEV, PCI.command.offset, 2)).toBe(INTX_ONLY);
  });

  it("verify reads them too: a device saved and restored with Memory Space off verifies, Command left as is", async () => {
    const { ctx, sim } = rig();
    await sim.configWrite(DEV, PCI.command.offset, 2, INTX_ONLY);
    const image = await operations.save(ctx, { bdf: DEV });
    await operations.reset(ctx, { bdf: DEV, method: "cxl" });
    await operations.restore(ctx, { bdf: DEV, scope: "full", image });
    expect(await sim.configRead(DEV, PCI.command.offset, 2)).toBe(INTX_ONLY);
    const v = await operations.verify(ctx, { bdf: DEV, scope: "full", image });
    expect(v.mismatches).toEqual([]);
    expect(v.passed).toBe(true);
    expect(await sim.configRead(DEV, PCI.command.offset, 2)).toBe(INTX_ONLY);
  });
});
