// Builders for config space images and component blocks. Small functions that each write one structure,
// plus `buildConfig`, which lays out a list of extended capabilities from 0x100 and links them. Registers
// are written through the same declarations (registers.ts) the decoder reads, or as raw numbers when a
// test needs exact bits.
import {
  type DecoderControlFields,
  encodeDecoderBase,
  encodeDecoderControl,
  encodeDecoderSize,
  encodeDpaSkip,
} from "../../shared/cxl/component.ts";
import {
  encodeDvsecHeader,
  encodeRangeBase,
  encodeRangeSize,
  encodeRegisterLocatorEntry,
  type RangeSizeFields,
  registerLocatorLength,
} from "../../shared/cxl/dvsec.ts";
import { encodeRegister, type FieldValue, type RegisterDef } from "../../shared/cxl/regdef.ts";
import {
  CACHE_MEM_ARRAY_HEADER,
  CACHE_MEM_CAP_HEADER,
  CACHE_MEM_OFFSET,
  COMPONENT_BLOCK_SIZE,
  CXL_DEVICE,
  CXL_DEVICE_DVSEC_LENGTH_R20,
  CXL_DVSEC_ID,
  CXL_DVSEC_VENDOR,
  CXL_PORT_EXT,
  CXL_RANGES,
  encodeDecoderCount,
  HDM,
  HDM_DECODER,
  HDM_DECODER_FIRST,
  HDM_DECODER_STRIDE,
  PCI_CAP_ID_EXP,
  PCI_EXT_CAP_ID_DVSEC,
} from "../../shared/cxl/registers.ts";

/** A register given as a raw value or as field values (missing fields 0). */
export type RegValue = number | Record<string, FieldValue>;

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

function put(b: Uint8Array, base: number, reg: RegisterDef, v: RegValue): void {
  const raw = typeof v === "number" ? v >>> 0 : encodeRegister(reg, v);
  const dv = view(b);
  const at = base + reg.offset;
  if (reg.width === 4) dv.setUint32(at, raw, true);
  else if (reg.width === 2) dv.setUint16(at, raw & 0xffff, true);
  else dv.setUint8(at, raw & 0xff);
}

export function configSpace(size: 64 | 256 | 4096 = 4096): Uint8Array {
  return new Uint8Array(size);
}

export interface HeaderSpec {
  vendorId?: number;
  deviceId?: number;
  /** 24-bit class code. */
  classCode?: number;
  revisionId?: number;
  headerType?: number;
  /** First standard capability (0 = none; sets Status.CapList when non-zero). */
  capPtr?: number;
}

/** Type-0 header fields. */
export function header(b: Uint8Array, h: HeaderSpec = {}): Uint8Array {
  const dv = view(b);
  dv.setUint16(0x00, h.vendorId ?? 0x8086, true);
  dv.setUint16(0x02, h.deviceId ?? 0x0d93, true);
  dv.setUint32(0x08, (((h.classCode ?? 0x050210) << 8) | (h.revisionId ?? 0)) >>> 0, true);
  dv.setUint8(0x0e, h.headerType ?? 0);
  const capPtr = h.capPtr ?? 0;
  dv.setUint8(0x34, capPtr);
  dv.setUint16(0x06, capPtr ? 0x0010 : 0, true);
  return b;
}

/** A standard capability header `[id][next]`. */
export function stdCap(b: Uint8Array, offset: number, id: number, next = 0): void {
  b[offset] = id;
  b[offset + 1] = next;
}

export interface PcieSpec {
  flr?: boolean;
  /** 0 endpoint, 4 root port, 6 downstream port… */
  portType?: number;
  version?: number;
  next?: number;
}

/** PCI Express capability (id 0x10) with or without the FLR capable bit. */
export function pcieCap(b: Uint8Array, offset: number, p: PcieSpec = {}): void {
  stdCap(b, offset, PCI_CAP_ID_EXP, p.next ?? 0);
  const dv = view(b);
  dv.setUint16(offset + 2, ((p.version ?? 2) | ((p.portType ?? 0) << 4)) & 0xffff, true);
  dv.setUint32(offset + 4, p.flr ? 1 << 28 : 0, true);
}

