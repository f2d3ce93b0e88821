// Fault injection: each named fault, set and cleared at run time, bites where it says.
import { describe, expect, it } from "vitest";
import { encodeRegister, readFlag } from "../../shared/cxl/regdef.ts";
import { CXL_DEVICE, HDM_DECODER, PCIE } from "../../shared/cxl/registers.ts";
import { FaultSpec } from "../../shared/sim/index.ts";
import { DEV, MiB256, regs, rig } from "./helpers.ts";

const COMMIT = encodeRegister(HDM_DECODER.control, { commit: true });
const c2 = (v: Record<string, boolean>) => encodeRegister(CXL_DEVICE.control2, v);
const s2 = (raw: number, name: string) => readFlag(CXL_DEVICE.status2, raw, name);

describe("fault API", () => {
  it("set, list and clear faults by name at run time", () => {
    const { h } = rig();
    h.faults.set(DEV, { name: "commit-error", decoder: 1 });
    h.faults.set(DEV, { name: "gone" });
    expect(h.faults.list(DEV).map((f) => f.name)).toEqual(["commit-error", "gone"]);
    h.faults.clear(DEV, "gone");
    expect(h.faults.list(DEV)).toEqual([{ name: "commit-error", decoder: 1 }]);
    h.faults.clear(DEV);
    expect(h.faults.list(DEV)).toEqual([]);
  });

  it("the same fault set twice replaces itself", () => {
    const { h } = rig();
    h.faults.set(DEV, { name: "long-not-ready", ms: 500 });
    h.faults.set(DEV, { name: "long-not-ready", ms: 900 });
    expect(h.faults.list(DEV)).toEqual([{ name: "long-not-ready", ms: 900 }]);
  });

  it("rejects an invalid fault with the path of the bad key", () => {
    const { h } = rig();
    expect(() => h.faults.set(DEV, { name: "commit-error", decoder: "x" })).toThrow(/fault\.decoder/);
    expect(() => h.faults.set(DEV, { name: "melt" })).toThrow(/invalid fault/);
    expect(() => h.faults.set(DEV, { name: "bit-flip", register: "decoder9.baseLow", bit: 28 })).toThrow(
      /no register/,
    );
    expect(() => h.faults.set("0000:09:00.0", { name: "gone" })).toThrow(/no function/);
  });

  it("FaultSpec validates chaos messages (zod discriminated union)", () => {
    expect(FaultSpec.safeParse({ name: "holder", kind: "process", detail: "pid 1" }).success).toBe(true);
    expect(FaultSpec.safeParse({ name: "holder", kind: "nope", detail: "x" }).success).toBe(false);
  });
});

