// Firmware-style HDM decoder commit on QEMU's Type-3, then a secondary bus reset through the root port:
// what survives and what is wiped, read back through the backend.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createQemuBackend, type QemuBackend } from "../../services/agent/backends/qemu/qemu-backend.ts";
import { readFlag } from "../../shared/cxl/regdef.ts";
import { CXL_DEVICE, HDM, HDM_DECODER, PCI, PCI_BAR0 } from "../../shared/cxl/registers.ts";
import {
  type CxlLocation,
  commitDecoder0,
  committed,
  DECODER0_BASE,
  DECODER0_SIZE,
  dvsecReg,
  enableCxlMem,
  locate,
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

describe("HDM decoder 0 on QEMU's Type-3", () => {
  it("finds one decoder behind the Register Locator's component block", async () => {
    expect(loc.bar).toBe(0);
    const cap = await b.mmioRead32(DEVICE, loc.bar, loc.hdm + HDM.capability.offset);
    // Decoder count code 0 → 1 decoder.
    expect(cap & 0xf).toBe(0);
    expect(await readDecoder0(b, loc)).toEqual({ globalControl: 0, base: 0n, size: 0n, control: 0 });
  });

  it("commits as firmware programs it: Committed reads 1 with the base and size written", async () => {
    await commitDecoder0(b, loc);
    const d = await readDecoder0(b, loc);
    expect(readFlag(HDM.globalControl, d.globalControl, "hdmDecoderEnable")).toBe(true);
    expect(committed(d.control)).toBe(true);
    expect(readFlag(HDM_DECODER.control, d.control, "errorNotCommitted")).toBe(false);
    expect(readFlag(HDM_DECODER.control, d.control, "targetDeviceType")).toBe(true);
    expect(d.base).toBe(DECODER0_BASE);
    expect(d.size).toBe(DECODER0_SIZE);
  });
});

describe("secondary bus reset through the root port's Bridge Control", () => {
  it("wipes decoders, global control, command and BARs; keeps DVSEC Control; MMIO works once BARs are back", async () => {
    const control = await enableCxlMem(b, loc);
    await commitDecoder0(b, loc);
    const bar0 = await b.configRead(DEVICE, PCI_BAR0, 4);
    expect(committed((await readDecoder0(b, loc)).control)).toBe(true);

    const { vendorWhileHeld } = await secondaryBusReset(b, ROOT_PORT, DEVICE);
    // While the reset is held the device does not answer.
    expect(vendorWhileHeld).toBe(0xffff);
    expect(await b.configRead(DEVICE, PCI.vendorId.offset, 2)).toBe(0x8086);

    // CXL.io state is reset: command 0, BAR0 back to its type bits only.
    expect(await b.configRead(DEVICE, PCI.command.offset, 2)).toBe(0);
    expect((await b.configRead(DEVICE, PCI_BAR0, 4)) & ~0xf).toBe(0);
    // DVSEC Control keeps Mem_Enable (QEMU 7.2; the spec resets it).
    expect(await b.configRead(DEVICE, dvsecReg(loc, CXL_DEVICE.control), 2)).toBe(control);

    // Restore what the ops' restore would: BARs and command, from the saved values.
    await b.configWrite(DEVICE, PCI_BAR0, 4, bar0);
    await b.configWrite(DEVICE, PCI_BAR0 + 4, 4, 0);
    await b.configWrite(DEVICE, PCI.command.offset, 2, 0x0002);
    // The backend's firmware addresses still reach the component block: the decoders read wiped.
    expect((await b.mmioRead32(DEVICE, 0, 0x1000)) & 0xffff).toBe(1);
    expect(await readDecoder0(b, loc)).toEqual({ globalControl: 0, base: 0n, size: 0n, control: 0 });
    // And they can be committed again.
    await commitDecoder0(b, loc);
    expect(committed((await readDecoder0(b, loc)).control)).toBe(true);
  });

  it("leaves the root port itself (bus numbers, window, command) as it was", async () => {
    const before = await Promise.all([0x04, 0x18, 0x20].map((o) => b.configRead(ROOT_PORT, o, 4)));
    await secondaryBusReset(b, ROOT_PORT);
    const after = await Promise.all([0x04, 0x18, 0x20].map((o) => b.configRead(ROOT_PORT, o, 4)));
    // Command (the status half may carry RW1C bits), bus numbers, memory window.
    expect(after[0]! & 0xffff).toBe(before[0]! & 0xffff);
    expect(after[0]! & 0xffff).toBe(0x0006);
    expect(after[1]).toBe(before[1]);
    expect(after[2]).toBe(before[2]);
  });
});
