// Access types from the register tables: RO, RW, RWL, RWO, RW1C, CMD, reserved bits, byte lanes.
import { describe, expect, it } from "vitest";
import { accessMask, encodeRegister, readField, readFlag } from "../../shared/cxl/regdef.ts";
import { CXL_DEVICE, cxlRange, HDM, HDM_DECODER, PCI, PCIE } from "../../shared/cxl/registers.ts";
import { nextValue } from "../../shared/sim/regfile.ts";
import { DEV, regs, rig } from "./helpers.ts";

describe("register access semantics", () => {
  it("RO registers ignore writes (vendor id, DVSEC Capability)", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    const vendor = await h.configRead(DEV, PCI.vendorId.offset, 2);
    await h.configWrite(DEV, PCI.vendorId.offset, 2, 0x1234);
    expect(await h.configRead(DEV, PCI.vendorId.offset, 2)).toBe(vendor);
    const cap = await r.cfg.read(CXL_DEVICE.capability);
    await r.cfg.write(CXL_DEVICE.capability, 0);
    expect(await r.cfg.read(CXL_DEVICE.capability)).toBe(cap);
  });

  it("RW fields take the written value", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, encodeRegister(CXL_DEVICE.control2, { disableCaching: true }));
    expect(readFlag(CXL_DEVICE.control2, await r.cfg.read(CXL_DEVICE.control2), "disableCaching")).toBe(true);
  });

  it("a 1-byte write to the high byte of a 16-bit register changes only those 8 bits", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    const devCtl = r.pcie + PCIE.devCtl.offset;
    const before = await h.configRead(DEV, devCtl, 2);
    // High byte: Max Read Request Size (14:12) = 5, No Snoop (11) cleared.
    await h.configWrite(DEV, devCtl + 1, 1, 0x50);
    const after = await h.configRead(DEV, devCtl, 2);
    expect(after & 0xff).toBe(before & 0xff);
    expect(readField(PCIE.devCtl, after, "maxReadRequestSize")).toBe(5);
    expect(readFlag(PCIE.devCtl, after, "noSnoop")).toBe(false);
  });

  it("a dword write spanning Command and Status acts on each register by its own rules", async () => {
    const { h } = rig();
    const status = await h.configRead(DEV, PCI.status.offset, 2);
    // Command = Memory Space only; Status half all-ones: RO bits stay, RW1C bits (clear) stay clear.
    await h.configWrite(DEV, PCI.command.offset, 4, 0xffff_0002);
    expect(await h.configRead(DEV, PCI.command.offset, 2)).toBe(0x0002);
    expect(await h.configRead(DEV, PCI.status.offset, 2)).toBe(status);
  });

  it("reserved bits read zero: DVSEC Control bits 12–13 and 15, decoder base bits 27:0", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control, 0xffff);
    const ctl = await r.cfg.read(CXL_DEVICE.control);
    expect(ctl & 0xb000).toBe(0);
    expect(readFlag(CXL_DEVICE.control, ctl, "memEnable")).toBe(true);
    await r.decWrite(1, HDM_DECODER.baseLow, 0xffff_ffff);
    expect(await r.decRead(1, HDM_DECODER.baseLow)).toBe(0xf000_0000);
  });

  it("IO_Enable is RO and reads 1", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control, 0);
    expect(readFlag(CXL_DEVICE.control, await r.cfg.read(CXL_DEVICE.control), "ioEnable")).toBe(true);
  });

  it("CMD bits read 0 after the write that starts them (Initiate FLR)", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    const devCtl = r.pcie + PCIE.devCtl.offset;
    await h.configWrite(DEV, devCtl, 2, (await h.configRead(DEV, devCtl, 2)) | 0x8000);
    await clock.sleep(100);
    expect(readFlag(PCIE.devCtl, await h.configRead(DEV, devCtl, 2), "initiateFlr")).toBe(false);
  });

  it("RW1C: writing 1 clears, writing 0 leaves the bit (PCI Status, by the register table)", () => {
    // Status bits 8 and 11 set; write 1 to bit 8 only, and 1s to RO bit 4 (Capabilities List).
    const next = nextValue(PCI.status, 0x0910, 0x0110, 0xffff, 0);
    expect(next.value).toBe(0x0810);
  });

  it("RWO only sets; RW and RWL bits frozen by a lock keep their value", () => {
    expect(nextValue(CXL_DEVICE.lock, 1, 0, 0xffff, 0).value).toBe(1);
    expect(nextValue(CXL_DEVICE.lock, 0, 1, 0xffff, 0).value).toBe(1);
    const frozen = accessMask(CXL_DEVICE.control, "RWL");
    expect(nextValue(CXL_DEVICE.control, 0x0006, 0x0003, 0xffff, frozen).value).toBe(0x0006);
  });

  it("BAR0 reads its size mask after all-ones is written (BAR sizing)", async () => {
    const { h } = rig();
    await h.configWrite(DEV, 0x10, 4, 0xffff_ffff);
    const low = await h.configRead(DEV, 0x10, 4);
    expect(low & 0xf).toBe(0x4); // 64-bit memory BAR, not prefetchable
    const size = ~(low & ~0xf) + 1;
    expect(size).toBe(0x20000); // 64 KiB block at offset 0x10000
  });
});

