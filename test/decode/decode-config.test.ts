import { describe, expect, it } from "vitest";
import { decodeConfigSpace } from "../../shared/cxl/decode.ts";
import {
  buildConfig,
  configSpace,
  cxlDeviceDvsec,
  dvsecHeader,
  extCap,
  header,
  pcieCap,
  registerLocatorDvsec,
} from "../builders/config-space.ts";

/** The layout of QEMU 7.2's cxl-type3 (read back from the model, see shared/docs/qemu-qtest.md). */
function qemuType3(): Uint8Array {
  const b = header(configSpace(4096), {
    vendorId: 0x8086,
    deviceId: 0x0d93,
    classCode: 0x050210,
    capPtr: 0x40,
  });
  pcieCap(b, 0x40, { flr: false, version: 2 });
  cxlDeviceDvsec(b, 0x100, {
    revision: 1,
    length: 0x38,
    next: 0x138,
    capability: 0x001e,
    control: 0x0002,
    status2: 0x0002,
    ranges: [{ size: 0x2000_0000n, memInfoValid: true, memActive: true }],
  });
  registerLocatorDvsec(
    b,
    0x138,
    [
      { bir: 0, blockId: 1, offset: 0n },
      { bir: 2, blockId: 3, offset: 0n },
      { bir: 0, blockId: 0, offset: 0n },
    ],
    { next: 0x15c },
  );
  dvsecHeader(b, 0x15c, { vendor: 0x1e98, id: 5, revision: 0, length: 0x10, next: 0x190 });
  extCap(b, 0x190, 0x2e, 1, 0);
  return b;
}

