import { describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { DEV, PORT, rig } from "./fixtures.ts";

describe("probe", () => {
  it("reports what a plan needs for the simple host's Type-2 device", async () => {
    const { ctx } = rig();
    const p = await operations.probe(ctx, { bdf: DEV });
    expect(p.flrCapable).toBe(true);
    expect(p.cxl).toMatchObject({
      cacheCapable: true,
      memCapable: true,
      cxlResetCapable: true,
      cxlResetTimeoutMs: 100,
      cxlResetTimeoutReserved: false,
      memClrCapable: true,
      wbInvCapable: true,
      memEnabled: true,
      configLock: false,
      hdmCount: 1,
      decoderCount: 2,
      component: { bar: 0, offset: 0x10000 },
    });
    expect(p.decoders).toEqual([
      {
        index: 0,
        base: "0x100000000",
        size: "0x10000000",
        committed: true,
        lockOnCommit: false,
        errorNotCommitted: false,
      },
      { index: 1, base: "0x0", size: "0x0", committed: false, lockOnCommit: false, errorNotCommitted: false },
    ]);
    expect(p.hdmDecoderEnable).toBe(true);
    expect(p.memoryRanges).toEqual([
      { decoder: 0, start: "0x100000000", end: "0x10fffffff", size: "0x10000000" },
    ]);
    expect(p.functions).toEqual([DEV]);
    expect(p.bridge).toEqual({ bdf: PORT, cxlPort: true, unmaskSbr: false });
    expect(p.siblings).toEqual([]);
    expect(p.decoded).toBeDefined();
    expect(p.decoded!.config.cxlDevice).not.toBeNull();
    expect(JSON.parse(JSON.stringify(p))).toEqual(p);
  });

  it("brief: the same facts without the decoded registers", async () => {
    const { ctx } = rig();
    const full = await operations.probe(ctx, { bdf: DEV });
    const brief = await operations.probe(ctx, { bdf: DEV, brief: true });
    expect(brief).not.toHaveProperty("decoded");
    const { decoded: _d, ...rest } = full;
    expect(brief).toEqual(rest);
    expect(JSON.stringify(brief).length).toBeLessThan(JSON.stringify(full).length / 2);
  });
});
