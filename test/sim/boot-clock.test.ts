// Host boot applies the firmware configuration; the virtual clock makes waits free and deterministic.
import { describe, expect, it } from "vitest";
import { readFlag } from "../../shared/cxl/regdef.ts";
import { CXL_DEVICE, HDM, PCI } from "../../shared/cxl/registers.ts";
import { createSimHost, simpleHost, VirtualClock } from "../../shared/sim/index.ts";
import { DEV, regs, rig } from "./helpers.ts";

describe("boot", () => {
  it("a new host is booted: BAR0 assigned, Memory Space on, decoders committed, Mem_Enable, HDM enable", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    expect((await h.configRead(DEV, PCI.command.offset, 2)) & 0x2).toBe(0x2);
    expect(await h.configRead(DEV, 0x14, 4)).not.toBe(0);
    expect(readFlag(CXL_DEVICE.control, await r.cfg.read(CXL_DEVICE.control), "memEnable")).toBe(true);
    expect(readFlag(HDM.globalControl, await r.hdmRead(HDM.globalControl), "hdmDecoderEnable")).toBe(true);
    expect(await r.decoder(0)).toMatchObject({ committed: true, base: 0x1_0000_0000n, size: 0x1000_0000n });
  });

  it("firmware may set CONFIG_LOCK and Lock On Commit", async () => {
    const { h } = rig({
      device: {
        firmware: {
          decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000, lockOnCommit: true }],
          configLock: true,
        },
      },
    });
    const r = await regs(h, DEV);
    expect(readFlag(CXL_DEVICE.lock, await r.cfg.read(CXL_DEVICE.lock), "configLock")).toBe(true);
    expect((await r.decoder(0)).lockOnCommit).toBe(true);
  });

  it("boot() again is a power cycle: software changes are gone, firmware state is back", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.lock, 1);
    h.boot();
    expect(readFlag(CXL_DEVICE.lock, await r.cfg.read(CXL_DEVICE.lock), "configLock")).toBe(false);
    expect((await r.decoder(0)).committed).toBe(true);
  });

  it("a device without firmware decoders boots with HDM disabled and Mem_Enable clear", async () => {
    const { h } = rig({ device: { firmware: { decoders: [] } } });
    const r = await regs(h, DEV);
    expect(readFlag(CXL_DEVICE.control, await r.cfg.read(CXL_DEVICE.control), "memEnable")).toBe(false);
    expect(await r.hdmRead(HDM.globalControl)).toBe(0);
  });
});

describe("VirtualClock", () => {
  it("sleep advances virtual time at once; advance moves it by hand", async () => {
    const c = new VirtualClock();
    expect(c.now()).toBe(0);
    await c.sleep(100);
    expect(c.now()).toBe(100);
    c.advance(5);
    expect(c.now()).toBe(105);
    expect(() => c.advance(-1)).toThrow(RangeError);
  });

  it("the host uses the injected clock: a commit completes when that clock says so", async () => {
    const clock = new VirtualClock(1000);
    const h = createSimHost(simpleHost({ device: { firmware: { decoders: [] } } }), {
      clock,
      timings: { commitDelayMs: 7 },
    });
    expect(h.clock).toBe(clock);
    const r = await regs(h, DEV);
    await r.hdmWrite(HDM.globalControl, 2);
    await r.program(0, 0x1_0000_0000n, 0x1000_0000n, 1 << 9);
    clock.advance(6);
    expect((await r.decoder(0)).committed).toBe(false);
    clock.advance(1);
    expect((await r.decoder(0)).committed).toBe(true);
  });
});