/** Extended capability header: id 15:0, version 19:16, next 31:20. */
export function extCap(b: Uint8Array, offset: number, id: number, version: number, next: number): void {
  view(b).setUint32(offset, (id | (version << 16) | (next << 20)) >>> 0, true);
}

export interface DvsecSpec {
  vendor: number;
  id: number;
  revision?: number;
  length: number;
  next?: number;
}

/** A DVSEC header (extended capability 0x23 plus DVSEC headers 1 and 2). */
export function dvsecHeader(b: Uint8Array, offset: number, d: DvsecSpec): void {
  extCap(b, offset, PCI_EXT_CAP_ID_DVSEC, 1, d.next ?? 0);
  const { header1, header2 } = encodeDvsecHeader({
    vendor: d.vendor,
    id: d.id,
    revision: d.revision ?? 0,
    length: d.length,
  });
  const dv = view(b);
  dv.setUint32(offset + 4, header1, true);
  dv.setUint16(offset + 8, header2, true);
}

export interface RangeSpec extends RangeSizeFields {
  base?: bigint;
  size?: bigint;
  /** Raw overrides (exact bits, reserved ones included). */
  raw?: { sizeHigh: number; sizeLow: number; baseHigh: number; baseLow: number };
}

export interface CxlDeviceSpec {
  revision?: number;
  length?: number;
  next?: number;
  capability?: RegValue;
  control?: RegValue;
  status?: RegValue;
  control2?: RegValue;
  status2?: RegValue;
  lock?: RegValue;
  capability2?: RegValue;
  ranges?: [RangeSpec?, RangeSpec?];
}

/** PCIe DVSEC for CXL Devices (id 0) with the given register contents. */
export function cxlDeviceDvsec(b: Uint8Array, offset: number, s: CxlDeviceSpec = {}): void {
  dvsecHeader(b, offset, {
    vendor: CXL_DVSEC_VENDOR,
    id: CXL_DVSEC_ID.device,
    revision: s.revision ?? 1,
    length: s.length ?? CXL_DEVICE_DVSEC_LENGTH_R20,
    next: s.next ?? 0,
  });
  put(b, offset, CXL_DEVICE.capability, s.capability ?? { ioCapable: true, memCapable: true, hdmCount: 1 });
  put(b, offset, CXL_DEVICE.control, s.control ?? { ioEnable: true });
  put(b, offset, CXL_DEVICE.status, s.status ?? 0);
  put(b, offset, CXL_DEVICE.control2, s.control2 ?? 0);
  put(b, offset, CXL_DEVICE.status2, s.status2 ?? 0);
  put(b, offset, CXL_DEVICE.lock, s.lock ?? 0);
  put(b, offset, CXL_DEVICE.capability2, s.capability2 ?? 0);
  for (let i = 0; i < 2; i++) {
    const r = s.ranges?.[i] ?? {};
    const regs = CXL_RANGES[i]!;
    const raw =
      r.raw ??
      (() => {
        const { sizeHigh, sizeLow } = encodeRangeSize(r.size ?? 0n, r);
        const { baseHigh, baseLow } = encodeRangeBase(r.base ?? 0n);
        return { sizeHigh, sizeLow, baseHigh, baseLow };
      })();
    put(b, offset, regs.sizeHigh, raw.sizeHigh);
    put(b, offset, regs.sizeLow, raw.sizeLow);
    put(b, offset, regs.baseHigh, raw.baseHigh);
    put(b, offset, regs.baseLow, raw.baseLow);
  }
}

export interface LocatorEntry {
  bir: number;
  blockId: number;
  offset: bigint;
}