describe("CONFIG_LOCK (RWO) and RWL fields", () => {
  it("with CONFIG_LOCK set, DVSEC Control and Range Base are read-only; Control2 (RW) is not", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    const ctl = await r.cfg.read(CXL_DEVICE.control);
    const base = await r.cfg.read(cxlRange(1).baseLow);
    await r.cfg.write(CXL_DEVICE.lock, 1);
    await r.cfg.write(CXL_DEVICE.control, 0);
    await r.cfg.write(cxlRange(1).baseLow, 0x7000_0000);
    expect(await r.cfg.read(CXL_DEVICE.control)).toBe(ctl);
    expect(await r.cfg.read(cxlRange(1).baseLow)).toBe(base);
    await r.cfg.write(CXL_DEVICE.control2, 1);
    expect(await r.cfg.read(CXL_DEVICE.control2)).toBe(1);
  });

  it("without CONFIG_LOCK the RWL fields are writable", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(cxlRange(1).baseHigh, 0x3);
    expect(await r.cfg.read(cxlRange(1).baseHigh)).toBe(3);
  });

  it("CONFIG_LOCK sticks: writing 0 does not clear it", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.lock, 1);
    await r.cfg.write(CXL_DEVICE.lock, 0);
    expect(readFlag(CXL_DEVICE.lock, await r.cfg.read(CXL_DEVICE.lock), "configLock")).toBe(true);
  });

  it("CONFIG_LOCK does not lock the HDM decoders (their lock is Lock On Commit)", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.lock, 1);
    await r.decWrite(1, HDM_DECODER.baseHigh, 2);
    expect(await r.decRead(1, HDM_DECODER.baseHigh)).toBe(2);
  });
});

describe("access checks", () => {
  it("an unaligned or out-of-range config access is a bad-input error", async () => {
    const { h } = rig();
    await expect(h.configRead(DEV, 0x101, 2)).rejects.toMatchObject({ kind: "bad-input" });
    await expect(h.configRead(DEV, 0x1000, 1)).rejects.toMatchObject({ kind: "bad-input" });
  });

  it("an absent function reads all-ones and ignores writes", async () => {
    const { h } = rig();
    expect(await h.configRead("0000:07:00.0", 0, 4)).toBe(0xffff_ffff);
    expect(await h.configRead("0000:07:00.0", 0, 2)).toBe(0xffff);
    await expect(h.configWrite("0000:07:00.0", 4, 2, 6)).resolves.toBeUndefined();
  });

  it("MMIO only decodes with Memory Space on", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    expect(await r.hdmRead(HDM.capability)).not.toBe(0xffff_ffff);
    await h.configWrite(DEV, PCI.command.offset, 2, 0);
    expect(await r.decRead(0, HDM_DECODER.control)).toBe(0xffff_ffff);
  });

  it("MMIO is 32-bit on BAR0 only; another BAR or an unaligned offset is a bad-input error", async () => {
    const { h } = rig();
    await expect(h.mmioRead32(DEV, 2, 0)).rejects.toMatchObject({ kind: "bad-input" });
    await expect(h.mmioRead32(DEV, 0, 0x11102)).rejects.toMatchObject({ kind: "bad-input" });
    await expect(h.mmioRead32(DEV, 0, 0x20000)).rejects.toMatchObject({ kind: "bad-input" });
  });

  it("configReadAll returns the 4 KiB extended space", async () => {
    const { h } = rig();
    const all = await h.configReadAll(DEV);
    expect(all.length).toBe(4096);
    expect(all[0]! | (all[1]! << 8)).toBe(0x8086);
  });
});