describe("faults", () => {
  it("commit-error: committing decoder n reports Error Not Committed", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    h.faults.set(DEV, { name: "commit-error", decoder: 1 });
    await r.program(1, 0x1_1000_0000n, MiB256);
    await r.decWrite(1, HDM_DECODER.control, COMMIT);
    await clock.sleep(1);
    expect(await r.decoder(1)).toMatchObject({ committed: false, errorNotCommitted: true });
  });

  it("commit-stuck: the commit never completes", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    h.faults.set(DEV, { name: "commit-stuck", decoder: 1 });
    await r.program(1, 0x1_1000_0000n, MiB256);
    await r.decWrite(1, HDM_DECODER.control, COMMIT);
    await clock.sleep(1000);
    expect(await r.decoder(1)).toMatchObject({ commit: true, committed: false, errorNotCommitted: false });
  });

  it("cxl-reset-stuck: neither Reset Complete nor Reset Error, ever", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    h.faults.set(DEV, { name: "cxl-reset-stuck" });
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(200_000);
    const st = await r.cfg.read(CXL_DEVICE.status2);
    expect(s2(st, "cxlResetComplete") || s2(st, "cxlResetError")).toBe(false);
  });

  it("cxl-reset-error: reports Reset Error", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    h.faults.set(DEV, { name: "cxl-reset-error" });
    await r.cfg.write(CXL_DEVICE.control2, c2({ initiateCxlReset: true }));
    await clock.sleep(100);
    expect(s2(await r.cfg.read(CXL_DEVICE.status2), "cxlResetError")).toBe(true);
  });

  it("cache-invalid-stuck: Cache Invalid never sets", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    h.faults.set(DEV, { name: "cache-invalid-stuck" });
    await r.cfg.write(CXL_DEVICE.control2, c2({ disableCaching: true, initiateCacheWbInv: true }));
    await clock.sleep(10_000);
    expect(s2(await r.cfg.read(CXL_DEVICE.status2), "cacheInvalid")).toBe(false);
  });

  it("flr-clears-hdm: FLR wrongly clears the decoders and DVSEC Control (a scope violation)", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    h.faults.set(DEV, { name: "flr-clears-hdm" });
    const off = r.pcie + PCIE.devCtl.offset;
    const bars = [await h.configRead(DEV, 0x10, 4), await h.configRead(DEV, 0x14, 4)];
    await h.configWrite(DEV, off, 2, (await h.configRead(DEV, off, 2)) | 0x8000);
    await clock.sleep(100);
    expect(readFlag(CXL_DEVICE.control, await r.cfg.read(CXL_DEVICE.control), "memEnable")).toBe(false);
    await h.configWrite(DEV, 0x10, 4, bars[0]!);
    await h.configWrite(DEV, 0x14, 4, bars[1]!);
    await h.configWrite(DEV, 0x04, 2, 2);
    expect((await r.decoder(0)).committed).toBe(false);
  });

  it("long-not-ready: the function stays all-ones for the fault's ms after a reset", async () => {
    const { h, clock } = rig();
    const r = await regs(h, DEV);
    h.faults.set(DEV, { name: "long-not-ready", ms: 1500 });
    const off = r.pcie + PCIE.devCtl.offset;
    await h.configWrite(DEV, off, 2, (await h.configRead(DEV, off, 2)) | 0x8000);
    await clock.sleep(1499);
    expect(await h.configRead(DEV, 0, 4)).toBe(0xffff_ffff);
    await clock.sleep(1);
    expect(await h.configRead(DEV, 0, 2)).toBe(0x8086);
  });

  it("gone: config and MMIO read all-ones until cleared", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    h.faults.set(DEV, { name: "gone" });
    expect(await h.configRead(DEV, 0, 4)).toBe(0xffff_ffff);
    expect(await r.decRead(0, HDM_DECODER.control)).toBe(0xffff_ffff);
    expect((await h.configReadAll(DEV)).every((b) => b === 0xff)).toBe(true);
    h.faults.clear(DEV, "gone");
    expect(await h.configRead(DEV, 0, 2)).toBe(0x8086);
  });

  it("bit-flip: a write to the named register arrives with the bit flipped", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    h.faults.set(DEV, { name: "bit-flip", register: "decoder1.baseLow", bit: 28 });
    await r.decWrite(1, HDM_DECODER.baseLow, 0x2000_0000);
    expect(await r.decRead(1, HDM_DECODER.baseLow)).toBe(0x3000_0000);
    await r.decWrite(1, HDM_DECODER.baseHigh, 1); // other registers are untouched
    expect(await r.decRead(1, HDM_DECODER.baseHigh)).toBe(1);
    expect(h.registerNames(DEV)).toContain("dvsec.control");
  });

  it("holder: adds a holder of the device", async () => {
    const { h } = rig();
    expect(await h.holders(DEV)).toEqual([]);
    h.faults.set(DEV, { name: "holder", kind: "process", detail: "pid 77 (qemu)" });
    expect(await h.holders(DEV)).toEqual([{ kind: "process", detail: "pid 77 (qemu)" }]);
  });

  it("memory-online: the range of every committed decoder is a holder", async () => {
    const { h } = rig();
    h.faults.set(DEV, { name: "memory-online" });
    expect(await h.holders(DEV)).toEqual([{ kind: "memory-online", detail: "0x100000000-0x10fffffff" }]);
  });
});
