// Where QEMU 7.2's CXL model departs from the spec, each pinned by its own test. These tests FAIL IF QEMU
// EVER CHANGES: then update shared/docs/qemu-qtest.md, and check that the ops (which must cope with both
// behaviours) still do. Spec references: CXL r2.0 §8.2.5.12 (HDM decoders), §8.1.3 (DVSEC for CXL devices),
// §8.1.5 (Port Control Unmask SBR); PCIe base §7.5.3.3 (FLR capability).
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createQemuBackend, type QemuBackend } from "../../services/agent/backends/qemu/qemu-backend.ts";
import { readFlag, withField } from "../../shared/cxl/regdef.ts";
import {
  CXL_DEVICE,
  CXL_PORT_EXT,
  cxlRange,
  HDM_DECODER,
  PCI_CAP_ID_EXP,
  PCI_STD_CAP_PTR,
  PCIE,
} from "../../shared/cxl/registers.ts";
import {
  type CxlLocation,
  commitDecoder0,
  committed,
  DECODER0_SIZE,
  decoderReg,
  dvsecReg,
  enableCxlMem,
  locate,
  portControl,
  readDecoder0,
  secondaryBusReset,
} from "./helpers.ts";

const ROOT_PORT = "0000:0c:00.0";
const DEVICE = "0000:0d:00.0";

let b: QemuBackend;
let loc: CxlLocation;
beforeEach(async () => {
  b = await createQemuBackend({ topology: "single" });
  loc = await locate(b, DEVICE);
});
afterEach(async () => {
  await b.close();
});

const ctl = (raw: number, name: string) => readFlag(HDM_DECODER.control, raw, name);
const writeControl = (v: number) =>
  b.mmioWrite32(DEVICE, loc.bar, decoderReg(loc, 0, HDM_DECODER.control), v);

describe("QEMU 7.2 deviations (fail if QEMU changes)", () => {
  it("Commit reads back clear while Committed is set (spec: Commit stays as written)", async () => {
    await commitDecoder0(b, loc);
    const { control } = await readDecoder0(b, loc);
    expect(ctl(control, "committed")).toBe(true);
    expect(ctl(control, "commit")).toBe(false);
  });

  it("base and size writes are accepted while committed (spec: locked while Committed)", async () => {
    await commitDecoder0(b, loc, { lockOnCommit: true });
    const doubled = DECODER0_SIZE * 2n;
    await b.mmioWrite32(DEVICE, loc.bar, decoderReg(loc, 0, HDM_DECODER.sizeLow), Number(doubled));
    await b.mmioWrite32(DEVICE, loc.bar, decoderReg(loc, 0, HDM_DECODER.baseHigh), 0x8);
    const d = await readDecoder0(b, loc);
    expect(committed(d.control)).toBe(true);
    expect(d.size).toBe(doubled);
    expect(d.base >> 32n).toBe(0x8n);
  });

  it("writing Control 0 does not clear Committed (spec: clearing Commit decommits)", async () => {
    await commitDecoder0(b, loc);
    await writeControl(0);
    const { control } = await readDecoder0(b, loc);
    expect(ctl(control, "committed")).toBe(true);
    // The written fields did take the 0 (Target Device Type cleared): only Committed is sticky.
    expect(ctl(control, "targetDeviceType")).toBe(false);
  });

  it("Lock On Commit does not stick: Control stays writable after a locked commit", async () => {
    await commitDecoder0(b, loc, { lockOnCommit: true });
    const locked = (await readDecoder0(b, loc)).control;
    expect(ctl(locked, "lockOnCommit")).toBe(true);
    expect(ctl(locked, "committed")).toBe(true);
    await writeControl(withField(HDM_DECODER.control, locked, "lockOnCommit", false));
    const after = (await readDecoder0(b, loc)).control;
    expect(ctl(after, "lockOnCommit")).toBe(false);
    expect(ctl(after, "committed")).toBe(true);
  });

  it("DVSEC Control (and Range 1 Base) keep their values over a secondary bus reset (spec: reset)", async () => {
    const control = await enableCxlMem(b, loc);
    const range1 = cxlRange(1);
    await b.configWrite(DEVICE, dvsecReg(loc, range1.baseHigh), 4, 0x4);
    await commitDecoder0(b, loc);
    await secondaryBusReset(b, ROOT_PORT);
    expect(await b.configRead(DEVICE, dvsecReg(loc, CXL_DEVICE.control), 2)).toBe(control);
    expect(readFlag(CXL_DEVICE.control, control, "memEnable")).toBe(true);
    expect(await b.configRead(DEVICE, dvsecReg(loc, range1.baseHigh), 4)).toBe(0x4);
    // ...while the decoder it would have to match was wiped.
    expect(committed((await readDecoder0(b, loc)).control)).toBe(false);
  });

  it("the device has no FLR capability bit: an io-scope (FLR) plan is impossible on this model", async () => {
    let pcie = await b.configRead(DEVICE, PCI_STD_CAP_PTR, 1);
    while (pcie !== 0 && (await b.configRead(DEVICE, pcie, 1)) !== PCI_CAP_ID_EXP) {
      pcie = await b.configRead(DEVICE, pcie + 1, 1);
    }
    expect(pcie).not.toBe(0);
    const devCap = await b.configRead(DEVICE, pcie + PCIE.devCap.offset, 4);
    expect(readFlag(PCIE.devCap, devCap, "flrCapable")).toBe(false);
  });

  it("Status2 reads CXL Reset Complete although the device cannot do a CXL Reset", async () => {
    const cap = await b.configRead(DEVICE, dvsecReg(loc, CXL_DEVICE.capability), 2);
    expect(readFlag(CXL_DEVICE.capability, cap, "cxlResetCapable")).toBe(false);
    const status2 = await b.configRead(DEVICE, dvsecReg(loc, CXL_DEVICE.status2), 2);
    expect(readFlag(CXL_DEVICE.status2, status2, "cxlResetComplete")).toBe(true);
    expect(readFlag(CXL_DEVICE.status2, status2, "cxlResetError")).toBe(false);
  });

  it("the root port does not mask SBR while Unmask SBR is clear (spec §8.1.5.2: masked)", async () => {
    expect(readFlag(CXL_PORT_EXT.portControl, await portControl(b, ROOT_PORT), "unmaskSbr")).toBe(false);
    await commitDecoder0(b, loc);
    await secondaryBusReset(b, ROOT_PORT);
    expect(committed((await readDecoder0(b, loc)).control)).toBe(false);
  });
});
