// CXL Reset (DVSEC Control2 bit 2 on function 0): CXL.cache/mem state of every function to defaults,
// CXL.io untouched; 100 ms of undefined config access; Reset Complete / Reset Error in Status2.
import { describe, expect, it } from "vitest";
import { encodeRegister, readFlag } from "../../shared/cxl/regdef.ts";
import { CXL_DEVICE, cxlRange, HDM, PCI } from "../../shared/cxl/registers.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { DEV, regs, rig, rigFor } from "./helpers.ts";

const c2 = (v: Record<string, boolean>) => encodeRegister(CXL_DEVICE.control2, v);
const status2 = (raw: number) => ({
  cacheInvalid: readFlag(CXL_DEVICE.status2, raw, "cacheInvalid"),
  complete: readFlag(CXL_DEVICE.status2, raw, "cxlResetComplete"),
  error: readFlag(CXL_DEVICE.status2, raw, "cxlResetError"),
});

describe("CXL Reset", () => {
  it("wipes DVSEC Control (except IO_Enable), Range Base, HDM Global Control and decoders", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    expect((await r.decoder(0)).committed).toBe(true);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(100);
    expect(status2(await r.cfg.read(CXL_DEVICE.status2)).complete).toBe(true);
    expect(await r.cfg.read(CXL_DEVICE.control)).toBe(encodeRegister(CXL_DEVICE.control, { ioEnable: true }));
    expect(await r.cfg.read(cxlRange(1).baseHigh)).toBe(0);
    expect(await r.cfg.read(cxlRange(1).baseLow)).toBe(0);
    expect(await r.hdmRead(HDM.globalControl)).toBe(0);
    expect(await r.decoder(0)).toMatchObject({ committed: false, commit: false, base: 0n, size: 0n });
    expect(h.counters(DEV).cxlReset).toBe(1);
  });

  it("does not touch CXL.io state: Command, BAR0, Range Size (RO)", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    const io = [
      await h.configRead(DEV, PCI.command.offset, 2),
      await h.configRead(DEV, 0x10, 4),
      await h.configRead(DEV, 0x14, 4),
    ];
    const sizeLow = await r.cfg.read(cxlRange(1).sizeLow);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(100);
    expect([
      await h.configRead(DEV, PCI.command.offset, 2),
      await h.configRead(DEV, 0x10, 4),
      await h.configRead(DEV, 0x14, 4),
    ]).toEqual(io);
    expect(await r.cfg.read(cxlRange(1).sizeLow)).toBe(sizeLow);
  });

  it("config reads are all-ones for the first 100 ms after Initiate (touch nothing)", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(99);
    expect(await r.cfg.read(CXL_DEVICE.status2)).toBe(0xffff);
    expect(await h.configRead(DEV, 0, 4)).toBe(0xffff_ffff);
    await clock.sleep(1);
    expect(await h.configRead(DEV, 0, 2)).toBe(0x8086);
  });

  it("Reset Complete appears after cxlResetDurationMs, within the declared timeout", async () => {
    // Timeout code 2 = 1 s; the device takes 400 ms.
    const { h, clock } = rigFor(simpleHost({ device: { cxlResetTimeout: 2 } }), { cxlResetDurationMs: 400 });
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(300);
    expect(status2(await r.cfg.read(CXL_DEVICE.status2))).toMatchObject({ complete: false, error: false });
    await clock.sleep(100);
    expect(status2(await r.cfg.read(CXL_DEVICE.status2)).complete).toBe(true);
  });

  it("a duration longer than the declared timeout is clamped to it", async () => {
    const { h, clock } = rig({ timings: { cxlResetDurationMs: 5000 } }); // declared: code 1 = 100 ms
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(100);
    expect(status2(await r.cfg.read(CXL_DEVICE.status2)).complete).toBe(true);
  });

  it("Mem Clr: the device memory is cleared only when Mem Clr Enable is set and capable", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(100);
    expect(h.counters(DEV).memCleared).toBe(0);
    await r.cfg.write(CXL_DEVICE.control2, c2({ cxlResetMemClrEnable: true, initiateCxlReset: true }));
    await clock.sleep(100);
    expect(h.counters(DEV).memCleared).toBe(1);

    const nc = rig({ device: { memClrCapable: false } });
    const rn = await regs(nc.h, DEV);
    await rn.cfg.write(CXL_DEVICE.control2, c2({ cxlResetMemClrEnable: true, initiateCxlReset: true }));
    await nc.clock.sleep(100);
    expect(nc.h.counters(DEV).cxlReset).toBe(1);
    expect(nc.h.counters(DEV).memCleared).toBe(0);
  });

  it("refused with Reset Error when Cache_Enable is set and caching was not disabled and flushed", async () => {
    const { h, clock } = rig({
      device: { firmware: { decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000 }], cacheEnable: true } },
    });
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(100);
    expect(status2(await r.cfg.read(CXL_DEVICE.status2))).toMatchObject({ complete: false, error: true });
    expect((await r.decoder(0)).committed).toBe(true); // nothing was reset
  });

  it("after Disable Caching + WB+I and Cache Invalid, the same device resets", async () => {
    const { h, clock } = rig({
      device: { firmware: { decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000 }], cacheEnable: true } },
    });
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ disableCaching: true, initiateCacheWbInv: true }));
    await clock.sleep(1);
    expect(status2(await r.cfg.read(CXL_DEVICE.status2)).cacheInvalid).toBe(true);
    await r.cfg.write(CXL_DEVICE.control2, c2({ disableCaching: true, initiateCxlReset: true }));
    await clock.sleep(100);
    expect(status2(await r.cfg.read(CXL_DEVICE.status2))).toMatchObject({ complete: true, error: false });
  });

  it("a new Initiate clears the previous Complete / Error", async () => {
    const { h, clock } = rig({ timings: { cxlResetDurationMs: 100 } });
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(100);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(100);
    expect(status2(await r.cfg.read(CXL_DEVICE.status2)).complete).toBe(true);
    expect(h.counters(DEV).cxlReset).toBe(2);
  });

  it("a device that is not CXL Reset capable ignores Initiate CXL Reset", async () => {
    const { h, clock } = rig({ device: { cxlResetCapable: false } });
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    expect(await h.configRead(DEV, 0, 2)).toBe(0x8086); // no undefined window
    await clock.sleep(100);
    expect((await r.decoder(0)).committed).toBe(true);
    expect(status2(await r.cfg.read(CXL_DEVICE.status2)).complete).toBe(false);
  });

  it("CONFIG_LOCK survives (cleared only by a conventional reset) and keeps the fields it locks", async () => {
    const { h, clock } = rig({
      device: { firmware: { decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000 }], configLock: true } },
    });
    const r = await regs(h, DEV);
    const control = await r.cfg.read(CXL_DEVICE.control);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(100);
    expect(readFlag(CXL_DEVICE.lock, await r.cfg.read(CXL_DEVICE.lock), "configLock")).toBe(true);
    expect(readFlag(CXL_DEVICE.control, control, "memEnable")).toBe(true);
    expect(await r.cfg.read(CXL_DEVICE.control)).toBe(control);
    expect(await r.cfg.read(cxlRange(1).baseHigh)).toBe(1);
    expect((await r.decoder(0)).committed).toBe(false); // the decoders are still reset
  });

  it("Lock On Commit decoders are reset by CXL Reset", async () => {
    const { h, clock } = rig({
      device: { firmware: { decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000, lockOnCommit: true }] } },
    });
    const r = await regs(h, DEV);
    expect((await r.decoder(0)).lockOnCommit).toBe(true);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(100);
    expect(await r.decoder(0)).toMatchObject({ committed: false, lockOnCommit: false, size: 0n });
  });
});