/** Register Locator DVSEC (id 8) holding exactly these entries (length = 0x0C + 8n unless given). */
export function registerLocatorDvsec(
  b: Uint8Array,
  offset: number,
  entries: readonly LocatorEntry[],
  opts: { next?: number; revision?: number; length?: number } = {},
): void {
  dvsecHeader(b, offset, {
    vendor: CXL_DVSEC_VENDOR,
    id: CXL_DVSEC_ID.registerLocator,
    revision: opts.revision ?? 0,
    length: opts.length ?? registerLocatorLength(entries.length),
    next: opts.next ?? 0,
  });
  const dv = view(b);
  entries.forEach((e, i) => {
    const { low, high } = encodeRegisterLocatorEntry(e);
    dv.setUint32(offset + 0x0c + i * 8, low, true);
    dv.setUint32(offset + 0x10 + i * 8, high, true);
  });
}

export interface PortExtSpec {
  next?: number;
  revision?: number;
  status?: RegValue;
  control?: RegValue;
  altBusBase?: number;
  altBusLimit?: number;
}

/** CXL Extensions DVSEC for Ports (id 3). */
export function portExtensionsDvsec(b: Uint8Array, offset: number, s: PortExtSpec = {}): void {
  dvsecHeader(b, offset, {
    vendor: CXL_DVSEC_VENDOR,
    id: CXL_DVSEC_ID.portExtensions,
    revision: s.revision ?? 0,
    length: 0x28,
    next: s.next ?? 0,
  });
  put(b, offset, CXL_PORT_EXT.portExtStatus, s.status ?? 0);
  put(b, offset, CXL_PORT_EXT.portControl, s.control ?? 0);
  put(b, offset, CXL_PORT_EXT.altBusBase, s.altBusBase ?? 0);
  put(b, offset, CXL_PORT_EXT.altBusLimit, s.altBusLimit ?? 0);
}

// ---------------------------------------------------------------------------------------------------------
// A whole device

export type ExtItem =
  | ({ kind: "cxlDevice" } & Omit<CxlDeviceSpec, "next">)
  | { kind: "registerLocator"; entries: readonly LocatorEntry[]; revision?: number; length?: number }
  | ({ kind: "portExtensions" } & Omit<PortExtSpec, "next">)
  | { kind: "dvsec"; vendor: number; id: number; revision?: number; length: number }
  | { kind: "cap"; id: number; version?: number; length: number };

export interface DeviceSpec {
  size?: 64 | 256 | 4096;
  header?: Omit<HeaderSpec, "capPtr">;
  /** PCI Express capability at 0x40 (null: none). Default: endpoint without FLR. */
  pcie?: PcieSpec | null;
  /** Extended capabilities laid out from 0x100 in this order, each dword aligned, linked by next. */
  ext?: readonly ExtItem[];
}

function itemLength(it: ExtItem): number {
  switch (it.kind) {
    case "cxlDevice":
      return it.length ?? CXL_DEVICE_DVSEC_LENGTH_R20;
    case "registerLocator":
      return Math.max(it.length ?? 0, registerLocatorLength(it.entries.length));
    case "portExtensions":
      return 0x28;
    case "dvsec":
    case "cap":
      return Math.max(it.length, it.kind === "dvsec" ? 0x0c : 4);
  }
}

/** Build a config space: header, optional PCIe capability at 0x40, extended capabilities from 0x100. */
export function buildConfig(spec: DeviceSpec = {}): Uint8Array {
  const b = configSpace(spec.size ?? 4096);
  const pcie = spec.pcie === undefined ? {} : spec.pcie;
  header(b, { ...spec.header, capPtr: pcie ? 0x40 : 0 });
  if (pcie && b.length > 0x40) pcieCap(b, 0x40, pcie);
  const items = spec.ext ?? [];
  if (b.length < 4096) return b;
  const offsets: number[] = [];
  let at = 0x100;
  for (const it of items) {
    offsets.push(at);
    at = (at + itemLength(it) + 3) & ~3;
  }
  if (at > 4096) throw new RangeError(`extended capabilities need ${at} bytes`);
  items.forEach((it, i) => {
    const off = offsets[i]!;
    const next = offsets[i + 1] ?? 0;
    switch (it.kind) {
      case "cxlDevice":
        cxlDeviceDvsec(b, off, { ...it, next });
        break;
      case "registerLocator":
        registerLocatorDvsec(b, off, it.entries, { next, revision: it.revision, length: it.length });
        break;
      case "portExtensions":
        portExtensionsDvsec(b, off, { ...it, next });
        break;
      case "dvsec":
        dvsecHeader(b, off, { ...it, next });
        break;
      case "cap":
        extCap(b, off, it.id, it.version ?? 1, next);
        break;
    }
  });
  return b;
}

