// Small helpers shared by the decoders and encoders: little-endian register reads through one DataView,
// typed views of regdef's table-driven decodeRegister, and the checks the encoders share.
import {
  decodeRegister,
  encodeRegister,
  type FieldValue,
  field,
  fieldMask,
  hex,
  type RegisterDef,
} from "./regdef.ts";

/** A decoded register: `raw` (lowercase hex, padded to the register width) plus one key per field. */
export interface RawRegister {
  raw: string;
}

/** Read `reg` (1, 2 or 4 bytes, little-endian) of the structure at `base`. */
export function readReg(dv: DataView, base: number, reg: RegisterDef): number {
  const at = base + reg.offset;
  return reg.width === 4
    ? dv.getUint32(at, true)
    : reg.width === 2
      ? dv.getUint16(at, true)
      : dv.getUint8(at);
}

/**
 * decodeRegister with the caller's field interface. The interfaces in dvsec.ts and component.ts name the
 * same fields as the declarations in registers.ts; a unit test checks that they agree key for key.
 */
export function decodeAs<T extends RawRegister>(reg: RegisterDef, raw: number): T {
  return decodeRegister(reg, raw) as unknown as T;
}

/** Read and decode in one step. */
export function readDecoded<T extends RawRegister>(dv: DataView, base: number, reg: RegisterDef): T {
  return decodeAs<T>(reg, readReg(dv, base, reg));
}

export function checkRange(what: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${what} ${v} is outside 0..${max}`);
}

/** encodeRegister that refuses a number too wide for its field instead of silently truncating it. */
export function encodeChecked(reg: RegisterDef, values: Readonly<Record<string, FieldValue>>): number {
  for (const [name, v] of Object.entries(values)) {
    if (typeof v === "number") checkRange(`${reg.name} ${name}`, v, fieldMask(field(reg, name)));
  }
  return encodeRegister(reg, values);
}

/** A 64-bit value whose bits 27:0 must be zero (bases, sizes, DPA skip: 256 MiB granules) as two dwords. */
export function split256M(what: string, v: bigint): { high: number; low: number } {
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`${what} ${v} does not fit in 64 bits`);
  if (v & 0x0fff_ffffn) throw new RangeError(`${what} ${hex(v)} is not a multiple of 256 MiB`);
  return { high: Number(v >> 32n), low: Number(v & 0xffff_ffffn) };
}