describe("CXL Reset of a multi-function device", () => {
  const spec = () =>
    simpleHost({
      device: {
        firmware: { decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000 }] },
        functions: [
          { fn: 1, firmware: { decoders: [{ base: 0x2_0000_0000, size: 0x1000_0000 }] } },
          { fn: 2, cxl: false },
        ],
      },
    });

  it("function 0's reset wipes the CXL.mem state of every function", async () => {
    const { h, clock } = rigFor(spec());
    const fn1 = await regs(h, "0000:01:00.1");
    expect((await fn1.decoder(0)).committed).toBe(true);
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(100);
    expect((await fn1.decoder(0)).committed).toBe(false);
    expect(readFlag(CXL_DEVICE.control, await fn1.cfg.read(CXL_DEVICE.control), "memEnable")).toBe(false);
    expect(h.counters("0000:01:00.1").cxlReset).toBe(1);
  });

  it("every function is in the undefined window; Initiate on function 1 does nothing", async () => {
    const { h, clock } = rigFor(spec());
    const fn1 = await regs(h, "0000:01:00.1");
    expect(
      readFlag(CXL_DEVICE.capability, await fn1.cfg.read(CXL_DEVICE.capability), "cxlResetCapable"),
    ).toBe(false);
    await fn1.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    expect((await fn1.decoder(0)).committed).toBe(true);
    const r = await regs(h, DEV);
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    expect(await h.configRead("0000:01:00.2", 0, 4)).toBe(0xffff_ffff);
    expect(await h.configRead("0000:01:00.1", 0, 4)).toBe(0xffff_ffff);
    await clock.sleep(100);
    expect(await h.configRead("0000:01:00.2", 0, 2)).toBe(0x8086);
  });
});