/** Offset `buildConfig` gives the n-th extended item. */
export function extOffsets(items: readonly ExtItem[]): number[] {
  const out: number[] = [];
  let at = 0x100;
  for (const it of items) {
    out.push(at);
    at = (at + itemLength(it) + 3) & ~3;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Component register block

export interface DecoderSpec {
  base?: bigint;
  size?: bigint;
  control?: DecoderControlFields | number;
  dpaSkip?: bigint;
}

export interface ComponentSpec {
  /** Capability array entries other than HDM (id, version, pointer relative to 0x1000). */
  others?: { id: number; version?: number; pointer: number }[];
  /** HDM capability pointer relative to 0x1000 (null: no HDM capability). */
  hdmPointer?: number | null;
  /** Raw HDM capability register; default derived from the decoder count. */
  hdmCapability?: RegValue;
  globalControl?: RegValue;
  decoders?: DecoderSpec[];
  /** Block length (default 64 KiB). */
  size?: number;
}

/** A component register block with a CXL.cache/mem array at 0x1000 and an HDM Decoder capability. */
export function componentBlock(s: ComponentSpec = {}): Uint8Array {
  const b = new Uint8Array(s.size ?? COMPONENT_BLOCK_SIZE);
  const dv = view(b);
  const hdmPointer = s.hdmPointer === undefined ? 0x110 : s.hdmPointer;
  const entries = [...(s.others ?? [])];
  if (hdmPointer !== null) entries.push({ id: 5, version: 1, pointer: hdmPointer });
  dv.setUint32(
    CACHE_MEM_OFFSET,
    encodeRegister(CACHE_MEM_ARRAY_HEADER, {
      capabilityId: 1,
      version: 1,
      cacheMemVersion: 1,
      arraySize: entries.length,
    }),
    true,
  );
  entries.forEach((e, i) => {
    dv.setUint32(
      CACHE_MEM_OFFSET + 4 * (i + 1),
      encodeRegister(CACHE_MEM_CAP_HEADER, {
        capabilityId: e.id,
        version: e.version ?? 1,
        pointer: e.pointer,
      }),
      true,
    );
  });
  if (hdmPointer === null) return b;
  const hdm = CACHE_MEM_OFFSET + hdmPointer;
  const decoders = s.decoders ?? [{}];
  put(
    b,
    hdm,
    HDM.capability,
    s.hdmCapability ?? { decoderCount: encodeDecoderCount(decoders.length), targetCount: 1 },
  );
  put(b, hdm, HDM.globalControl, s.globalControl ?? { hdmDecoderEnable: true });
  decoders.forEach((d, i) => {
    const at = hdm + HDM_DECODER_FIRST + i * HDM_DECODER_STRIDE;
    const { baseLow, baseHigh } = encodeDecoderBase(d.base ?? 0n);
    const { sizeLow, sizeHigh } = encodeDecoderSize(d.size ?? 0n);
    const { dpaSkipLow, dpaSkipHigh } = encodeDpaSkip(d.dpaSkip ?? 0n);
    put(b, at, HDM_DECODER.baseLow, baseLow);
    put(b, at, HDM_DECODER.baseHigh, baseHigh);
    put(b, at, HDM_DECODER.sizeLow, sizeLow);
    put(b, at, HDM_DECODER.sizeHigh, sizeHigh);
    put(
      b,
      at,
      HDM_DECODER.control,
      typeof d.control === "number" ? d.control : encodeDecoderControl(d.control ?? {}),
    );
    put(b, at, HDM_DECODER.dpaSkipLow, dpaSkipLow);
    put(b, at, HDM_DECODER.dpaSkipHigh, dpaSkipHigh);
  });
  return b;
}
