// Component register block decoding and encoding (CXL r2.0 §8.2.4 CXL.cache/mem capability array,
// §8.2.5.12 HDM Decoder capability). Input: the 64 KiB block (or its start, up to the end of the HDM
// capability) as mapped from the BAR the Register Locator names.
import { CxlrcError } from "../errors.ts";
import { viewOf } from "./capabilities.ts";
import { join256M } from "./dvsec.ts";
import { decodeAs, encodeChecked, type RawRegister, readDecoded, readReg, split256M } from "./read.ts";
import { type FieldValue, hex } from "./regdef.ts";
import {
  CACHE_MEM_ARRAY_HEADER,
  CACHE_MEM_CAP_ID,
  CACHE_MEM_OFFSET,
  decodeDecoderCount,
  HDM,
  HDM_DECODER,
  HDM_DECODER_FIRST,
  HDM_DECODER_STRIDE,
  INTERLEAVE_WAYS,
} from "./registers.ts";

const CACHE_MEM_CAP_NAMES: Readonly<Record<number, string>> = {
  [CACHE_MEM_CAP_ID.cxl]: "CXL",
  [CACHE_MEM_CAP_ID.ras]: "RAS",
  [CACHE_MEM_CAP_ID.security]: "Security",
  [CACHE_MEM_CAP_ID.link]: "Link",
  [CACHE_MEM_CAP_ID.hdmDecoder]: "HDM Decoder",
  [CACHE_MEM_CAP_ID.extSecurity]: "Extended Security",
  [CACHE_MEM_CAP_ID.ide]: "IDE",
};

export interface CacheMemCapability {
  id: number;
  version: number;
  /** Pointer field as found: relative to the array at block + 0x1000. */
  pointer: string;
  /** Where the capability sits in the component block (0x1000 + pointer). */
  offset: string;
  name: string;
}

export interface DecodedCacheMemArray {
  /** Block offset of the array header (0x1000). */
  offset: string;
  raw: string;
  version: number;
  cacheMemVersion: number;
  arraySize: number;
  capabilities: CacheMemCapability[];
}

export interface HdmCapabilityRegister extends RawRegister {
  /** Raw decoder count code (3:0); the number of decoders is DecodedHdm.decoderCount. */
  decoderCount: number;
  targetCount: number;
  a11to8InterleaveCapable: boolean;
  a14to12InterleaveCapable: boolean;
  poisonOnDecodeErrorCapable: boolean;
  threeSixTwelveWayCapable: boolean;
  sixteenWayCapable: boolean;
}

export interface HdmGlobalControl extends RawRegister {
  poisonOnDecodeErrorEnable: boolean;
  hdmDecoderEnable: boolean;
}

export interface DecoderControl extends RawRegister {
  /** Raw code (3:0): 256 B << code. */
  interleaveGranularity: number;
  /** Raw code (7:4), see INTERLEAVE_WAYS. */
  interleaveWays: number;
  lockOnCommit: boolean;
  commit: boolean;
  committed: boolean;
  errorNotCommitted: boolean;
  /** 0 device-coherent (Type 2), 1 host-only coherent (Type 3). */
  targetDeviceType: boolean;
  /** 256 << interleaveGranularity for codes 0–6 (256 B … 16 KiB); null for a reserved code. */
  interleaveGranularityBytes: number | null;
  /** Ways for the code; null for a reserved code. */
  interleaveWaysCount: number | null;
}

export interface DecodedDecoder {
  index: number;
  /** Block offset of the decoder's registers. */
  offset: string;
  base: string;
  size: string;
  control: DecoderControl;
  /** Devices: DPA Skip (High << 32 | Low & 0xf0000000). Ports use the same dwords as the Target List. */
  dpaSkip: string;
  /** Ports: the Target List dwords (High << 32 | Low), raw. Devices: DPA Skip, see above. */
  targetList: string;
  registers: {
    baseLow: string;
    baseHigh: string;
    sizeLow: string;
    sizeHigh: string;
    control: string;
    dpaSkipLow: string;
    dpaSkipHigh: string;
  };
}

