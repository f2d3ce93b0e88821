// DVSEC decoding and encoding (PCIe base spec §7.9.6; CXL r2.0 §8.1.3 DVSEC for CXL Devices, §8.1.5 CXL
// Extensions DVSEC for Ports, §8.1.9 Register Locator). Every field comes from the declarations in
// registers.ts; this file adds the multi-register values (64-bit bases and sizes, locator offsets).
import { CxlrcError } from "../errors.ts";
import { viewOf } from "./capabilities.ts";
import {
  checkRange,
  decodeAs,
  encodeChecked,
  type RawRegister,
  readDecoded,
  readReg,
  split256M,
} from "./read.ts";
import { decodeRegister, hex } from "./regdef.ts";
import {
  CXL_DEVICE,
  CXL_DEVICE_DVSEC_LENGTH_R20,
  CXL_DVSEC_ID,
  CXL_DVSEC_VENDOR,
  CXL_PORT_EXT,
  CXL_RANGES,
  CXL_RESET_TIMEOUT_MS,
  CXL_RESET_TIMEOUT_RESERVED_FALLBACK_MS,
  DVSEC_HEADER,
  MEM_ACTIVE_TIMEOUT_MS,
  PCI_CFG_SPACE_EXP_SIZE,
  REGISTER_BLOCK_ID,
  REGISTER_LOCATOR_ENTRY,
  REGISTER_LOCATOR_FIRST_ENTRY,
} from "./registers.ts";

// ---------------------------------------------------------------------------------------------------------
// DVSEC header

/** Bytes a DVSEC needs for its two header registers (+0x00 ext cap header … +0x09 DVSEC id). */
export const DVSEC_HEADER_SIZE = 0x0a;

export interface DvsecHeader {
  /** DVSEC vendor id (0x1e98 = CXL). */
  vendor: number;
  id: number;
  revision: number;
  /** DVSEC length in bytes, header included. */
  length: number;
}

export function decodeDvsecHeader(bytes: Uint8Array, offset: number): DvsecHeader {
  if (offset + DVSEC_HEADER_SIZE > bytes.length) {
    throw new CxlrcError("decode", `DVSEC header at ${hex(offset)} runs past the config space`, {
      offset: hex(offset),
    });
  }
  const dv = viewOf(bytes);
  const h1 = dv.getUint32(offset + DVSEC_HEADER.header1.offset, true);
  return {
    vendor: h1 & 0xffff,
    revision: (h1 >>> 16) & 0xf,
    length: h1 >>> 20,
    id: dv.getUint16(offset + DVSEC_HEADER.header2.offset, true),
  };
}

/** DVSEC Header 1 (+0x04) and Header 2 (+0x08) raw values. */
export function encodeDvsecHeader(h: DvsecHeader): { header1: number; header2: number } {
  checkRange("DVSEC vendor", h.vendor, 0xffff);
  checkRange("DVSEC revision", h.revision, 0xf);
  checkRange("DVSEC length", h.length, 0xfff);
  checkRange("DVSEC id", h.id, 0xffff);
  return { header1: (h.vendor | (h.revision << 16) | (h.length << 20)) >>> 0, header2: h.id };
}

const CXL_DVSEC_NAMES: Readonly<Record<number, string>> = {
  [CXL_DVSEC_ID.device]: "PCIe DVSEC for CXL Devices",
  [CXL_DVSEC_ID.nonCxlFunctionMap]: "Non-CXL Function Map DVSEC",
  [CXL_DVSEC_ID.portExtensions]: "CXL Extensions DVSEC for Ports",
  [CXL_DVSEC_ID.gpfPort]: "GPF DVSEC for CXL Ports",
  [CXL_DVSEC_ID.gpfDevice]: "GPF DVSEC for CXL Devices",
  [CXL_DVSEC_ID.flexBusPort]: "PCIe DVSEC for Flex Bus Port",
  [CXL_DVSEC_ID.registerLocator]: "Register Locator DVSEC",
  [CXL_DVSEC_ID.mld]: "MLD DVSEC",
};

