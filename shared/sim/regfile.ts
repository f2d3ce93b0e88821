// A register file: bytes plus a layout that says which register owns each byte. Write semantics come from
// the FieldDef access types (shared/cxl/registers.ts): RO keeps, RW/RWL take the written bits (unless the
// lock freezes them), RWO only sets, RW1C/RW1CS clear on 1, CMD reads 0 and reports the bits written as 1,
// reserved bits read zero. Sub-dword writes act on their byte lanes only.
import { fieldMaskInPlace, type RegisterDef } from "../cxl/regdef.ts";

/** A register placed at an absolute offset of its space, with the name faults and errors use. */
export interface Placed {
  /** `<block>.<register>`, e.g. "pci.command", "dvsec.control", "decoder1.control". */
  readonly name: string;
  readonly offset: number;
  readonly def: RegisterDef;
  /** HDM decoder index for decoder registers. */
  readonly decoder?: number;
}

export interface Masks {
  readonly defined: number;
  readonly ro: number;
  readonly rw: number;
  readonly rwl: number;
  readonly rwlConfig: number;
  readonly rwlDecoder: number;
  readonly rwo: number;
  /** RW1C and RW1CS. */
  readonly rw1c: number;
  /** RW1CS only: survives resets other than power-on. */
  readonly sticky: number;
  readonly cmd: number;
}

const maskCache = new WeakMap<RegisterDef, Masks>();

export function masks(def: RegisterDef): Masks {
  let m = maskCache.get(def);
  if (m) return m;
  const acc = {
    defined: 0,
    ro: 0,
    rw: 0,
    rwl: 0,
    rwlConfig: 0,
    rwlDecoder: 0,
    rwo: 0,
    rw1c: 0,
    sticky: 0,
    cmd: 0,
  };
  for (const f of def.fields) {
    const bits = fieldMaskInPlace(f);
    acc.defined |= bits;
    switch (f.access) {
      case "RO":
        acc.ro |= bits;
        break;
      case "RW":
        acc.rw |= bits;
        break;
      case "RWL":
        acc.rwl |= bits;
        if (f.lock === "decoderLock") acc.rwlDecoder |= bits;
        else acc.rwlConfig |= bits;
        break;
      case "RWO":
        acc.rwo |= bits;
        break;
      case "RW1CS":
        acc.sticky |= bits;
        acc.rw1c |= bits;
        break;
      case "RW1C":
        acc.rw1c |= bits;
        break;
      case "CMD":
        acc.cmd |= bits;
        break;
    }
  }
  for (const k of Object.keys(acc) as (keyof typeof acc)[]) acc[k] >>>= 0;
  m = acc;
  maskCache.set(def, m);
  return m;
}

/** Which bytes of a space are backed and which register owns each byte. Shared by every function of a shape. */
export class Layout {
  readonly regs: readonly Placed[];
  readonly byName: ReadonlyMap<string, Placed>;
  /** First offset held in the backing array; offsets below `base` or past `base + size` read zero. */
  readonly base: number;
  readonly size: number;
  private readonly owner: Int16Array;

  constructor(base: number, size: number, regs: readonly Placed[]) {
    this.base = base;
    this.size = size;
    this.regs = [...regs].sort((a, b) => a.offset - b.offset);
    this.owner = new Int16Array(size).fill(-1);
    const byName = new Map<string, Placed>();
    this.regs.forEach((p, i) => {
      if (byName.has(p.name)) throw new Error(`layout: duplicate register ${p.name}`);
      byName.set(p.name, p);
      for (let b = 0; b < p.def.width; b++) {
        const at = p.offset + b - base;
        if (at < 0 || at >= size) throw new Error(`layout: ${p.name} outside the backed range`);
        if (this.owner[at] !== -1)
          throw new Error(`layout: ${p.name} overlaps ${this.regs[this.owner[at]!]!.name}`);
        this.owner[at] = i;
      }
    });
    this.byName = byName;
  }

  /** The register owning the byte at `offset`, if any. */
  ownerOf(offset: number): Placed | undefined {
    const at = offset - this.base;
    if (at < 0 || at >= this.size) return undefined;
    const i = this.owner[at]!;
    return i < 0 ? undefined : this.regs[i];
  }