export interface DecodedHdm {
  /** Block offset of the HDM Decoder capability. */
  offset: string;
  capability: HdmCapabilityRegister;
  /** Number of decoders, decoded from capability.decoderCount. */
  decoderCount: number;
  globalControl: HdmGlobalControl;
  decoders: DecodedDecoder[];
}

export interface DecodedComponentBlock {
  cacheMem: DecodedCacheMemArray;
  /** Null when the array lists no HDM Decoder capability. */
  hdm: DecodedHdm | null;
}

/** Largest interleave granularity code defined (6 → 16 KiB). */
const IG_MAX_CODE = 6;

function need(bytes: Uint8Array, end: number, what: string): void {
  if (end > bytes.length) {
    throw new CxlrcError(
      "decode",
      `component block is ${bytes.length} bytes; ${what} needs ${hex(end)} bytes`,
      { size: bytes.length, value: hex(end) },
    );
  }
}

/** The CXL.cache/mem capability array at block + 0x1000. */
export function decodeCacheMemArray(bytes: Uint8Array): DecodedCacheMemArray {
  need(bytes, CACHE_MEM_OFFSET + 4, "the CXL.cache/mem capability header at 0x1000");
  const dv = viewOf(bytes);
  const rawHeader = dv.getUint32(CACHE_MEM_OFFSET, true);
  const h = decodeAs<RawRegister & Record<string, number>>(CACHE_MEM_ARRAY_HEADER, rawHeader);
  if (h.capabilityId !== CACHE_MEM_CAP_ID.cxl) {
    throw new CxlrcError(
      "decode",
      `CXL.cache/mem capability header at 0x1000 reads ${hex(rawHeader, 8)}: id ${hex(h.capabilityId!)}, expected 0x1`,
      { value: hex(rawHeader, 8) },
    );
  }
  const n = h.arraySize!;
  need(bytes, CACHE_MEM_OFFSET + 4 * (n + 1), `the ${n}-entry CXL.cache/mem capability array`);
  const capabilities: CacheMemCapability[] = [];
  for (let i = 1; i <= n; i++) {
    const raw = dv.getUint32(CACHE_MEM_OFFSET + 4 * i, true);
    const id = raw & 0xffff;
    const pointer = raw >>> 20;
    capabilities.push({
      id,
      version: (raw >>> 16) & 0xf,
      pointer: hex(pointer),
      offset: hex(CACHE_MEM_OFFSET + pointer),
      name: CACHE_MEM_CAP_NAMES[id] ?? "<?>",
    });
  }
  return {
    offset: hex(CACHE_MEM_OFFSET),
    raw: h.raw,
    version: h.version!,
    cacheMemVersion: h.cacheMemVersion!,
    arraySize: n,
    capabilities,
  };
}

function decodeDecoder(dv: DataView, at: number, index: number): DecodedDecoder {
  const d = HDM_DECODER;
  const baseLow = readReg(dv, at, d.baseLow);
  const baseHigh = readReg(dv, at, d.baseHigh);
  const sizeLow = readReg(dv, at, d.sizeLow);
  const sizeHigh = readReg(dv, at, d.sizeHigh);
  const ctlRaw = readReg(dv, at, d.control);
  const skipLow = readReg(dv, at, d.dpaSkipLow);
  const skipHigh = readReg(dv, at, d.dpaSkipHigh);
  const control = decodeAs<DecoderControl>(d.control, ctlRaw);
  control.interleaveGranularityBytes =
    control.interleaveGranularity <= IG_MAX_CODE ? 256 << control.interleaveGranularity : null;
  control.interleaveWaysCount = INTERLEAVE_WAYS[control.interleaveWays] ?? null;
  return {
    index,
    offset: hex(at),
    base: hex(join256M(baseHigh, baseLow)),
    size: hex(join256M(sizeHigh, sizeLow)),
    control,
    dpaSkip: hex(join256M(skipHigh, skipLow)),
    targetList: hex((BigInt(skipHigh) << 32n) | BigInt(skipLow)),
    registers: {
      baseLow: hex(baseLow, 8),
      baseHigh: hex(baseHigh, 8),
      sizeLow: hex(sizeLow, 8),
      sizeHigh: hex(sizeHigh, 8),
      control: hex(ctlRaw, 8),
      dpaSkipLow: hex(skipLow, 8),
      dpaSkipHigh: hex(skipHigh, 8),
    },
  };
}

