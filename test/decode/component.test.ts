import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type DecoderControlFields,
  decodeCacheMemArray,
  decodeComponentBlock,
  decodeHdm,
  encodeDecoderBase,
  encodeDecoderControl,
  encodeDecoderSize,
  encodeDpaSkip,
} from "../../shared/cxl/component.ts";
import { HDM_DECODER } from "../../shared/cxl/registers.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { componentBlock } from "../builders/config-space.ts";

const HDM_AT = 0x1110;

describe("CXL.cache/mem capability array", () => {
  it("lists each entry with id, version and pointer relative to 0x1000", () => {
    const b = componentBlock({
      others: [
        { id: 2, version: 2, pointer: 0x10 },
        { id: 4, version: 1, pointer: 0x80 },
      ],
    });
    expect(decodeCacheMemArray(b)).toEqual({
      offset: "0x1000",
      raw: "0x03110001",
      version: 1,
      cacheMemVersion: 1,
      arraySize: 3,
      capabilities: [
        { id: 2, version: 2, pointer: "0x10", offset: "0x1010", name: "RAS" },
        { id: 4, version: 1, pointer: "0x80", offset: "0x1080", name: "Link" },
        { id: 5, version: 1, pointer: "0x110", offset: "0x1110", name: "HDM Decoder" },
      ],
    });
  });

  it("requires header id 1 and reports the raw header otherwise", () => {
    const b = componentBlock();
    new DataView(b.buffer).setUint32(0x1000, 0x01010002, true);
    expect(() => decodeCacheMemArray(b)).toThrow(/reads 0x01010002: id 0x2, expected 0x1/);
  });

  it("rejects a block too short for the header or the array", () => {
    expect(() => decodeCacheMemArray(new Uint8Array(0x1000))).toThrow(/4096 bytes.*0x1004/);
    const b = componentBlock({ size: 0x1006 + 0x10, hdmPointer: null });
    new DataView(b.buffer).setUint32(0x1000, 0x10110001, true); // 16 entries
    expect(() => decodeCacheMemArray(b)).toThrow(/16-entry/);
  });

  it("has no HDM decoder when none is listed", () => {
    expect(decodeComponentBlock(componentBlock({ hdmPointer: null })).hdm).toBeNull();
  });
});

describe("HDM Decoder capability", () => {
  it.each([
    [0, 1],
    [1, 2],
    [2, 4],
    [3, 6],
    [4, 8],
    [8, 16],
    [9, 20],
    [12, 32],
  ])("decoder count code %i means %i decoders", (code, count) => {
    const b = componentBlock({ hdmCapability: code, decoders: [] });
    const h = decodeHdm(b, HDM_AT);
    expect(h.decoderCount).toBe(count);
    expect(h.capability.decoderCount).toBe(code);
    expect(h.decoders).toHaveLength(count);
  });

  it.each([13, 14, 15])("reserved count code %i is an error reporting the raw register", (code) => {
    const raw = 0x0000_0710 | code;
    const b = componentBlock({ hdmCapability: raw });
    let err: unknown;
    try {
      decodeHdm(b, HDM_AT);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CxlrcError);
    const e = err as CxlrcError;
    expect(e.kind).toBe("decode");
    expect(e.message).toContain(`0x${raw.toString(16).padStart(8, "0")}`);
    expect(e.message).toContain(`code 0x${code.toString(16)} is reserved`);
    expect(e.details.value).toBe(`0x${raw.toString(16).padStart(8, "0")}`);
  });

  it("decodes the capability flags and global control", () => {
    const b = componentBlock({ hdmCapability: 0x0000_1f41, globalControl: 0x3, decoders: [] });
    const h = decodeHdm(b, HDM_AT);
    expect(h.capability).toEqual({
      raw: "0x00001f41",
      decoderCount: 1,
      targetCount: 4,
      a11to8InterleaveCapable: true,
      a14to12InterleaveCapable: true,
      poisonOnDecodeErrorCapable: true,
      threeSixTwelveWayCapable: true,
      sixteenWayCapable: true,
    });
    expect(h.globalControl).toEqual({
      raw: "0x00000003",
      poisonOnDecodeErrorEnable: true,
      hdmDecoderEnable: true,
    });
  });

  it("decodes each decoder's base, size, control and DPA skip", () => {
    const b = componentBlock({
      decoders: [
        {
          base: 0x1_0000_0000n,
          size: 0x1000_0000n,
          control: {
            interleaveGranularity: 2,
            interleaveWays: 1,
            lockOnCommit: true,
            committed: true,
            targetDeviceType: true,
          },
          dpaSkip: 0x2000_0000n,
        },
        { base: 0xffff_ffff_f000_0000n, size: 0x7_f000_0000n },
      ],
    });
    const h = decodeHdm(b, HDM_AT);
    expect(h.decoders[0]).toEqual({
      index: 0,
      offset: "0x1120",
      base: "0x100000000",
      size: "0x10000000",
      control: {
        raw: "0x00001512",
        interleaveGranularity: 2,
        interleaveWays: 1,
        lockOnCommit: true,
        commit: false,
        committed: true,
        errorNotCommitted: false,
        targetDeviceType: true,
        interleaveGranularityBytes: 1024,
        interleaveWaysCount: 2,
      },
      dpaSkip: "0x20000000",
      targetList: "0x20000000",
      registers: {
        baseLow: "0x00000000",
        baseHigh: "0x00000001",
        sizeLow: "0x10000000",
        sizeHigh: "0x00000000",
        control: "0x00001512",
        dpaSkipLow: "0x20000000",
        dpaSkipHigh: "0x00000000",
      },
    });
    expect(h.decoders[1]).toMatchObject({
      index: 1,
      offset: "0x1140",
      base: "0xfffffffff0000000",
      size: "0x7f0000000",
    });
  });

  it("masks the reserved low bits of base and size, but keeps them in registers", () => {
    const b = componentBlock({ decoders: [{}] });
    const dv = new DataView(b.buffer);
    dv.setUint32(0x1120, 0x1fff_ffff, true); // decoder 0 base low
    dv.setUint32(0x1128, 0x2000_0001, true); // decoder 0 size low
    const d = decodeHdm(b, HDM_AT).decoders[0]!;
    expect(d).toMatchObject({ base: "0x10000000", size: "0x20000000" });
    expect(d.registers).toMatchObject({ baseLow: "0x1fffffff", sizeLow: "0x20000001" });
  });

  it("reports reserved granularity and ways codes as null, keeping the code", () => {
    const b = componentBlock({ decoders: [{ control: { interleaveGranularity: 7, interleaveWays: 5 } }] });
    expect(decodeHdm(b, HDM_AT).decoders[0]!.control).toMatchObject({
      interleaveGranularity: 7,
      interleaveGranularityBytes: null,
      interleaveWays: 5,
      interleaveWaysCount: null,
    });
  });

  it("rejects a block that ends before the last decoder", () => {
    const b = componentBlock({ decoders: [{}, {}] }).slice(0, HDM_AT + 0x10 + 0x20 + 4);
    expect(() => decodeHdm(b, HDM_AT)).toThrow(/the 2 HDM decoders/);
  });

  it("accepts a block cut right after the last decoder", () => {
    const b = componentBlock({ decoders: [{}, {}] }).slice(0, HDM_AT + 0x10 + 0x40);
    expect(decodeComponentBlock(b).hdm?.decoders).toHaveLength(2);
  });
});

