// Cache write-back + invalidate (DVSEC Control2 bit 1, only if WB+I capable) → Status2 Cache Invalid.
import { describe, expect, it } from "vitest";
import { encodeRegister, readFlag } from "../../shared/cxl/regdef.ts";
import { CXL_DEVICE } from "../../shared/cxl/registers.ts";
import { DEV, regs, rig } from "./helpers.ts";

const c2 = (v: Record<string, boolean>) => encodeRegister(CXL_DEVICE.control2, v);
const cacheInvalid = (raw: number) => readFlag(CXL_DEVICE.status2, raw, "cacheInvalid");

describe("cache write-back and invalidate", () => {
  it("sets Cache Invalid cacheFlushDelayMs after Initiate, with Disable Caching set", async () => {
    const { h, clock } = rig({ timings: { cacheFlushDelayMs: 5 } });
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ disableCaching: true }));
    await r.cfg.write(CXL_DEVICE.control2, c2({ disableCaching: true, initiateCacheWbInv: true }));
    await clock.sleep(4);
    expect(cacheInvalid(await r.cfg.read(CXL_DEVICE.status2))).toBe(false);
    await clock.sleep(1);
    expect(cacheInvalid(await r.cfg.read(CXL_DEVICE.status2))).toBe(true);
    expect(h.counters(DEV).cacheFlushes).toBe(1);
  });

  it("Initiate without Disable Caching is ignored", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCacheWbInv: true }));
    await clock.sleep(10);
    expect(cacheInvalid(await r.cfg.read(CXL_DEVICE.status2))).toBe(false);
  });

  it("a device that is not WB+I capable never sets Cache Invalid", async () => {
    const { h, clock } = rig({ device: { cacheWbInvCapable: false } });
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ disableCaching: true, initiateCacheWbInv: true }));
    await clock.sleep(10);
    expect(cacheInvalid(await r.cfg.read(CXL_DEVICE.status2))).toBe(false);
  });

  it("Cache Invalid reads 0 again once Disable Caching is cleared", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ disableCaching: true, initiateCacheWbInv: true }));
    await clock.sleep(1);
    expect(cacheInvalid(await r.cfg.read(CXL_DEVICE.status2))).toBe(true);
    await r.cfg.write(CXL_DEVICE.control2, 0);
    expect(cacheInvalid(await r.cfg.read(CXL_DEVICE.status2))).toBe(false);
  });

  it("the Initiate bits of Control2 read back 0 (command register)", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ disableCaching: true, initiateCacheWbInv: true }));
    expect(await r.cfg.read(CXL_DEVICE.control2)).toBe(c2({ disableCaching: true }));
  });
});