/** Human name of a DVSEC, or null when it is not one of the CXL DVSECs cxlrc knows. */
export function dvsecName(h: Pick<DvsecHeader, "vendor" | "id">): string | null {
  if (h.vendor !== CXL_DVSEC_VENDOR) return null;
  return CXL_DVSEC_NAMES[h.id] ?? null;
}

// ---------------------------------------------------------------------------------------------------------
// DVSEC id 0: PCIe DVSEC for CXL Devices

export interface CxlCapability extends RawRegister {
  cacheCapable: boolean;
  ioCapable: boolean;
  memCapable: boolean;
  memHwInitMode: boolean;
  hdmCount: number;
  cacheWbInvCapable: boolean;
  cxlResetCapable: boolean;
  /** Raw CXL Reset Timeout code (bits 10:8). */
  cxlResetTimeout: number;
  /** Decoded timeout; for reserved codes 5–7, CXL_RESET_TIMEOUT_RESERVED_FALLBACK_MS. */
  cxlResetTimeoutMs: number;
  /** True when the code is reserved and cxlResetTimeoutMs is the fallback, not the device's word. */
  cxlResetTimeoutReserved: boolean;
  cxlResetMemClrCapable: boolean;
  multipleLogicalDevice: boolean;
  viralCapable: boolean;
  pmInitCompletionCapable: boolean;
}

export interface CxlControl extends RawRegister {
  cacheEnable: boolean;
  ioEnable: boolean;
  memEnable: boolean;
  cacheSfCoverage: number;
  cacheSfGranularity: number;
  cacheCleanEviction: boolean;
  viralEnable: boolean;
}

export interface CxlStatus extends RawRegister {
  viralStatus: boolean;
}

export interface CxlControl2 extends RawRegister {
  disableCaching: boolean;
  initiateCacheWbInv: boolean;
  initiateCxlReset: boolean;
  cxlResetMemClrEnable: boolean;
  /** r3.x */
  desiredVolatileHdmStateAfterHotReset: boolean;
  /** r3.x */
  modifiedCompletionEnable: boolean;
}

export interface CxlStatus2 extends RawRegister {
  cacheInvalid: boolean;
  cxlResetComplete: boolean;
  cxlResetError: boolean;
  /** r3.x */
  volatileHdmPreservationError: boolean;
  pmInitComplete: boolean;
}

export interface CxlLock extends RawRegister {
  configLock: boolean;
}

export interface CxlCapability2 extends RawRegister {
  cacheSizeUnit: number;
  cacheSize: number;
  /** cacheSize × unit (1 → 64 KiB, 2 → 1 MiB) as hex; null when the unit is 0 (not reported) or reserved. */
  cacheSizeBytes: string | null;
}

export interface DecodedRange {
  /** 1 or 2. */
  index: 1 | 2;
  /** (Base High << 32) | (Base Low & 0xf0000000), lowercase hex. */
  base: string;
  /** (Size High << 32) | (Size Low & 0xf0000000), lowercase hex. */
  size: string;
  memInfoValid: boolean;
  memActive: boolean;
  mediaType: number;
  memoryClass: number;
  desiredInterleave: number;
  /** Raw Memory_Active_Timeout code (Size Low 15:13). */
  memActiveTimeoutCode: number;
  /** Decoded timeout in ms, null for a reserved code (5–7). */
  memActiveTimeoutMs: number | null;
  /** The four raw registers, for save/restore and for readers who want the reserved bits. */
  registers: { sizeHigh: string; sizeLow: string; baseHigh: string; baseLow: string };
}

export interface DecodedCxlDevice {
  /** Offset of the DVSEC in config space. */
  offset: string;
  revision: number;
  length: number;
  capability: CxlCapability;
  control: CxlControl;
  status: CxlStatus;
  control2: CxlControl2;
  status2: CxlStatus2;
  lock: CxlLock;
  capability2: CxlCapability2;
  ranges: [DecodedRange, DecodedRange];
}

/** Cache Size Unit encodings (Capability2 3:0): 1 → 64 KiB, 2 → 1 MiB; 0 not reported, others reserved. */
export const CACHE_SIZE_UNIT_BYTES: Readonly<Record<number, number>> = { 1: 64 * 1024, 2: 1024 * 1024 };

