import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  decodeCxlDevice,
  decodeDvsecHeader,
  decodePortExtensions,
  decodeRegisterLocator,
  decodeRegisterLocatorEntry,
  encodeDvsecHeader,
  encodeRangeBase,
  encodeRangeSize,
  encodeRegisterLocatorEntry,
  join256M,
  registerLocatorEntryCount,
} from "../../shared/cxl/dvsec.ts";
import { hex } from "../../shared/cxl/regdef.ts";
import {
  CXL_DEVICE,
  CXL_RESET_TIMEOUT_MS,
  CXL_RESET_TIMEOUT_RESERVED_FALLBACK_MS,
} from "../../shared/cxl/registers.ts";
import { CxlrcError } from "../../shared/errors.ts";
import {
  configSpace,
  cxlDeviceDvsec,
  dvsecHeader,
  portExtensionsDvsec,
  type RangeSpec,
  registerLocatorDvsec,
} from "../builders/config-space.ts";

const AT = 0x100;

function device(spec: Parameters<typeof cxlDeviceDvsec>[2]) {
  const b = configSpace(4096);
  cxlDeviceDvsec(b, AT, spec);
  return decodeCxlDevice(b, AT);
}

describe("DVSEC header", () => {
  it("reads vendor 15:0, revision 19:16, length 31:20 and the DVSEC id at +8", () => {
    const b = configSpace(4096);
    dvsecHeader(b, AT, { vendor: 0x1e98, id: 8, revision: 2, length: 0x3c });
    expect(decodeDvsecHeader(b, AT)).toEqual({ vendor: 0x1e98, id: 8, revision: 2, length: 0x3c });
    expect(new DataView(b.buffer).getUint32(AT + 4, true)).toBe(0x03c21e98);
  });

  it("round-trips through the encoder", () => {
    fc.assert(
      fc.property(
        fc.record({
          vendor: fc.integer({ min: 0, max: 0xffff }),
          id: fc.integer({ min: 0, max: 0xffff }),
          revision: fc.integer({ min: 0, max: 15 }),
          length: fc.integer({ min: 0, max: 0xfff }),
        }),
        (h) => {
          const b = configSpace(4096);
          const { header1, header2 } = encodeDvsecHeader(h);
          const dv = new DataView(b.buffer);
          dv.setUint32(AT + 4, header1, true);
          dv.setUint16(AT + 8, header2, true);
          expect(decodeDvsecHeader(b, AT)).toEqual(h);
        },
      ),
    );
  });
});

describe("DVSEC for CXL Devices: Capability (+0x0A)", () => {
  const cases: [string, number, number | boolean][] = [
    ["cacheCapable", 0x0001, true],
    ["ioCapable", 0x0002, true],
    ["memCapable", 0x0004, true],
    ["memHwInitMode", 0x0008, true],
    ["hdmCount", 0x0010, 1],
    ["hdmCount", 0x0020, 2],
    ["cacheWbInvCapable", 0x0040, true],
    ["cxlResetCapable", 0x0080, true],
    ["cxlResetTimeout", 0x0300, 3],
    ["cxlResetMemClrCapable", 0x0800, true],
    ["multipleLogicalDevice", 0x2000, true],
    ["viralCapable", 0x4000, true],
    ["pmInitCompletionCapable", 0x8000, true],
  ];
  it.each(cases)("%s from raw %i", (name, raw, value) => {
    const cap = device({ capability: raw }).capability;
    expect(cap[name as keyof typeof cap]).toBe(value);
    expect(cap.raw).toBe(hex(raw, 4));
    // Every other flag of the register reads false.
    for (const f of CXL_DEVICE.capability.fields) {
      if (f.name !== name && f.hi === f.lo) expect(cap[f.name as keyof typeof cap]).toBe(false);
    }
  });

  it("bit 12 is reserved: it shows in raw and nowhere else", () => {
    const cap = device({ capability: 0x1000 }).capability;
    expect(cap.raw).toBe("0x1000");
    expect(Object.entries(cap).filter(([k, v]) => k !== "raw" && v !== false && v !== 0)).toEqual([
      ["cxlResetTimeoutMs", 10],
    ]);
  });

  it.each([
    [0, 10],
    [1, 100],
    [2, 1000],
    [3, 10_000],
    [4, 100_000],
  ])("CXL Reset Timeout code %i is %i ms", (code, ms) => {
    const cap = device({ capability: code << 8 }).capability;
    expect(cap).toMatchObject({
      cxlResetTimeout: code,
      cxlResetTimeoutMs: ms,
      cxlResetTimeoutReserved: false,
    });
    expect(CXL_RESET_TIMEOUT_MS[code]).toBe(ms);
  });

  it.each([5, 6, 7])("reserved CXL Reset Timeout code %i uses the fallback and says so", (code) => {
    const cap = device({ capability: code << 8 }).capability;
    expect(cap).toMatchObject({
      cxlResetTimeout: code,
      cxlResetTimeoutMs: CXL_RESET_TIMEOUT_RESERVED_FALLBACK_MS,
      cxlResetTimeoutReserved: true,
    });
  });
});

