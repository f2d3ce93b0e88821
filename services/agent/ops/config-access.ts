// Typed register access over a HardwareBackend, driven by the RegisterDef tables: the width and offset come
// from the declaration, and every read-modify-write drops command (CMD) and write-1-to-clear bits from the
// value it read, so a write never re-issues a stale command or clears a status bit by accident.

import { accessMask, hex, type RegisterDef } from "../../../shared/cxl/regdef.ts";
import type { HardwareBackend } from "../../../shared/hw/backend.ts";

/** All-ones at the register's width: what an absent or not-ready function reads. */
export function allOnes(def: RegisterDef): number {
  return def.width === 4 ? 0xffffffff : (1 << (def.width * 8)) - 1;
}

export function isAllOnes(def: RegisterDef, value: number): boolean {
  return value >>> 0 === allOnes(def);
}

/** Lowercase hex at the register's width, as error details carry it. */
export function regHex(def: RegisterDef, value: number): string {
  return hex(value >>> 0, def.width * 2);
}

/** Bits a read-modify-write must never write back as read: commands and write-1-to-clear status. */
export function volatileMask(def: RegisterDef): number {
  return accessMask(def, "CMD", "RW1C", "RW1CS");
}

export function readConfigReg(
  b: HardwareBackend,
  bdf: string,
  base: number,
  def: RegisterDef,
): Promise<number> {
  return b.configRead(bdf, base + def.offset, def.width);
}

export function writeConfigReg(
  b: HardwareBackend,
  bdf: string,
  base: number,
  def: RegisterDef,
  value: number,
): Promise<void> {
  return b.configWrite(bdf, base + def.offset, def.width, value >>> 0);
}

/**
 * Read-modify-write: `change` receives the value read with CMD/RW1C bits cleared and returns what to
 * write (it may set a command bit on purpose). Returns both for the caller's records.
 */
export async function updateConfigReg(
  b: HardwareBackend,
  bdf: string,
  base: number,
  def: RegisterDef,
  change: (clean: number) => number,
): Promise<{ before: number; written: number }> {
  const before = await readConfigReg(b, bdf, base, def);
  const written = change((before & ~volatileMask(def)) >>> 0) >>> 0;
  await writeConfigReg(b, bdf, base, def, written);
  return { before, written };
}

/** A register in a BAR-mapped block (component registers: 32-bit accesses only). */
export interface MmioAt {
  bar: number;
  /** Offset in the BAR of the structure the RegisterDef offsets are relative to. */
  base: number;
}

export function readMmioReg(b: HardwareBackend, bdf: string, at: MmioAt, def: RegisterDef): Promise<number> {
  if (def.width !== 4) throw new TypeError(`component register ${def.name} must be 32-bit`);
  return b.mmioRead32(bdf, at.bar, at.base + def.offset);
}

export function writeMmioReg(
  b: HardwareBackend,
  bdf: string,
  at: MmioAt,
  def: RegisterDef,
  value: number,
): Promise<void> {
  if (def.width !== 4) throw new TypeError(`component register ${def.name} must be 32-bit`);
  return b.mmioWrite32(bdf, at.bar, at.base + def.offset, value >>> 0);
}