function needDvsec(bytes: Uint8Array, offset: number, what: string, need: number): DvsecHeader {
  const h = decodeDvsecHeader(bytes, offset);
  if (h.length < need) {
    throw new CxlrcError(
      "decode",
      `${what} at ${hex(offset)} declares length ${hex(h.length)}, shorter than the ${hex(need)} bytes its registers need`,
      { offset: hex(offset), value: hex(h.length) },
    );
  }
  if (offset + need > bytes.length || offset + need > PCI_CFG_SPACE_EXP_SIZE) {
    throw new CxlrcError("decode", `${what} at ${hex(offset)} runs past the config space`, {
      offset: hex(offset),
    });
  }
  return h;
}

/** 64-bit value from a high register and the 31:28 bits of a low register. */
export function join256M(high: number, low: number): bigint {
  return (BigInt(high >>> 0) << 32n) | BigInt((low & 0xf0000000) >>> 0);
}

function decodeRange(dv: DataView, offset: number, n: 1 | 2): DecodedRange {
  const r = CXL_RANGES[n - 1]!;
  const sizeHigh = readReg(dv, offset, r.sizeHigh);
  const sizeLow = readReg(dv, offset, r.sizeLow);
  const baseHigh = readReg(dv, offset, r.baseHigh);
  const baseLow = readReg(dv, offset, r.baseLow);
  const f = decodeRegister(r.sizeLow, sizeLow);
  const timeout = f.memActiveTimeout as number;
  return {
    index: n,
    base: hex(join256M(baseHigh, baseLow)),
    size: hex(join256M(sizeHigh, sizeLow)),
    memInfoValid: f.memInfoValid as boolean,
    memActive: f.memActive as boolean,
    mediaType: f.mediaType as number,
    memoryClass: f.memoryClass as number,
    desiredInterleave: f.desiredInterleave as number,
    memActiveTimeoutCode: timeout,
    memActiveTimeoutMs: MEM_ACTIVE_TIMEOUT_MS[timeout] ?? null,
    registers: {
      sizeHigh: hex(sizeHigh, 8),
      sizeLow: hex(sizeLow, 8),
      baseHigh: hex(baseHigh, 8),
      baseLow: hex(baseLow, 8),
    },
  };
}

/**
 * Decode the PCIe DVSEC for CXL Devices at `offset` (the extended capability header). Every revision
 * (CXL 1.1 rev 0, r2.0 rev 1, r3.x rev 2+) keeps these registers at the same offsets; the DVSEC must
 * declare at least the 0x38 bytes they occupy.
 */
export function decodeCxlDevice(bytes: Uint8Array, offset: number): DecodedCxlDevice {
  const h = needDvsec(bytes, offset, "DVSEC for CXL Devices", CXL_DEVICE_DVSEC_LENGTH_R20);
  if (h.vendor !== CXL_DVSEC_VENDOR || h.id !== CXL_DVSEC_ID.device) {
    throw new CxlrcError(
      "decode",
      `DVSEC at ${hex(offset)} is vendor ${hex(h.vendor, 4)} id ${h.id}, not the DVSEC for CXL Devices`,
      { offset: hex(offset) },
    );
  }
  const dv = viewOf(bytes);
  const capRaw = readReg(dv, offset, CXL_DEVICE.capability);
  const capability = decodeAs<CxlCapability>(CXL_DEVICE.capability, capRaw);
  const code = capability.cxlResetTimeout;
  const ms = CXL_RESET_TIMEOUT_MS[code];
  capability.cxlResetTimeoutMs = ms ?? CXL_RESET_TIMEOUT_RESERVED_FALLBACK_MS;
  capability.cxlResetTimeoutReserved = ms === undefined;
  const cap2 = readDecoded<CxlCapability2>(dv, offset, CXL_DEVICE.capability2);
  const unit = CACHE_SIZE_UNIT_BYTES[cap2.cacheSizeUnit];
  cap2.cacheSizeBytes = unit === undefined ? null : hex(BigInt(unit) * BigInt(cap2.cacheSize));
  return {
    offset: hex(offset),
    revision: h.revision,
    length: h.length,
    capability,
    control: readDecoded<CxlControl>(dv, offset, CXL_DEVICE.control),
    status: readDecoded<CxlStatus>(dv, offset, CXL_DEVICE.status),
    control2: readDecoded<CxlControl2>(dv, offset, CXL_DEVICE.control2),
    status2: readDecoded<CxlStatus2>(dv, offset, CXL_DEVICE.status2),
    lock: readDecoded<CxlLock>(dv, offset, CXL_DEVICE.lock),
    capability2: cap2,
    ranges: [decodeRange(dv, offset, 1), decodeRange(dv, offset, 2)],
  };
}