describe("decodeConfigSpace", () => {
  it("decodes QEMU's cxl-type3 layout (DVSEC 0 at 0x100, Register Locator at 0x138, GPF, DOE)", () => {
    const d = decodeConfigSpace(qemuType3(), { bdf: "0d:00.0" });
    expect(d).toMatchObject({
      bdf: "0d:00.0",
      vendorId: "0x8086",
      deviceId: "0x0d93",
      classCode: "0x050210",
      flrCapable: false,
    });
    expect(d.extendedCapabilities).toEqual([
      {
        offset: "0x100",
        id: 0x23,
        version: 1,
        name: "Designated Vendor-Specific",
        dvsec: { vendor: "0x1e98", id: 0, revision: 1, length: 0x38, name: "PCIe DVSEC for CXL Devices" },
      },
      {
        offset: "0x138",
        id: 0x23,
        version: 1,
        name: "Designated Vendor-Specific",
        dvsec: { vendor: "0x1e98", id: 8, revision: 0, length: 0x24, name: "Register Locator DVSEC" },
      },
      {
        offset: "0x15c",
        id: 0x23,
        version: 1,
        name: "Designated Vendor-Specific",
        dvsec: { vendor: "0x1e98", id: 5, revision: 0, length: 0x10, name: "GPF DVSEC for CXL Devices" },
      },
      { offset: "0x190", id: 0x2e, version: 1, name: "Data Object Exchange", dvsec: null },
    ]);
    expect(d.cxlDevice?.capability).toMatchObject({
      raw: "0x001e",
      cacheCapable: false,
      ioCapable: true,
      memCapable: true,
      memHwInitMode: true,
      hdmCount: 1,
      cxlResetCapable: false,
    });
    expect(d.cxlDevice?.status2.cxlResetComplete).toBe(true);
    expect(d.cxlDevice?.ranges[0]).toMatchObject({
      index: 1,
      base: "0x0",
      size: "0x20000000",
      memInfoValid: true,
    });
    expect(d.registerLocator).toEqual({
      offset: "0x138",
      revision: 0,
      length: 0x24,
      blocks: [
        { index: 1, bir: 0, blockId: 1, blockName: "component registers", offset: "0x0" },
        { index: 2, bir: 2, blockId: 3, blockName: "CXL device registers", offset: "0x0" },
        { index: 3, bir: 0, blockId: 0, blockName: "empty", offset: "0x0" },
      ],
    });
  });

  it("produces exactly the documented keys (plus documented extras)", () => {
    const d = decodeConfigSpace(qemuType3());
    const json = JSON.parse(JSON.stringify(d));
    expect(Object.keys(json)).toEqual(
      expect.arrayContaining([
        "bdf",
        "vendorId",
        "deviceId",
        "classCode",
        "flrCapable",
        "extendedCapabilities",
        "cxlDevice",
        "registerLocator",
      ]),
    );
    expect(json.bdf).toBeNull();
    for (const cap of json.extendedCapabilities) {
      expect(Object.keys(cap)).toEqual(expect.arrayContaining(["offset", "id", "version", "dvsec"]));
      if (cap.dvsec)
        expect(Object.keys(cap.dvsec)).toEqual(
          expect.arrayContaining(["vendor", "id", "revision", "length"]),
        );
    }
    const dev = json.cxlDevice;
    expect(Object.keys(dev)).toEqual(
      expect.arrayContaining([
        "offset",
        "capability",
        "control",
        "status",
        "control2",
        "status2",
        "lock",
        "capability2",
        "ranges",
      ]),
    );
    const want: Record<string, string[]> = {
      capability: [
        "cacheCapable",
        "ioCapable",
        "memCapable",
        "memHwInitMode",
        "hdmCount",
        "cacheWbInvCapable",
        "cxlResetCapable",
        "cxlResetTimeoutMs",
        "cxlResetMemClrCapable",
        "multipleLogicalDevice",
        "viralCapable",
        "pmInitCompletionCapable",
        "cxlResetTimeout",
      ],
      control: [
        "cacheEnable",
        "ioEnable",
        "memEnable",
        "cacheSfCoverage",
        "cacheSfGranularity",
        "cacheCleanEviction",
        "viralEnable",
      ],
      status: ["viralStatus"],
      control2: ["disableCaching", "initiateCacheWbInv", "initiateCxlReset", "cxlResetMemClrEnable"],
      status2: ["cacheInvalid", "cxlResetComplete", "cxlResetError", "pmInitComplete"],
      lock: ["configLock"],
      capability2: ["cacheSizeUnit", "cacheSize"],
    };
    for (const [reg, keys] of Object.entries(want)) {
      expect(Object.keys(dev[reg])).toEqual(expect.arrayContaining(["raw", ...keys]));
      expect(dev[reg].raw).toMatch(/^0x[0-9a-f]+$/);
      for (const k of keys) expect(["boolean", "number"]).toContain(typeof dev[reg][k]);
    }
    expect(dev.ranges).toHaveLength(2);
    for (const r of dev.ranges) {
      expect(Object.keys(r)).toEqual(
        expect.arrayContaining([
          "index",
          "base",
          "size",
          "memInfoValid",
          "memActive",
          "mediaType",
          "memoryClass",
          "desiredInterleave",
          "memActiveTimeoutCode",
        ]),
      );
      expect(r.base).toMatch(/^0x[0-9a-f]+$/);
      expect(r.size).toMatch(/^0x[0-9a-f]+$/);
    }
    expect(Object.keys(json.registerLocator)).toEqual(expect.arrayContaining(["offset", "blocks"]));
    for (const blk of json.registerLocator.blocks) {
      expect(Object.keys(blk)).toEqual(expect.arrayContaining(["bir", "blockId", "offset"]));
    }
  });

  it("writes every hex string in lowercase with a 0x prefix", () => {
    const b = buildConfig({
      header: { vendorId: 0xabcd, deviceId: 0xef01, classCode: 0xfedcba },
      ext: [
        { kind: "cxlDevice", capability: 0xffff, ranges: [{ base: 0xabc_d000_0000n, size: 0xf000_0000n }] },
      ],
    });
    const d = decodeConfigSpace(b);
    const hexes: string[] = [];
    JSON.stringify(d, (_k, v) => {
      if (typeof v === "string" && /^0[xX]/.test(v)) hexes.push(v);
      return v;
    });
    expect(hexes.length).toBeGreaterThan(20);
    for (const h of hexes) expect(h).toMatch(/^0x[0-9a-f]+$/);
    expect(d).toMatchObject({ vendorId: "0xabcd", deviceId: "0xef01", classCode: "0xfedcba" });
    expect(d.cxlDevice?.ranges[0]).toMatchObject({ base: "0xabcd0000000", size: "0xf0000000" });
  });

  it("lists unknown DVSECs (other vendor, unknown CXL id) and decodes the CXL ones after them", () => {
    const d = decodeConfigSpace(
      buildConfig({
        ext: [
          { kind: "dvsec", vendor: 0x8086, id: 0, revision: 1, length: 0x38 },
          { kind: "dvsec", vendor: 0x1e98, id: 0x77, revision: 0, length: 0x10 },
          { kind: "cxlDevice" },
        ],
      }),
    );
    expect(
      d.extendedCapabilities.map((c) => c.dvsec && [c.offset, c.dvsec.vendor, c.dvsec.id, c.dvsec.name]),
    ).toEqual([
      ["0x100", "0x8086", 0, null],
      ["0x138", "0x1e98", 0x77, null],
      ["0x148", "0x1e98", 0, "PCIe DVSEC for CXL Devices"],
    ]);
    expect(d.cxlDevice?.offset).toBe("0x148");
  });

  it("finds the Register Locator before the DVSEC for CXL Devices too", () => {
    const d = decodeConfigSpace(
      buildConfig({
        ext: [
          { kind: "registerLocator", entries: [{ bir: 4, blockId: 1, offset: 0x20000n }] },
          { kind: "cxlDevice" },
        ],
      }),
    );
    expect(d.registerLocator?.blocks).toEqual([
      { index: 1, bir: 4, blockId: 1, blockName: "component registers", offset: "0x20000" },
    ]);
    expect(d.cxlDevice?.offset).toBe("0x114");
  });

  it("decodes a CXL root port's extensions DVSEC (Unmask SBR)", () => {
    const d = decodeConfigSpace(
      buildConfig({ pcie: { portType: 4 }, ext: [{ kind: "portExtensions", control: { unmaskSbr: true } }] }),
    );
    expect(d.portExtensions?.control.unmaskSbr).toBe(true);
    expect(d.cxlDevice).toBeNull();
    expect(d.registerLocator).toBeNull();
  });

  it("has no CXL parts and no extended capabilities for a 256-byte image", () => {
    const d = decodeConfigSpace(buildConfig({ size: 256, pcie: { flr: true } }));
    expect(d).toMatchObject({ configSize: 256, flrCapable: true, extendedCapabilities: [], cxlDevice: null });
  });

  it("reports FLR as unknown (null) for a 64-byte lspci -x image, and false without a PCIe capability", () => {
    expect(decodeConfigSpace(buildConfig({ size: 64, pcie: { flr: true } })).flrCapable).toBeNull();
    expect(decodeConfigSpace(buildConfig({ size: 256, pcie: null })).flrCapable).toBe(false);
  });

  it("throws a decode error for a DVSEC 0 too short for its registers", () => {
    expect(() => decodeConfigSpace(buildConfig({ ext: [{ kind: "cxlDevice", length: 0x20 }] }))).toThrow(
      /shorter than the 0x38 bytes/,
    );
  });

  it("is pure: the same bytes give the same object and are not modified", () => {
    const b = qemuType3();
    const copy = b.slice();
    expect(decodeConfigSpace(b)).toEqual(decodeConfigSpace(copy));
    expect(b).toEqual(copy);
  });
});
