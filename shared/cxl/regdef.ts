// Registers as data: each register is declared once (offset, width, fields with bit range and access
// type). The decoder, the encoder, the simulator's write semantics and the list of fields an image saves
// and verify compares all derive from these declarations.

/**
 * Access types (CXL r2.0 §8.1.1, PCIe base spec §7.4):
 * - RO: read-only. RW: read-write.
 * - RWL: read-write until the register's lock is set (CONFIG_LOCK for DVSEC fields, Lock On Commit +
 *   Committed for an HDM decoder), then read-only until a conventional reset.
 * - RWO: write once (CONFIG_LOCK itself: a 1 sticks until a conventional reset).
 * - RW1C / RW1CS: write 1 to clear (S: sticky, survives resets other than power-on).
 * - CMD: a command bit: writing 1 starts an action, it reads back 0 (Initiate CXL Reset, Initiate FLR...).
 * Bits covered by no field are reserved: they read zero and writes to them are ignored.
 */
export type Access = "RO" | "RW" | "RWL" | "RWO" | "RW1C" | "RW1CS" | "CMD";

/** Which lock an RWL field obeys. */
export type LockDomain = "configLock" | "decoderLock";

export interface FieldDef {
  /** camelCase name, also the key in decoded JSON. */
  readonly name: string;
  /** lowest bit (inclusive). */
  readonly lo: number;
  /** highest bit (inclusive). */
  readonly hi: number;
  readonly access: Access;
  readonly lock?: LockDomain;
  /** Human label as lspci/kernel print it (for human output). */
  readonly label?: string;
}

export interface RegisterDef {
  /** camelCase name, the key in decoded JSON. */
  readonly name: string;
  /** byte offset relative to the structure that holds it (DVSEC start, HDM capability, decoder...). */
  readonly offset: number;
  readonly width: 1 | 2 | 4;
  readonly fields: readonly FieldDef[];
}

export type FieldValue = boolean | number;
export type DecodedRegister = { raw: string } & Record<string, FieldValue | string>;

export function fieldMask(f: FieldDef): number {
  const bits = f.hi - f.lo + 1;
  return bits >= 32 ? 0xffffffff : ((1 << bits) - 1) >>> 0;
}

/** Mask of the field's bits in place within the register. */
export function fieldMaskInPlace(f: FieldDef): number {
  return (fieldMask(f) << f.lo) >>> 0;
}

export function getField(raw: number, f: FieldDef): number {
  return (raw >>> f.lo) & fieldMask(f);
}

export function setField(raw: number, f: FieldDef, value: number): number {
  const m = fieldMaskInPlace(f);
  return ((raw & ~m) | ((value << f.lo) & m)) >>> 0;
}

/** Field lookup by name; throws on a typo so that a wrong name never silently reads 0. */
export function field(reg: RegisterDef, name: string): FieldDef {
  const f = reg.fields.find((x) => x.name === name);
  if (!f) throw new Error(`register ${reg.name} has no field ${name}`);
  return f;
}

export function readField(reg: RegisterDef, raw: number, name: string): number {
  return getField(raw, field(reg, name));
}

export function readFlag(reg: RegisterDef, raw: number, name: string): boolean {
  return getField(raw, field(reg, name)) !== 0;
}

export function withField(reg: RegisterDef, raw: number, name: string, value: number | boolean): number {
  return setField(raw, field(reg, name), typeof value === "boolean" ? (value ? 1 : 0) : value);
}

/** Mask of all bits with the given access types. */
export function accessMask(reg: RegisterDef, ...access: Access[]): number {
  let m = 0;
  for (const f of reg.fields) if (access.includes(f.access)) m |= fieldMaskInPlace(f);
  return m >>> 0;
}

/** Bits that software configures and that an image saves, restore writes and verify compares. */
export function configMask(reg: RegisterDef): number {
  return accessMask(reg, "RW", "RWL", "RWO");
}

export function hex(v: number | bigint, digits = 0): string {
  return `0x${v.toString(16).padStart(digits, "0")}`;
}

/** Decode a raw register value: `raw` as lowercase hex plus one key per field (1-bit → boolean). */
export function decodeRegister(reg: RegisterDef, raw: number): DecodedRegister {
  const out: DecodedRegister = { raw: hex(raw >>> 0, reg.width * 2) };
  for (const f of reg.fields) {
    const v = getField(raw, f);
    out[f.name] = f.hi === f.lo ? v !== 0 : v;
  }
  return out;
}

/** Encode from field values (missing fields are 0). Inverse of decodeRegister for every declared field. */
export function encodeRegister(
  reg: RegisterDef,
  values: Readonly<Record<string, FieldValue | string>>,
): number {
  let raw = 0;
  for (const f of reg.fields) {
    const v = values[f.name];
    if (v === undefined || typeof v === "string") continue;
    raw = setField(raw, f, typeof v === "boolean" ? (v ? 1 : 0) : v);
  }
  return raw >>> 0;
}
