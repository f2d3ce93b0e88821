// Which CXL registers an image saves, by table: the whole DVSEC id 0 (both ranges), HDM Global Control,
// and every decoder's seven registers. What restore writes and verify compares is the writable part of these
// (configMask), never a list of field names kept by hand.
import { decodeRegister, hex, type RegisterDef } from "../../../shared/cxl/regdef.ts";
import { CXL_DEVICE, CXL_RANGES, HDM_DECODER } from "../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import type { RegisterSnapshot } from "../../../shared/image/schema.ts";

export const DVSEC_REGISTERS: readonly RegisterDef[] = [
  CXL_DEVICE.capability,
  CXL_DEVICE.control,
  CXL_DEVICE.status,
  CXL_DEVICE.control2,
  CXL_DEVICE.status2,
  CXL_DEVICE.lock,
  CXL_DEVICE.capability2,
  ...CXL_RANGES.flatMap((r) => [r.sizeHigh, r.sizeLow, r.baseHigh, r.baseLow]),
];

/** Range Base registers (RWL), high before low as a restore writes them. */
export const RANGE_BASES: readonly RegisterDef[] = CXL_RANGES.flatMap((r) => [r.baseHigh, r.baseLow]);

/** A decoder's registers in the order a restore writes them (rules: base, size, DPA skip, then control). */
export const DECODER_WRITE_ORDER: readonly RegisterDef[] = [
  HDM_DECODER.baseHigh,
  HDM_DECODER.baseLow,
  HDM_DECODER.sizeHigh,
  HDM_DECODER.sizeLow,
  HDM_DECODER.dpaSkipHigh,
  HDM_DECODER.dpaSkipLow,
];
export const DECODER_REGISTERS: readonly RegisterDef[] = [...DECODER_WRITE_ORDER, HDM_DECODER.control];

/** Register names as errors, events and verify report them: "dvsec.control2", "decoder1.control". */
export const regName = {
  pci: (def: RegisterDef) => `pci.${def.name}`,
  pcie: (def: RegisterDef) => `pcie.${def.name}`,
  bridge: (def: RegisterDef) => `bridge.${def.name}`,
  port: (def: RegisterDef) => `port.${def.name}`,
  dvsec: (def: RegisterDef) => `dvsec.${def.name}`,
  hdm: (def: RegisterDef) => `hdm.${def.name}`,
  decoder: (n: number, def: RegisterDef) => `decoder${n}.${def.name}`,
} as const;

/** Raw value out of a saved snapshot. */
export function rawOf(snap: RegisterSnapshot | undefined, what: string): number {
  if (!snap) throw new CxlrcError("bad-input", `image has no register ${what}`, { register: what });
  return Number.parseInt(snap.raw.slice(2), 16) >>> 0;
}

/** 64-bit host address from a decoder's (or range's) high and low registers; low bits 31:28 only. */
export function addr64(high: number, low: number): bigint {
  return (BigInt(high >>> 0) << 32n) | BigInt((low & 0xf000_0000) >>> 0);
}

export function hex64(v: bigint): string {
  return hex(v, 16);
}

/** A register as an image stores it: raw hex plus decoded fields (decodeRegister never yields other strings). */
export function snapshot(def: RegisterDef, raw: number): RegisterSnapshot {
  return decodeRegister(def, raw) as RegisterSnapshot;
}