describe("DVSEC for CXL Devices: Control, Status, Control2, Status2, Lock, Capability2", () => {
  it.each([
    ["cacheEnable", 0x0001, true],
    ["ioEnable", 0x0002, true],
    ["memEnable", 0x0004, true],
    ["cacheSfCoverage", 0x00f8, 31],
    ["cacheSfCoverage", 0x0008, 1],
    ["cacheSfGranularity", 0x0700, 7],
    ["cacheSfGranularity", 0x0200, 2],
    ["cacheCleanEviction", 0x0800, true],
    ["viralEnable", 0x4000, true],
  ] as const)("control.%s from raw %i", (name, raw, value) => {
    const ctl = device({ control: raw }).control;
    expect(ctl[name]).toBe(value);
  });

  it("status.viralStatus is bit 14", () => {
    expect(device({ status: 0x4000 }).status).toEqual({ raw: "0x4000", viralStatus: true });
    expect(device({ status: 0xbfff }).status.viralStatus).toBe(false);
  });

  it.each([
    ["disableCaching", 0x0001],
    ["initiateCacheWbInv", 0x0002],
    ["initiateCxlReset", 0x0004],
    ["cxlResetMemClrEnable", 0x0008],
    ["desiredVolatileHdmStateAfterHotReset", 0x0010],
    ["modifiedCompletionEnable", 0x0020],
  ] as const)("control2.%s from raw %i", (name, raw) => {
    const c2 = device({ control2: raw }).control2;
    expect(c2[name]).toBe(true);
    expect(Object.values(c2).filter((v) => v === true)).toHaveLength(1);
  });

  it.each([
    ["cacheInvalid", 0x0001],
    ["cxlResetComplete", 0x0002],
    ["cxlResetError", 0x0004],
    ["volatileHdmPreservationError", 0x0008],
    ["pmInitComplete", 0x8000],
  ] as const)("status2.%s from raw %i", (name, raw) => {
    const s2 = device({ status2: raw }).status2;
    expect(s2[name]).toBe(true);
    expect(Object.values(s2).filter((v) => v === true)).toHaveLength(1);
  });

  it("lock.configLock is bit 0", () => {
    expect(device({ lock: 1 }).lock).toEqual({ raw: "0x0001", configLock: true });
    expect(device({ lock: 0xfffe }).lock.configLock).toBe(false);
  });

  it.each([
    [0x0000, 0, 0, null],
    [0x0401, 1, 4, "0x40000"],
    [0xff02, 2, 255, "0xff00000"],
    [0x1003, 3, 16, null],
  ])("capability2 raw %i: unit %i, size %i, bytes %s", (raw, unit, size, bytes) => {
    expect(device({ capability2: raw }).capability2).toEqual({
      raw: hex(raw, 4),
      cacheSizeUnit: unit,
      cacheSize: size,
      cacheSizeBytes: bytes,
    });
  });

  it("keys of each register are its declared fields, plus the documented extras", () => {
    const d = device({});
    for (const reg of Object.values(CXL_DEVICE)) {
      const decoded = d[reg.name as keyof typeof d] as unknown as Record<string, unknown>;
      const extras = Object.keys(decoded).filter((k) => k !== "raw" && !reg.fields.some((f) => f.name === k));
      const expected =
        reg.name === "capability"
          ? ["cxlResetTimeoutMs", "cxlResetTimeoutReserved"]
          : reg.name === "capability2"
            ? ["cacheSizeBytes"]
            : [];
      expect(extras).toEqual(expected);
    }
  });
});

