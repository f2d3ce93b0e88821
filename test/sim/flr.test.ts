// FLR (PCIe DevCtl bit 15): CXL.io scope. The spec says FLR has no effect on CXL.cache/CXL.mem state.
import { describe, expect, it } from "vitest";
import { readFlag } from "../../shared/cxl/regdef.ts";
import { CXL_DEVICE, cxlRange, HDM, PCI, PCIE } from "../../shared/cxl/registers.ts";
import type { SimHost } from "../../shared/sim/index.ts";
import { DEV, regs, rig } from "./helpers.ts";

async function flr(h: SimHost, pcie: number) {
  const off = pcie + PCIE.devCtl.offset;
  await h.configWrite(DEV, off, 2, (await h.configRead(DEV, off, 2)) | 0x8000);
}

describe("FLR", () => {
  it("resets CXL.io state: Command, BAR0, PCIe Device Control to defaults", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    const devCtl = await h.configRead(DEV, r.pcie + PCIE.devCtl.offset, 2);
    expect(await h.configRead(DEV, PCI.command.offset, 2)).not.toBe(0);
    await flr(h, r.pcie);
    await clock.sleep(100);
    expect(await h.configRead(DEV, PCI.command.offset, 2)).toBe(0);
    expect((await h.configRead(DEV, 0x10, 4)) & ~0xf).toBe(0);
    expect(await h.configRead(DEV, 0x14, 4)).toBe(0);
    expect(await h.configRead(DEV, r.pcie + PCIE.devCtl.offset, 2)).not.toBe(devCtl);
  });

  it("keeps DVSEC Control, Range Base, CONFIG_LOCK and the HDM decoders", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.lock, 1);
    const bars = [await h.configRead(DEV, 0x10, 4), await h.configRead(DEV, 0x14, 4)];
    const before = {
      control: await r.cfg.read(CXL_DEVICE.control),
      baseHigh: await r.cfg.read(cxlRange(1).baseHigh),
      baseLow: await r.cfg.read(cxlRange(1).baseLow),
      global: await r.hdmRead(HDM.globalControl),
      d0: await r.decoder(0),
    };
    await flr(h, r.pcie);
    await clock.sleep(100);
    expect(readFlag(CXL_DEVICE.lock, await r.cfg.read(CXL_DEVICE.lock), "configLock")).toBe(true);
    expect(await r.cfg.read(CXL_DEVICE.control)).toBe(before.control);
    expect(await r.cfg.read(cxlRange(1).baseHigh)).toBe(before.baseHigh);
    expect(await r.cfg.read(cxlRange(1).baseLow)).toBe(before.baseLow);
    // PCI restore (BARs, then Memory Space) to reach the component block.
    await h.configWrite(DEV, 0x10, 4, bars[0]!);
    await h.configWrite(DEV, 0x14, 4, bars[1]!);
    await h.configWrite(DEV, PCI.command.offset, 2, 0x2);
    expect(await r.hdmRead(HDM.globalControl)).toBe(before.global);
    expect(await r.decoder(0)).toEqual(before.d0);
    expect(before.d0.committed).toBe(true);
  });

  it("reads all-ones for notReadyMs (100) after initiate, then answers", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    await flr(h, r.pcie);
    expect(await h.configRead(DEV, 0, 4)).toBe(0xffff_ffff);
    await clock.sleep(99);
    expect(await h.configRead(DEV, 0, 2)).toBe(0xffff);
    await clock.sleep(1);
    expect(await h.configRead(DEV, 0, 2)).toBe(0x8086);
  });

  it("writes while not ready are dropped", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    await flr(h, r.pcie);
    await h.configWrite(DEV, PCI.command.offset, 2, 0x2);
    await clock.sleep(100);
    expect(await h.configRead(DEV, PCI.command.offset, 2)).toBe(0);
  });

  it("a function that is not FLR capable ignores Initiate FLR", async () => {
    const { h } = rig({ device: { flr: false } });
    const r = await regs(h, DEV);
    expect(readFlag(PCIE.devCap, await h.configRead(DEV, r.pcie + PCIE.devCap.offset, 4), "flrCapable")).toBe(
      false,
    );
    const cmd = await h.configRead(DEV, PCI.command.offset, 2);
    await flr(h, r.pcie);
    expect(await h.configRead(DEV, PCI.command.offset, 2)).toBe(cmd);
    expect(h.counters(DEV).flr).toBe(0);
  });

  it("MMIO to the component block reads all-ones until BAR0 and Memory Space are restored", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    const bar0 = await h.configRead(DEV, 0x10, 4);
    const bar1 = await h.configRead(DEV, 0x14, 4);
    await flr(h, r.pcie);
    await clock.sleep(100);
    expect(await r.hdmRead(HDM.globalControl)).toBe(0xffff_ffff);
    await h.configWrite(DEV, PCI.command.offset, 2, 0x2);
    expect(await r.hdmRead(HDM.globalControl)).toBe(0xffff_ffff); // BAR0 still 0: no decode
    await h.configWrite(DEV, PCI.command.offset, 2, 0);
    await h.configWrite(DEV, 0x10, 4, bar0);
    await h.configWrite(DEV, 0x14, 4, bar1);
    await h.configWrite(DEV, PCI.command.offset, 2, 0x2);
    const d0 = await r.decoder(0);
    expect(d0).toMatchObject({ committed: true, base: 0x1_0000_0000n });
    expect(readFlag(HDM.globalControl, await r.hdmRead(HDM.globalControl), "hdmDecoderEnable")).toBe(true);
  });
});