/** Range Base High/Low raw values for a 256 MiB aligned base. Low keeps bits 27:0 zero (reserved). */
export function encodeRangeBase(base: bigint): { baseHigh: number; baseLow: number } {
  const { high, low } = split256M("range base", base);
  return { baseHigh: high, baseLow: low };
}

export interface RangeSizeFields {
  memInfoValid?: boolean;
  memActive?: boolean;
  mediaType?: number;
  memoryClass?: number;
  desiredInterleave?: number;
  memActiveTimeoutCode?: number;
}

/** Range Size High/Low raw values: a 256 MiB multiple plus the flag fields of Size Low. */
export function encodeRangeSize(
  size: bigint,
  f: RangeSizeFields = {},
): { sizeHigh: number; sizeLow: number } {
  const { high, low } = split256M("range size", size);
  const fields = {
    memInfoValid: f.memInfoValid ?? false,
    memActive: f.memActive ?? false,
    mediaType: f.mediaType ?? 0,
    memoryClass: f.memoryClass ?? 0,
    desiredInterleave: f.desiredInterleave ?? 0,
    memActiveTimeout: f.memActiveTimeoutCode ?? 0,
  };
  return { sizeHigh: high, sizeLow: (encodeChecked(CXL_RANGES[0].sizeLow, fields) | low) >>> 0 };
}

// ---------------------------------------------------------------------------------------------------------
// DVSEC id 3: CXL Extensions DVSEC for Ports (root ports, switch ports)

/** r2.0 length of the port extensions DVSEC: registers up to CXL RCRB Base High (+0x24). */
export const CXL_PORT_EXT_DVSEC_LENGTH = 0x28;

export interface DecodedPortExtensions {
  offset: string;
  revision: number;
  length: number;
  status: RawRegister & { portPowerManagementInitComplete: boolean; viralStatus: boolean };
  /** Port Control Extensions: unmaskSbr says whether a secondary bus reset reaches the CXL link. */
  control: RawRegister & {
    unmaskSbr: boolean;
    unmaskLinkDisable: boolean;
    altMemoryAndIdSpaceEnable: boolean;
    altBme: boolean;
    viralEnable: boolean;
  };
  altBusBase: number;
  altBusLimit: number;
  altMemoryBase: string;
  altMemoryLimit: string;
}

export function decodePortExtensions(bytes: Uint8Array, offset: number): DecodedPortExtensions {
  const h = needDvsec(bytes, offset, "CXL Extensions DVSEC for Ports", CXL_PORT_EXT_DVSEC_LENGTH);
  const dv = viewOf(bytes);
  const p = CXL_PORT_EXT;
  return {
    offset: hex(offset),
    revision: h.revision,
    length: h.length,
    status: readDecoded<DecodedPortExtensions["status"]>(dv, offset, p.portExtStatus),
    control: readDecoded<DecodedPortExtensions["control"]>(dv, offset, p.portControl),
    altBusBase: readReg(dv, offset, p.altBusBase),
    altBusLimit: readReg(dv, offset, p.altBusLimit),
    altMemoryBase: hex(readReg(dv, offset, p.altMemBase), 4),
    altMemoryLimit: hex(readReg(dv, offset, p.altMemLimit), 4),
  };
}

// ---------------------------------------------------------------------------------------------------------
// DVSEC id 8: Register Locator

export interface RegisterBlock {
  /** 1-based entry number, as lspci numbers them (Block1, Block2…), empty entries included. */
  index: number;
  /** BAR indicator (0–5; 6–7 reserved). */
  bir: number;
  /** Register block identifier: 0 empty, 1 component, 2 BAR virtualization ACL, 3 memory device, 4 CPMU. */
  blockId: number;
  /** Human name of blockId ("component registers"…), as lspci prints it. */
  blockName: string;
  /** Offset of the block within the BAR (64 KiB aligned), lowercase hex. */
  offset: string;
}