describe("HDM encoders", () => {
  const aligned = fc.bigInt({ min: 0n, max: 0xf_ffff_ffffn }).map((v) => v << 28n);
  const control = fc.record({
    interleaveGranularity: fc.integer({ min: 0, max: 15 }),
    interleaveWays: fc.integer({ min: 0, max: 15 }),
    lockOnCommit: fc.boolean(),
    commit: fc.boolean(),
    committed: fc.boolean(),
    errorNotCommitted: fc.boolean(),
    targetDeviceType: fc.boolean(),
  });

  it("base, size, DPA skip and control round-trip through decode", () => {
    fc.assert(
      fc.property(aligned, aligned, aligned, control, (base, size, dpaSkip, ctl: DecoderControlFields) => {
        const d = decodeHdm(componentBlock({ decoders: [{ base, size, dpaSkip, control: ctl }] }), HDM_AT)
          .decoders[0]!;
        expect(BigInt(d.base)).toBe(base);
        expect(BigInt(d.size)).toBe(size);
        expect(BigInt(d.dpaSkip)).toBe(dpaSkip);
        expect(d.control).toMatchObject(ctl);
        expect(encodeDecoderControl(ctl)).toBe(Number(d.registers.control));
      }),
    );
  });

  it("split values at bit 32", () => {
    expect(encodeDecoderBase(0x12_3000_0000n)).toEqual({ baseLow: 0x3000_0000, baseHigh: 0x12 });
    expect(encodeDecoderSize(0x1000_0000n)).toEqual({ sizeLow: 0x1000_0000, sizeHigh: 0 });
    expect(encodeDpaSkip(0xffff_ffff_f000_0000n)).toEqual({
      dpaSkipLow: 0xf000_0000,
      dpaSkipHigh: 0xffff_ffff,
    });
  });

  it("refuse values that are not 256 MiB multiples, and out-of-range fields", () => {
    expect(() => encodeDecoderBase(0x800_0000n)).toThrow(/256 MiB/);
    expect(() => encodeDecoderSize(-0x1000_0000n)).toThrow(/64 bits/);
    expect(() => encodeDecoderControl({ interleaveWays: 16 })).toThrow(/interleaveWays/);
  });

  it("control bit positions match the spec (CXL r2.0 §8.2.5.12.7)", () => {
    expect(encodeDecoderControl({ commit: true })).toBe(1 << 9);
    expect(encodeDecoderControl({ committed: true })).toBe(1 << 10);
    expect(encodeDecoderControl({ lockOnCommit: true })).toBe(1 << 8);
    expect(encodeDecoderControl({ errorNotCommitted: true })).toBe(1 << 11);
    expect(encodeDecoderControl({ targetDeviceType: true })).toBe(1 << 12);
    expect(encodeDecoderControl({ interleaveWays: 0xa, interleaveGranularity: 0x6 })).toBe(0xa6);
    expect(HDM_DECODER.control.offset).toBe(0x10);
  });
});
