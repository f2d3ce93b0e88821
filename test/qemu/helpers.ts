// Test helpers for the QEMU backend: find the CXL registers of a function by walking what the model
// exposes (no offsets assumed), play firmware for HDM decoder 0, and pulse a secondary bus reset.

import { readField, readFlag, withField } from "../../shared/cxl/regdef.ts";
import {
  CACHE_MEM_ARRAY_HEADER,
  CACHE_MEM_CAP_HEADER,
  CACHE_MEM_CAP_ID,
  CACHE_MEM_OFFSET,
  CXL_DEVICE,
  CXL_DVSEC_ID,
  CXL_DVSEC_VENDOR,
  CXL_PORT_EXT,
  DVSEC_HEADER,
  HDM,
  HDM_DECODER,
  HDM_DECODER_FIRST,
  PCI,
  PCI_BRIDGE,
  PCI_EXT_CAP_ID_DVSEC,
  PCI_EXT_CAP_START,
  REGISTER_BLOCK_ID,
  REGISTER_LOCATOR_ENTRY,
  REGISTER_LOCATOR_FIRST_ENTRY,
} from "../../shared/cxl/registers.ts";
import type { HardwareBackend } from "../../shared/hw/backend.ts";

/** Offset of the first CXL DVSEC with this id, walking the extended capability list; null when absent. */
export async function findDvsec(b: HardwareBackend, bdf: string, id: number): Promise<number | null> {
  const seen = new Set<number>();
  let off = PCI_EXT_CAP_START;
  while (off >= PCI_EXT_CAP_START && off <= 0xffc && !seen.has(off)) {
    seen.add(off);
    const header = await b.configRead(bdf, off, 4);
    if (header === 0 || header === 0xffffffff) return null;
    if ((header & 0xffff) === PCI_EXT_CAP_ID_DVSEC) {
      const h1 = await b.configRead(bdf, off + DVSEC_HEADER.header1.offset, 4);
      const h2 = await b.configRead(bdf, off + DVSEC_HEADER.header2.offset, 2);
      if (readField(DVSEC_HEADER.header1, h1, "vendor") === CXL_DVSEC_VENDOR && h2 === id) return off;
    }
    off = header >>> 20;
  }
  return null;
}

export interface CxlLocation {
  bdf: string;
  /** DVSEC id 0 (devices) or null (ports). */
  dvsec: number | null;
  /** BAR holding the component registers and the block's offset in it. */
  bar: number;
  blockOffset: number;
  /** HDM Decoder capability, relative to the BAR. */
  hdm: number;
}

/** Register Locator → component block → CXL.cache/mem array → HDM Decoder capability. */
export async function locate(b: HardwareBackend, bdf: string): Promise<CxlLocation> {
  const loc = await findDvsec(b, bdf, CXL_DVSEC_ID.registerLocator);
  if (loc === null) throw new Error(`${bdf}: no Register Locator DVSEC`);
  const length = readField(
    DVSEC_HEADER.header1,
    await b.configRead(bdf, loc + DVSEC_HEADER.header1.offset, 4),
    "length",
  );
  for (let e = loc + REGISTER_LOCATOR_FIRST_ENTRY; e + 8 <= loc + length; e += 8) {
    const low = await b.configRead(bdf, e + REGISTER_LOCATOR_ENTRY.low.offset, 4);
    if (readField(REGISTER_LOCATOR_ENTRY.low, low, "blockId") !== REGISTER_BLOCK_ID.component) continue;
    const bar = readField(REGISTER_LOCATOR_ENTRY.low, low, "bir");
    const blockOffset = (low & 0xffff0000) >>> 0;
    const arrayAt = blockOffset + CACHE_MEM_OFFSET;
    const header = await b.mmioRead32(bdf, bar, arrayAt);
    const n = readField(CACHE_MEM_ARRAY_HEADER, header, "arraySize");
    for (let i = 1; i <= n; i++) {
      const cap = await b.mmioRead32(bdf, bar, arrayAt + 4 * i);
      if (readField(CACHE_MEM_CAP_HEADER, cap, "capabilityId") !== CACHE_MEM_CAP_ID.hdmDecoder) continue;
      const hdm = arrayAt + readField(CACHE_MEM_CAP_HEADER, cap, "pointer");
      return { bdf, dvsec: await findDvsec(b, bdf, CXL_DVSEC_ID.device), bar, blockOffset, hdm };
    }
    throw new Error(`${bdf}: component block has no HDM Decoder capability`);
  }
  throw new Error(`${bdf}: Register Locator names no component block`);
}

/** Absolute config offset of a DVSEC id 0 register. */
export function dvsecReg(loc: CxlLocation, reg: { offset: number }): number {
  if (loc.dvsec === null) throw new Error(`${loc.bdf}: no CXL device DVSEC`);
  return loc.dvsec + reg.offset;
}

/** BAR offset of a register of decoder n. */
export function decoderReg(loc: CxlLocation, n: number, reg: { offset: number }): number {
  return loc.hdm + HDM_DECODER_FIRST + n * 0x20 + reg.offset;
}