describe("DVSEC for CXL Devices: ranges", () => {
  it("joins base and size from High << 32 | Low & 0xf0000000", () => {
    const d = device({
      ranges: [
        { raw: { sizeHigh: 0x1, sizeLow: 0x3000_0003, baseHigh: 0x20, baseLow: 0x5fff_ffff } },
        { raw: { sizeHigh: 0, sizeLow: 0x0fff_ffff, baseHigh: 0xffff_ffff, baseLow: 0xf000_0000 } },
      ],
    });
    expect(d.ranges[0]).toMatchObject({ index: 1, base: "0x2050000000", size: "0x130000000" });
    expect(d.ranges[1]).toMatchObject({ index: 2, base: "0xfffffffff0000000", size: "0x0" });
    expect(d.ranges[0].registers).toEqual({
      sizeHigh: "0x00000001",
      sizeLow: "0x30000003",
      baseHigh: "0x00000020",
      baseLow: "0x5fffffff",
    });
  });

  it.each([
    ["memInfoValid", 0x0000_0001, true],
    ["memActive", 0x0000_0002, true],
    ["mediaType", 0x0000_0008, 2],
    ["mediaType", 0x0000_001c, 7],
    ["memoryClass", 0x0000_0020, 1],
    ["memoryClass", 0x0000_00e0, 7],
    ["desiredInterleave", 0x0000_0100, 1],
    ["desiredInterleave", 0x0000_1f00, 31],
    ["memActiveTimeoutCode", 0x0000_8000, 4],
    ["memActiveTimeoutCode", 0x0000_e000, 7],
  ] as const)("size low field %s from raw %i", (name, raw, value) => {
    const r = device({ ranges: [{ raw: { sizeHigh: 0, sizeLow: raw, baseHigh: 0, baseLow: 0 } }] }).ranges[0];
    expect(r[name]).toBe(value);
    expect(r.size).toBe("0x0");
  });

  it("decodes Memory_Active_Timeout to ms, null when reserved", () => {
    const t = (code: number) =>
      device({ ranges: [{ raw: { sizeHigh: 0, sizeLow: code << 13, baseHigh: 0, baseLow: 0 } }] }).ranges[0]
        .memActiveTimeoutMs;
    expect([0, 1, 2, 3, 4, 5, 7].map(t)).toEqual([1000, 4000, 16_000, 64_000, 256_000, null, null]);
  });

  it("always reports both ranges", () => {
    expect(device({}).ranges.map((r) => r.index)).toEqual([1, 2]);
  });

  it("range encoders round-trip any 256 MiB multiple and every Size Low field", () => {
    const range = fc.record({
      base: fc.bigInt({ min: 0n, max: 0xf_ffff_ffffn }).map((v) => v << 28n),
      size: fc.bigInt({ min: 0n, max: 0xf_ffff_ffffn }).map((v) => v << 28n),
      memInfoValid: fc.boolean(),
      memActive: fc.boolean(),
      mediaType: fc.integer({ min: 0, max: 7 }),
      memoryClass: fc.integer({ min: 0, max: 7 }),
      desiredInterleave: fc.integer({ min: 0, max: 31 }),
      memActiveTimeoutCode: fc.integer({ min: 0, max: 7 }),
    });
    fc.assert(
      fc.property(range, range, (r1: RangeSpec, r2: RangeSpec) => {
        const d = device({ ranges: [r1, r2] });
        for (const [i, r] of [r1, r2].entries()) {
          const got = d.ranges[i]!;
          expect(BigInt(got.base)).toBe(r.base);
          expect(BigInt(got.size)).toBe(r.size);
          expect(got).toMatchObject({
            memInfoValid: r.memInfoValid,
            memActive: r.memActive,
            mediaType: r.mediaType,
            memoryClass: r.memoryClass,
            desiredInterleave: r.desiredInterleave,
            memActiveTimeoutCode: r.memActiveTimeoutCode,
          });
        }
      }),
    );
  });

  it("range encoders refuse unaligned or oversized values", () => {
    expect(() => encodeRangeBase(0x1000n)).toThrow(/256 MiB/);
    expect(() => encodeRangeBase(1n << 64n)).toThrow(/64 bits/);
    expect(() => encodeRangeSize(0x1_0000_0000n, { mediaType: 8 })).toThrow(/mediaType/);
    expect(encodeRangeBase(0x12_3000_0000n)).toEqual({ baseHigh: 0x12, baseLow: 0x3000_0000 });
    expect(join256M(0x12, 0x3fff_ffff)).toBe(0x12_3000_0000n);
  });
});

describe("DVSEC for CXL Devices: errors", () => {
  it("rejects a DVSEC shorter than the 0x38 bytes the registers need", () => {
    const b = configSpace(4096);
    cxlDeviceDvsec(b, AT, { length: 0x30 });
    expect(() => decodeCxlDevice(b, AT)).toThrow(/length 0x30.*0x38/);
  });

  it("rejects a DVSEC that runs past the config space", () => {
    const b = configSpace(4096);
    dvsecHeader(b, 0xfd0, { vendor: 0x1e98, id: 0, revision: 1, length: 0x38 });
    expect(() => decodeCxlDevice(b, 0xfd0)).toThrow(CxlrcError);
    expect(() => decodeCxlDevice(b, 0xfd0)).toThrow(/runs past the config space/);
  });

  it("rejects a DVSEC of another id", () => {
    const b = configSpace(4096);
    dvsecHeader(b, AT, { vendor: 0x1e98, id: 3, length: 0x38 });
    expect(() => decodeCxlDevice(b, AT)).toThrow(/not the DVSEC for CXL Devices/);
  });

  it("decodes revision 0 (CXL 1.1) and later revisions alike, reporting the revision", () => {
    expect(device({ revision: 0 }).revision).toBe(0);
    expect(device({ revision: 2, length: 0x3c })).toMatchObject({ revision: 2, length: 0x3c });
  });
});

