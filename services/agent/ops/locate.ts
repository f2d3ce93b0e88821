// Finding things in a live function: the PCI Express capability, CXL DVSECs, the Register Locator's
// component block and the HDM Decoder capability in its CXL.cache/mem array. Reads through the backend only
// what the walk needs (no 4 KiB dump), with the loop and range guards of cxl-registers.md.

import { hex, readField } from "../../../shared/cxl/regdef.ts";
import {
  CACHE_MEM_ARRAY_HEADER,
  CACHE_MEM_CAP_HEADER,
  CACHE_MEM_CAP_ID,
  CACHE_MEM_OFFSET,
  CXL_DVSEC_ID,
  CXL_DVSEC_VENDOR,
  DVSEC_HEADER,
  decodeDecoderCount,
  HDM,
  HDM_DECODER_FIRST,
  HDM_DECODER_STRIDE,
  PCI_CAP_ID_EXP,
  PCI_EXT_CAP_ID_DVSEC,
  PCI_EXT_CAP_START,
  PCI_STD_CAP_PTR,
  REGISTER_BLOCK_ID,
  REGISTER_LOCATOR_ENTRY,
  REGISTER_LOCATOR_FIRST_ENTRY,
} from "../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import type { HardwareBackend } from "../../../shared/hw/backend.ts";
import type { MmioAt } from "./config-access.ts";

/** Device Serial Number extended capability (PCIe base spec §7.9.3). */
export const PCI_EXT_CAP_ID_DSN = 0x03;
/** Status bit 4: capabilities list present. */
const PCI_STATUS_CAP_LIST = 0x10;
/** The kernel's PCI_FIND_CAP_TTL: at most 48 standard capabilities. */
const STD_CAP_TTL = 48;
const EXT_CAP_MAX = 0xffc;

export async function findStdCapability(b: HardwareBackend, bdf: string, id: number): Promise<number | null> {
  const status = await b.configRead(bdf, 0x06, 2);
  if (status === 0xffff || (status & PCI_STATUS_CAP_LIST) === 0) return null;
  let where = (await b.configRead(bdf, PCI_STD_CAP_PTR, 1)) & 0xfc;
  for (let ttl = STD_CAP_TTL; where >= 0x40 && ttl > 0; ttl--) {
    const hdr = await b.configRead(bdf, where, 2);
    if (hdr === 0xffff || hdr === 0) return null;
    if ((hdr & 0xff) === id) return where;
    where = (hdr >>> 8) & 0xfc;
  }
  return null;
}

export function findPcieCap(b: HardwareBackend, bdf: string): Promise<number | null> {
  return findStdCapability(b, bdf, PCI_CAP_ID_EXP);
}

export interface ExtCap {
  offset: number;
  id: number;
  version: number;
}

export async function listExtCapabilities(b: HardwareBackend, bdf: string): Promise<ExtCap[]> {
  const caps: ExtCap[] = [];
  const seen = new Set<number>();
  let where = PCI_EXT_CAP_START;
  while (where >= PCI_EXT_CAP_START && where <= EXT_CAP_MAX && !seen.has(where)) {
    seen.add(where);
    const header = (await b.configRead(bdf, where, 4)) >>> 0;
    if (header === 0 || header === 0xffffffff) break;
    caps.push({ offset: where, id: header & 0xffff, version: (header >>> 16) & 0xf });
    where = (header >>> 20) & 0xffc;
  }
  return caps;
}

export interface DvsecLoc {
  offset: number;
  revision: number;
  length: number;
}

/** The CXL DVSEC (vendor 0x1E98) with the given id, or null. */
export async function findCxlDvsec(
  b: HardwareBackend,
  bdf: string,
  dvsecId: number,
  caps?: readonly ExtCap[],
): Promise<DvsecLoc | null> {
  for (const c of caps ?? (await listExtCapabilities(b, bdf))) {
    if (c.id !== PCI_EXT_CAP_ID_DVSEC) continue;
    const h1 = (await b.configRead(bdf, c.offset + DVSEC_HEADER.header1.offset, 4)) >>> 0;
    if (readField(DVSEC_HEADER.header1, h1, "vendor") !== CXL_DVSEC_VENDOR) continue;
    const id = await b.configRead(bdf, c.offset + DVSEC_HEADER.header2.offset, 2);
    if (id !== dvsecId) continue;
    return {
      offset: c.offset,
      revision: readField(DVSEC_HEADER.header1, h1, "revision"),
      length: readField(DVSEC_HEADER.header1, h1, "length"),
    };
  }
  return null;
}

/** Device Serial Number as 16 hex digits, or null when the function has none. */
export async function readSerial(
  b: HardwareBackend,
  bdf: string,
  caps: readonly ExtCap[],
): Promise<string | null> {
  const dsn = caps.find((c) => c.id === PCI_EXT_CAP_ID_DSN);
  if (!dsn) return null;
  const lo = (await b.configRead(bdf, dsn.offset + 4, 4)) >>> 0;
  const hi = (await b.configRead(bdf, dsn.offset + 8, 4)) >>> 0;
  return hex((BigInt(hi) << 32n) | BigInt(lo), 16);
}

export interface RegisterBlock {
  bir: number;
  blockId: number;
  /** Offset of the block in its BAR. */
  offset: bigint;
}

