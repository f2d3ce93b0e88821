import { describe, expect, it } from "vitest";
import {
  findPcieCapability,
  walkCapabilities,
  walkExtendedCapabilities,
  walkStandardCapabilities,
} from "../../shared/cxl/capabilities.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { buildConfig, configSpace, extCap, header, pcieCap, stdCap } from "../builders/config-space.ts";

function decodeError(fn: () => unknown): CxlrcError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CxlrcError);
    expect((e as CxlrcError).kind).toBe("decode");
    return e as CxlrcError;
  }
  throw new Error("expected a decode error");
}

describe("standard capability list", () => {
  it("follows the pointer at 0x34 through [id][next] entries", () => {
    const b = header(configSpace(256), { capPtr: 0x40 });
    stdCap(b, 0x40, 0x01, 0x50); // PM
    stdCap(b, 0x50, 0x05, 0x70); // MSI
    pcieCap(b, 0x70, { flr: true });
    expect(walkStandardCapabilities(b).caps).toEqual([
      { offset: 0x40, id: 0x01 },
      { offset: 0x50, id: 0x05 },
      { offset: 0x70, id: 0x10 },
    ]);
  });

  it("masks the two reserved low bits of each pointer, as the kernel and lspci do", () => {
    const b = header(configSpace(256), { capPtr: 0x43 });
    stdCap(b, 0x40, 0x01, 0x52);
    stdCap(b, 0x50, 0x05, 0);
    expect(walkStandardCapabilities(b).caps.map((c) => c.offset)).toEqual([0x40, 0x50]);
  });

  it("is empty when Status.CapList is clear, whatever 0x34 holds", () => {
    const b = header(configSpace(256), { capPtr: 0x40 });
    b[0x06] = 0;
    stdCap(b, 0x40, 0x10, 0);
    expect(walkStandardCapabilities(b).caps).toEqual([]);
  });

  it("stops with an error naming both offsets on a loop", () => {
    const b = header(configSpace(256), { capPtr: 0x40 });
    stdCap(b, 0x40, 0x01, 0x50);
    stdCap(b, 0x50, 0x05, 0x40);
    const e = decodeError(() => walkStandardCapabilities(b));
    expect(e.message).toMatch(/loops.*0x51.*0x40/);
  });

  it("rejects a pointer into the header (below 0x40)", () => {
    const b = header(configSpace(256), { capPtr: 0x40 });
    stdCap(b, 0x40, 0x01, 0x3c);
    expect(decodeError(() => walkStandardCapabilities(b)).message).toMatch(/0x3c.*below 0x40/);
  });

  it("ends quietly on an all-zero or all-ones entry", () => {
    const zero = header(configSpace(256), { capPtr: 0x40 });
    stdCap(zero, 0x40, 0x01, 0x50);
    expect(walkStandardCapabilities(zero).caps).toEqual([{ offset: 0x40, id: 1 }]);
    const ones = header(configSpace(256), { capPtr: 0x40 });
    stdCap(ones, 0x40, 0x01, 0x50);
    stdCap(ones, 0x50, 0xff, 0xff);
    expect(walkStandardCapabilities(ones).caps).toEqual([{ offset: 0x40, id: 1 }]);
  });

  it("reads an absent device (all ones) as no capabilities", () => {
    expect(walkCapabilities(new Uint8Array(4096).fill(0xff))).toMatchObject({ standard: [], extended: [] });
  });

  it("reports a 64-byte image as incomplete instead of failing: the list is past the data", () => {
    const b = buildConfig({ size: 64, pcie: { flr: true } });
    expect(walkStandardCapabilities(b)).toEqual({ caps: [], complete: false });
    expect(walkCapabilities(b).extendedAvailable).toBe(false);
  });
});

describe("config space size", () => {
  it.each([0, 63, 100, 255, 257, 1024, 4095, 4097, 8192])("rejects %i bytes, naming the size", (n) => {
    const e = decodeError(() => walkCapabilities(new Uint8Array(n)));
    expect(e.message).toContain(`${n} bytes`);
    expect(e.details.size).toBe(n);
  });

  it.each([64, 256, 4096])("accepts %i bytes", (n) => {
    expect(() => walkCapabilities(new Uint8Array(n))).not.toThrow();
  });
});

describe("extended capability list", () => {
  it("walks from 0x100 with id 15:0, version 19:16, next 31:20", () => {
    const b = configSpace(4096);
    extCap(b, 0x100, 0x0001, 2, 0x148);
    extCap(b, 0x148, 0x0023, 1, 0xffc);
    extCap(b, 0xffc, 0x002e, 1, 0);
    expect(walkExtendedCapabilities(b)).toEqual([
      { offset: 0x100, id: 0x01, version: 2 },
      { offset: 0x148, id: 0x23, version: 1 },
      { offset: 0xffc, id: 0x2e, version: 1 },
    ]);
  });

  it("is empty below 4 KiB and when 0x100 reads zero or all ones", () => {
    expect(walkExtendedCapabilities(configSpace(256))).toEqual([]);
    expect(walkExtendedCapabilities(configSpace(4096))).toEqual([]);
    const ones = configSpace(4096);
    new DataView(ones.buffer).setUint32(0x100, 0xffffffff, true);
    expect(walkExtendedCapabilities(ones)).toEqual([]);
  });

  it("ends quietly on an all-ones header further down the list", () => {
    const b = configSpace(4096);
    extCap(b, 0x100, 0x0001, 1, 0x200);
    new DataView(b.buffer).setUint32(0x200, 0xffffffff, true);
    expect(walkExtendedCapabilities(b).map((c) => c.offset)).toEqual([0x100]);
  });

  it("stops with an error on a loop", () => {
    const b = configSpace(4096);
    extCap(b, 0x100, 0x0001, 1, 0x200);
    extCap(b, 0x200, 0x0003, 1, 0x100);
    expect(decodeError(() => walkExtendedCapabilities(b)).message).toMatch(/loops.*0x200.*0x100/);
  });

  it("stops with an error on a self loop", () => {
    const b = configSpace(4096);
    extCap(b, 0x100, 0x0001, 1, 0x100);
    expect(decodeError(() => walkExtendedCapabilities(b)).message).toMatch(/loops/);
  });

  it("rejects a next pointer below 0x100", () => {
    const b = configSpace(4096);
    extCap(b, 0x100, 0x0001, 1, 0x0fc);
    expect(decodeError(() => walkExtendedCapabilities(b)).message).toMatch(/0xfc.*outside 0x100\.\.0xffc/);
  });
});

describe("PCI Express capability", () => {
  it("finds the FLR capable bit (Device Capabilities bit 28)", () => {
    expect(findPcieCapability(buildConfig({ pcie: { flr: true } }))).toMatchObject({
      offset: 0x40,
      flrCapable: true,
      devCap: "0x10000000",
    });
    expect(findPcieCapability(buildConfig({ pcie: { flr: false } }))?.flrCapable).toBe(false);
  });

  it("reads version and port type", () => {
    expect(findPcieCapability(buildConfig({ pcie: { version: 2, portType: 4 } }))).toMatchObject({
      version: 2,
      portType: 4,
    });
  });

  it("is null for a conventional PCI device", () => {
    expect(findPcieCapability(buildConfig({ pcie: null }))).toBeNull();
  });

  it("rejects a PCIe capability that runs past 0x100", () => {
    const b = header(configSpace(4096), { capPtr: 0xfc });
    stdCap(b, 0xfc, 0x10, 0);
    expect(decodeError(() => findPcieCapability(b)).message).toMatch(/runs past/);
  });
});