export interface DecodedRegisterLocator {
  offset: string;
  revision: number;
  length: number;
  /**
   * Every entry that fits in the DVSEC length, in order. Empty entries (blockId 0) are kept, not dropped:
   * the list then mirrors the hardware one for one, `index` matches lspci's BlockN numbering, and an
   * encoder can rebuild the DVSEC from it. Readers looking for a block filter on blockId.
   */
  blocks: RegisterBlock[];
}

const BLOCK_NAMES: Readonly<Record<number, string>> = {
  [REGISTER_BLOCK_ID.empty]: "empty",
  [REGISTER_BLOCK_ID.component]: "component registers",
  [REGISTER_BLOCK_ID.barVirtualizationAcl]: "BAR virtualization",
  [REGISTER_BLOCK_ID.memoryDevice]: "CXL device registers",
  [REGISTER_BLOCK_ID.cpmu]: "CPMU registers",
  255: "vendor-specific",
};

export function registerBlockName(blockId: number): string {
  return BLOCK_NAMES[blockId] ?? "<?>";
}

/** Number of 8-byte entries from +0x0C that fit in a Register Locator of the given length. */
export function registerLocatorEntryCount(length: number): number {
  return length <= REGISTER_LOCATOR_FIRST_ENTRY ? 0 : Math.floor((length - REGISTER_LOCATOR_FIRST_ENTRY) / 8);
}

export function decodeRegisterLocatorEntry(low: number, high: number): Omit<RegisterBlock, "index"> {
  const blockId = (low >>> 8) & 0xff;
  return {
    bir: low & 0x7,
    blockId,
    blockName: registerBlockName(blockId),
    offset: hex((BigInt(high >>> 0) << 32n) | BigInt((low & 0xffff0000) >>> 0)),
  };
}

export function decodeRegisterLocator(bytes: Uint8Array, offset: number): DecodedRegisterLocator {
  const h = needDvsec(bytes, offset, "Register Locator DVSEC", REGISTER_LOCATOR_FIRST_ENTRY);
  const count = registerLocatorEntryCount(h.length);
  if (offset + REGISTER_LOCATOR_FIRST_ENTRY + count * 8 > bytes.length) {
    throw new CxlrcError(
      "decode",
      `Register Locator at ${hex(offset)} declares ${count} entries (length ${hex(h.length)}), past the config space`,
      { offset: hex(offset), value: hex(h.length) },
    );
  }
  const dv = viewOf(bytes);
  const blocks: RegisterBlock[] = [];
  for (let i = 0; i < count; i++) {
    const at = offset + REGISTER_LOCATOR_FIRST_ENTRY + i * 8;
    const low = dv.getUint32(at + REGISTER_LOCATOR_ENTRY.low.offset, true);
    const high = dv.getUint32(at + REGISTER_LOCATOR_ENTRY.high.offset, true);
    blocks.push({ index: i + 1, ...decodeRegisterLocatorEntry(low, high) });
  }
  return { offset: hex(offset), revision: h.revision, length: h.length, blocks };
}

/** Register Locator entry raw dwords. The offset must be 64 KiB aligned (low 16 bits are the id/BIR). */
export function encodeRegisterLocatorEntry(e: { bir: number; blockId: number; offset: bigint }): {
  low: number;
  high: number;
} {
  checkRange("BIR", e.bir, 7);
  checkRange("block id", e.blockId, 0xff);
  if (e.offset < 0n || e.offset > 0xffff_ffff_ffff_ffffn) {
    throw new RangeError(`register block offset ${e.offset} does not fit in 64 bits`);
  }
  if (e.offset & 0xffffn)
    throw new RangeError(`register block offset ${hex(e.offset)} is not 64 KiB aligned`);
  const low = (Number(e.offset & 0xffff0000n) | (e.blockId << 8) | e.bir) >>> 0;
  return { low, high: Number(e.offset >> 32n) };
}

/** Register Locator DVSEC length for n entries. */
export function registerLocatorLength(entries: number): number {
  return REGISTER_LOCATOR_FIRST_ENTRY + entries * 8;
}

export type { RawRegister };