describe("Register Locator", () => {
  it("lists every 8-byte entry from +0x0C that fits in the length, empty ones included", () => {
    const b = configSpace(4096);
    registerLocatorDvsec(b, AT, [
      { bir: 0, blockId: 1, offset: 0x10000n },
      { bir: 0, blockId: 0, offset: 0n },
      { bir: 2, blockId: 3, offset: 0x5_1234_0000n },
    ]);
    expect(decodeRegisterLocator(b, AT)).toEqual({
      offset: "0x100",
      revision: 0,
      length: 0x24,
      blocks: [
        { index: 1, bir: 0, blockId: 1, blockName: "component registers", offset: "0x10000" },
        { index: 2, bir: 0, blockId: 0, blockName: "empty", offset: "0x0" },
        { index: 3, bir: 2, blockId: 3, blockName: "CXL device registers", offset: "0x512340000" },
      ],
    });
  });

  it("counts entries from the length: a partial trailing entry is not one", () => {
    expect([0x0c, 0x13, 0x14, 0x1b, 0x1c, 0x24, 0x0b, 0].map(registerLocatorEntryCount)).toEqual([
      0, 0, 1, 1, 2, 3, 0, 0,
    ]);
    const b = configSpace(4096);
    registerLocatorDvsec(b, AT, [{ bir: 1, blockId: 1, offset: 0n }], { length: 0x1b });
    expect(decodeRegisterLocator(b, AT).blocks).toHaveLength(1);
  });

  it("names block ids as lspci does", () => {
    const names = [0, 1, 2, 3, 4, 5, 0xff].map((id) => decodeRegisterLocatorEntry(id << 8, 0).blockName);
    expect(names).toEqual([
      "empty",
      "component registers",
      "BAR virtualization",
      "CXL device registers",
      "CPMU registers",
      "<?>",
      "vendor-specific",
    ]);
  });

  it("ignores the reserved bits 7:3 of the low dword", () => {
    expect(decodeRegisterLocatorEntry(0xabcd_01f9, 0x1)).toEqual({
      bir: 1,
      blockId: 1,
      blockName: "component registers",
      offset: "0x1abcd0000",
    });
  });

  it("entry encoder round-trips and refuses an offset that is not 64 KiB aligned", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 0, max: 255 }),
        fc.bigInt({ min: 0n, max: 0xffff_ffff_ffffn }).map((v) => v << 16n),
        (bir, blockId, offset) => {
          const { low, high } = encodeRegisterLocatorEntry({ bir, blockId, offset });
          const got = decodeRegisterLocatorEntry(low, high);
          expect({ bir: got.bir, blockId: got.blockId, offset: BigInt(got.offset) }).toEqual({
            bir,
            blockId,
            offset,
          });
        },
      ),
    );
    expect(() => encodeRegisterLocatorEntry({ bir: 0, blockId: 1, offset: 0x1000n })).toThrow(/64 KiB/);
    expect(() => encodeRegisterLocatorEntry({ bir: 8, blockId: 1, offset: 0n })).toThrow(/BIR/);
  });

  it("rejects entries that would run past the config space", () => {
    const b = configSpace(4096);
    dvsecHeader(b, 0xff0, { vendor: 0x1e98, id: 8, length: 0x24 });
    expect(() => decodeRegisterLocator(b, 0xff0)).toThrow(/past the config space/);
  });
});

describe("CXL Extensions DVSEC for Ports", () => {
  it("decodes Unmask SBR and the other port control bits", () => {
    const b = configSpace(4096);
    portExtensionsDvsec(b, AT, { control: 0x4001, status: 0x0001, altBusBase: 0x10, altBusLimit: 0x1f });
    const p = decodePortExtensions(b, AT);
    expect(p.control).toEqual({
      raw: "0x4001",
      unmaskSbr: true,
      unmaskLinkDisable: false,
      altMemoryAndIdSpaceEnable: false,
      altBme: false,
      viralEnable: true,
    });
    expect(p.status.portPowerManagementInitComplete).toBe(true);
    expect(p).toMatchObject({ altBusBase: 0x10, altBusLimit: 0x1f, length: 0x28 });
  });
});