/** Register Locator (DVSEC 8) entries, as many as fit in its length. */
export async function readRegisterLocator(
  b: HardwareBackend,
  bdf: string,
  loc: DvsecLoc,
): Promise<RegisterBlock[]> {
  const blocks: RegisterBlock[] = [];
  for (let e = REGISTER_LOCATOR_FIRST_ENTRY; e + 8 <= loc.length; e += 8) {
    const low = (await b.configRead(bdf, loc.offset + e + REGISTER_LOCATOR_ENTRY.low.offset, 4)) >>> 0;
    const high = (await b.configRead(bdf, loc.offset + e + REGISTER_LOCATOR_ENTRY.high.offset, 4)) >>> 0;
    const blockId = readField(REGISTER_LOCATOR_ENTRY.low, low, "blockId");
    if (blockId === REGISTER_BLOCK_ID.empty) continue;
    blocks.push({
      bir: readField(REGISTER_LOCATOR_ENTRY.low, low, "bir"),
      blockId,
      offset: (BigInt(high) << 32n) | BigInt(low & 0xffff0000),
    });
  }
  return blocks;
}

export interface ComponentLoc {
  bar: number;
  /** Offset of the 64 KiB component block in the BAR. */
  offset: number;
}

export interface HdmLoc {
  /** HDM Decoder capability: BAR and offset in the BAR (RegisterDef offsets of HDM are relative to it). */
  at: MmioAt;
  /** Offset of the capability relative to the component block. */
  capabilityOffset: number;
  capability: number;
  decoderCount: number;
}

export function decoderAt(hdm: { at: MmioAt }, n: number): MmioAt {
  return { bar: hdm.at.bar, base: hdm.at.base + HDM_DECODER_FIRST + n * HDM_DECODER_STRIDE };
}

/**
 * Decoder count from HDM Capability 3:0; reserved codes are refused, never guessed (reset-rules.md).
 */
export function decoderCountOf(capability: number): number {
  const code = readField(HDM.capability, capability, "decoderCount");
  const n = decodeDecoderCount(code);
  if (n === null) {
    throw new CxlrcError("decode", `HDM Decoder Capability decoder count code ${code} is reserved`, {
      register: "hdm.hdmCapability",
      value: hex(capability >>> 0, 8),
      field: "decoderCount",
      code,
    });
  }
  return n;
}

/** HDM Decoder capability via the CXL.cache/mem capability array at block + 0x1000, or null. */
export async function locateHdm(b: HardwareBackend, bdf: string, comp: ComponentLoc): Promise<HdmLoc | null> {
  const array = comp.offset + CACHE_MEM_OFFSET;
  const head = (await b.mmioRead32(bdf, comp.bar, array)) >>> 0;
  if (head === 0xffffffff) {
    throw new CxlrcError("device-absent", `component block of ${bdf} reads all-ones (BAR ${comp.bar} off?)`, {
      bdf,
      register: "component.cacheMemCapabilityHeader",
      value: hex(head, 8),
    });
  }
  if (readField(CACHE_MEM_ARRAY_HEADER, head, "capabilityId") !== CACHE_MEM_CAP_ID.cxl) return null;
  const n = readField(CACHE_MEM_ARRAY_HEADER, head, "arraySize");
  for (let i = 1; i <= n; i++) {
    const h = (await b.mmioRead32(bdf, comp.bar, array + i * 4)) >>> 0;
    if (readField(CACHE_MEM_CAP_HEADER, h, "capabilityId") !== CACHE_MEM_CAP_ID.hdmDecoder) continue;
    const pointer = readField(CACHE_MEM_CAP_HEADER, h, "pointer");
    const at: MmioAt = { bar: comp.bar, base: array + pointer };
    const capability = (await b.mmioRead32(bdf, at.bar, at.base + HDM.capability.offset)) >>> 0;
    return {
      at,
      capabilityOffset: CACHE_MEM_OFFSET + pointer,
      capability,
      decoderCount: decoderCountOf(capability),
    };
  }
  return null;
}

export interface CxlLayout {
  dvsec: DvsecLoc;
  locator: (DvsecLoc & { blocks: RegisterBlock[] }) | null;
  component: ComponentLoc | null;
  hdm: HdmLoc | null;
}

/** DVSEC id 0, Register Locator, component block and HDM capability; null for a non-CXL function. */
export async function locateCxl(
  b: HardwareBackend,
  bdf: string,
  caps?: readonly ExtCap[],
): Promise<CxlLayout | null> {
  const ext = caps ?? (await listExtCapabilities(b, bdf));
  const dvsec = await findCxlDvsec(b, bdf, CXL_DVSEC_ID.device, ext);
  if (!dvsec) return null;
  const rl = await findCxlDvsec(b, bdf, CXL_DVSEC_ID.registerLocator, ext);
  const locator = rl ? { ...rl, blocks: await readRegisterLocator(b, bdf, rl) } : null;
  const block = locator?.blocks.find((x) => x.blockId === REGISTER_BLOCK_ID.component);
  const component = block ? { bar: block.bir, offset: Number(block.offset) } : null;
  const hdm = component ? await locateHdm(b, bdf, component) : null;
  return { dvsec, locator, component, hdm };
}