/**
 * The HDM Decoder capability at block offset `offset`. A reserved decoder count code is an error that
 * reports the raw register: guessing a count would read or write registers that are not decoders.
 */
export function decodeHdm(bytes: Uint8Array, offset: number): DecodedHdm {
  need(bytes, offset + HDM_DECODER_FIRST, `the HDM Decoder capability at ${hex(offset)}`);
  const dv = viewOf(bytes);
  const capRaw = readReg(dv, offset, HDM.capability);
  const capability = decodeAs<HdmCapabilityRegister>(HDM.capability, capRaw);
  const count = decodeDecoderCount(capability.decoderCount);
  if (count === null) {
    throw new CxlrcError(
      "decode",
      `HDM Decoder Capability at ${hex(offset)} reads ${hex(capRaw, 8)}: decoder count code ${hex(capability.decoderCount)} is reserved`,
      { register: "hdmCapability", value: hex(capRaw, 8) },
    );
  }
  need(
    bytes,
    offset + HDM_DECODER_FIRST + count * HDM_DECODER_STRIDE,
    `the ${count} HDM decoders at ${hex(offset)}`,
  );
  const decoders: DecodedDecoder[] = [];
  for (let i = 0; i < count; i++) {
    decoders.push(decodeDecoder(dv, offset + HDM_DECODER_FIRST + i * HDM_DECODER_STRIDE, i));
  }
  return {
    offset: hex(offset),
    capability,
    decoderCount: count,
    globalControl: readDecoded<HdmGlobalControl>(dv, offset, HDM.globalControl),
    decoders,
  };
}

/** The capability array and, when listed, the HDM Decoder capability of a component block. */
export function decodeComponentBlock(bytes: Uint8Array): DecodedComponentBlock {
  const cacheMem = decodeCacheMemArray(bytes);
  const cap = cacheMem.capabilities.find((c) => c.id === CACHE_MEM_CAP_ID.hdmDecoder);
  return { cacheMem, hdm: cap ? decodeHdm(bytes, Number(cap.offset)) : null };
}

// ---------------------------------------------------------------------------------------------------------
// Encoders

/** Decoder Base Low/High raw values (base 256 MiB aligned). */
export function encodeDecoderBase(base: bigint): { baseLow: number; baseHigh: number } {
  const { low, high } = split256M("decoder base", base);
  return { baseLow: low, baseHigh: high };
}

/** Decoder Size Low/High raw values (size a multiple of 256 MiB). */
export function encodeDecoderSize(size: bigint): { sizeLow: number; sizeHigh: number } {
  const { low, high } = split256M("decoder size", size);
  return { sizeLow: low, sizeHigh: high };
}

/** DPA Skip Low/High raw values (a multiple of 256 MiB). */
export function encodeDpaSkip(skip: bigint): { dpaSkipLow: number; dpaSkipHigh: number } {
  const { low, high } = split256M("DPA skip", skip);
  return { dpaSkipLow: low, dpaSkipHigh: high };
}

export type DecoderControlFields = Partial<
  Pick<
    DecoderControl,
    | "interleaveGranularity"
    | "interleaveWays"
    | "lockOnCommit"
    | "commit"
    | "committed"
    | "errorNotCommitted"
    | "targetDeviceType"
  >
>;

/** Decoder Control raw value from field values (missing fields 0). */
export function encodeDecoderControl(f: DecoderControlFields): number {
  return encodeChecked(HDM_DECODER.control, f as Record<string, FieldValue>);
}