export interface DecoderReadback {
  globalControl: number;
  base: bigint;
  size: bigint;
  control: number;
}

export async function readDecoder0(b: HardwareBackend, loc: CxlLocation): Promise<DecoderReadback> {
  const r = (reg: { offset: number }) => b.mmioRead32(loc.bdf, loc.bar, decoderReg(loc, 0, reg));
  const big = (hi: number, lo: number) => (BigInt(hi) << 32n) | BigInt(lo & 0xf000_0000);
  return {
    globalControl: await b.mmioRead32(loc.bdf, loc.bar, loc.hdm + HDM.globalControl.offset),
    base: big(await r(HDM_DECODER.baseHigh), await r(HDM_DECODER.baseLow)),
    size: big(await r(HDM_DECODER.sizeHigh), await r(HDM_DECODER.sizeLow)),
    control: await r(HDM_DECODER.control),
  };
}

/**
 * Decoder 0 as firmware would program it: HDM Decoder Enable, base, size, control (Type-3, 1 way), then
 * Commit. QEMU 7.2's hdm_decoder_commit does no sanity check of the range, so any 256 MiB aligned base
 * commits; 16 GiB keeps clear of RAM, the device memory region and PCI holes.
 */
export const DECODER0_BASE = 0x4_0000_0000n;
export const DECODER0_SIZE = 0x1000_0000n;
export async function commitDecoder0(
  b: HardwareBackend,
  loc: CxlLocation,
  opts: { lockOnCommit?: boolean; base?: bigint; size?: bigint } = {},
): Promise<void> {
  const base = opts.base ?? DECODER0_BASE;
  const size = opts.size ?? DECODER0_SIZE;
  const w = (reg: { offset: number }, v: number) =>
    b.mmioWrite32(loc.bdf, loc.bar, decoderReg(loc, 0, reg), v);
  await b.mmioWrite32(
    loc.bdf,
    loc.bar,
    loc.hdm + HDM.globalControl.offset,
    withField(HDM.globalControl, 0, "hdmDecoderEnable", true),
  );
  await w(HDM_DECODER.baseHigh, Number(base >> 32n));
  await w(HDM_DECODER.baseLow, Number(base & 0xf000_0000n));
  await w(HDM_DECODER.sizeHigh, Number(size >> 32n));
  await w(HDM_DECODER.sizeLow, Number(size & 0xf000_0000n));
  let ctl = withField(HDM_DECODER.control, 0, "targetDeviceType", 1);
  ctl = withField(HDM_DECODER.control, ctl, "lockOnCommit", opts.lockOnCommit ?? false);
  await w(HDM_DECODER.control, ctl);
  await w(HDM_DECODER.control, withField(HDM_DECODER.control, ctl, "commit", true));
}

export const committed = (control: number) => readFlag(HDM_DECODER.control, control, "committed");

/** Set Mem_Enable in DVSEC Control (read-modify-write). Returns the value written. */
export async function enableCxlMem(b: HardwareBackend, loc: CxlLocation): Promise<number> {
  const at = dvsecReg(loc, CXL_DEVICE.control);
  const v = withField(CXL_DEVICE.control, await b.configRead(loc.bdf, at, 2), "memEnable", true);
  await b.configWrite(loc.bdf, at, 2, v);
  return v;
}

/** Hold the reset at least this long (PCIe: ≥ 1 ms). */
export const SBR_HOLD_MS = 2;
/** After release, before config access (PCIe: 100 ms). */
export const SBR_SETTLE_MS = 100;

/**
 * Secondary bus reset through Bridge Control bit 6: set, hold, clear, wait. Returns what a function below
 * read while the bit was held (to show the reset was in effect).
 */
export async function secondaryBusReset(
  b: HardwareBackend,
  port: string,
  probeWhileHeld?: string,
): Promise<{ vendorWhileHeld: number | null }> {
  const at = PCI_BRIDGE.bridgeControl.offset;
  const bc = await b.configRead(port, at, 2);
  await b.configWrite(port, at, 2, withField(PCI_BRIDGE.bridgeControl, bc, "secondaryBusReset", true));
  await b.clock.sleep(SBR_HOLD_MS);
  const vendorWhileHeld = probeWhileHeld ? await b.configRead(probeWhileHeld, PCI.vendorId.offset, 2) : null;
  await b.configWrite(port, at, 2, withField(PCI_BRIDGE.bridgeControl, bc, "secondaryBusReset", false));
  await b.clock.sleep(SBR_SETTLE_MS);
  return { vendorWhileHeld };
}

/** The CXL Extensions DVSEC for Ports (id 3) Port Control register of a root/downstream port. */
export async function portControl(b: HardwareBackend, port: string): Promise<number> {
  const at = await findDvsec(b, port, CXL_DVSEC_ID.portExtensions);
  if (at === null) throw new Error(`${port}: no CXL Extensions DVSEC for Ports`);
  return b.configRead(port, at + CXL_PORT_EXT.portControl.offset, 2);
}