  reg(name: string): Placed {
    const p = this.byName.get(name);
    if (!p) throw new Error(`layout has no register ${name}`);
    return p;
  }
}

/** Little-endian read of `width` bytes at `offset`; unbacked bytes read zero. */
export function readBytes(buf: Uint8Array, layout: Layout, offset: number, width: number): number {
  let v = 0;
  for (let i = width - 1; i >= 0; i--) {
    const at = offset + i - layout.base;
    v = v * 256 + (at >= 0 && at < layout.size ? buf[at]! : 0);
  }
  return v >>> 0;
}

/** Raw register value (no semantics). */
export function peek(buf: Uint8Array, layout: Layout, p: Placed): number {
  return readBytes(buf, layout, p.offset, p.def.width);
}

/** Store a raw register value (no semantics): device-internal updates and power-on images. */
export function poke(buf: Uint8Array, layout: Layout, p: Placed, value: number): void {
  store(buf, layout, p.offset, p.def.width, value);
}

/** Store raw bytes at an offset (capability headers no register declares). */
export function store(buf: Uint8Array, layout: Layout, offset: number, width: number, value: number): void {
  for (let i = 0; i < width; i++) buf[offset + i - layout.base] = (value >>> (8 * i)) & 0xff;
}

/** The next value of a register for a write of `value` on byte lanes `lanes` (register coordinates). */
export function nextValue(
  def: RegisterDef,
  old: number,
  value: number,
  lanes: number,
  frozen: number,
): { value: number; cmd: number } {
  const m = masks(def);
  const writable = (m.rw | m.rwl) & ~frozen & lanes;
  let v = (old & ~writable) | (value & writable);
  v |= value & lanes & m.rwo & ~frozen; // RWO: a 1 sticks, a 0 does nothing
  v &= ~(value & lanes & m.rw1c); // RW1C: write 1 to clear
  v &= m.defined & ~m.cmd; // reserved bits and command bits read zero
  return { value: v >>> 0, cmd: (value & lanes & m.cmd) >>> 0 };
}

export interface WriteHooks {
  /** Bits of the register that its lock freezes right now (RWL under CONFIG_LOCK, a committed decoder…). */
  frozen(p: Placed, old: number): number;
  /** Bits flipped in the written value (bit-flip fault); 0 normally. */
  flip(p: Placed): number;
  /** After the register took its new value: side effects (commit, reset, flush…). */
  after(p: Placed, old: number, value: number, cmd: number): void;
}

/** A `width`-byte write at `offset`: every register it touches gets its byte lanes, lowest register first. */
export function writeAccess(
  buf: Uint8Array,
  layout: Layout,
  offset: number,
  width: number,
  value: number,
  hooks: WriteHooks,
): void {
  let i = 0;
  while (i < width) {
    const p = layout.ownerOf(offset + i);
    if (!p) {
      i++; // unbacked or undeclared byte: read-only (capability headers) or reserved
      continue;
    }
    let lanes = 0;
    let v = 0;
    for (; i < width && offset + i < p.offset + p.def.width; i++) {
      const k = offset + i - p.offset;
      lanes |= 0xff << (8 * k);
      v |= ((value >>> (8 * i)) & 0xff) << (8 * k);
    }
    lanes >>>= 0;
    v = (v ^ (hooks.flip(p) & lanes)) >>> 0;
    const old = peek(buf, layout, p);
    const next = nextValue(p.def, old, v, lanes, hooks.frozen(p, old));
    poke(buf, layout, p, next.value);
    hooks.after(p, old, next.value, next.cmd);
  }
}

/** Put registers back to their value in `image` (a power-on image of the same layout), keeping sticky bits. */
export function resetRegisters(
  buf: Uint8Array,
  image: Uint8Array,
  layout: Layout,
  regs: Iterable<Placed>,
  keepSticky: boolean,
): void {
  for (const p of regs) {
    const sticky = keepSticky ? masks(p.def).sticky : 0;
    const v = (peek(image, layout, p) & ~sticky) | (peek(buf, layout, p) & sticky);
    poke(buf, layout, p, v >>> 0);
  }
}
