// Test helpers that find registers the way software does (docs/cxl-registers.md): walk the extended
// capabilities for a DVSEC, follow the Register Locator to the component block, the CXL.cache/mem array
// to the HDM Decoder capability. Register offsets come from shared/cxl/registers.ts.
import { type RegisterDef, readField, readFlag } from "../../shared/cxl/regdef.ts";
import {
  CACHE_MEM_OFFSET,
  CXL_DVSEC_VENDOR,
  HDM_DECODER,
  HDM_DECODER_FIRST,
  HDM_DECODER_STRIDE,
  PCI_CAP_ID_EXP,
  PCI_EXT_CAP_ID_DVSEC,
  PCI_EXT_CAP_START,
  REGISTER_LOCATOR_FIRST_ENTRY,
} from "../../shared/cxl/registers.ts";
import {
  createSimHost,
  type HostSpecInput,
  type SimHost,
  type SimpleHostOptions,
  type SimTimings,
  simpleHost,
  VirtualClock,
} from "../../shared/sim/index.ts";

export const DEV = "0000:01:00.0";
export const PORT = "0000:00:01.0";

export interface Rig {
  h: SimHost;
  clock: VirtualClock;
}

export function rigFor(spec: HostSpecInput, timings?: Partial<SimTimings>): Rig {
  const clock = new VirtualClock();
  return { h: createSimHost(spec, { clock, ...(timings ? { timings } : {}) }), clock };
}

export function rig(opts: SimpleHostOptions = {}): Rig {
  return rigFor(simpleHost(opts));
}

/** Offset of the CXL DVSEC with `id`, by walking the extended capability list. */
export async function findDvsec(h: SimHost, bdf: string, id: number): Promise<number> {
  let off = PCI_EXT_CAP_START;
  for (let hops = 0; off >= PCI_EXT_CAP_START && hops < 64; hops++) {
    const hdr = await h.configRead(bdf, off, 4);
    if (hdr === 0 || hdr === 0xffff_ffff) break;
    if ((hdr & 0xffff) === PCI_EXT_CAP_ID_DVSEC) {
      const h1 = await h.configRead(bdf, off + 4, 4);
      const dvsecId = await h.configRead(bdf, off + 8, 2);
      if ((h1 & 0xffff) === CXL_DVSEC_VENDOR && dvsecId === id) return off;
    }
    off = hdr >>> 20;
  }
  throw new Error(`${bdf}: no CXL DVSEC id ${id}`);
}

/** Offset of the PCI Express capability, by walking the standard list. */
export async function findPcieCap(h: SimHost, bdf: string): Promise<number> {
  let off = await h.configRead(bdf, 0x34, 1);
  for (let hops = 0; off !== 0 && hops < 48; hops++) {
    if ((await h.configRead(bdf, off, 1)) === PCI_CAP_ID_EXP) return off;
    off = await h.configRead(bdf, off + 1, 1);
  }
  throw new Error(`${bdf}: no PCIe capability`);
}

/** Registers of one function, addressed as software finds them. */
export async function regs(h: SimHost, bdf: string) {
  const dvsec = await findDvsec(h, bdf, 0);
  const pcie = await findPcieCap(h, bdf);
  const loc = await findDvsec(h, bdf, 8);
  const entry = await h.configRead(bdf, loc + REGISTER_LOCATOR_FIRST_ENTRY, 4);
  const bar = entry & 0x7;
  const block = (entry >>> 16) * 0x10000;
  // CXL.cache/mem array: find the HDM Decoder capability (id 5).
  const arr = await h.mmioRead32(bdf, bar, block + CACHE_MEM_OFFSET);
  let hdm = -1;
  for (let i = 1; i <= arr >>> 24; i++) {
    const e = await h.mmioRead32(bdf, bar, block + CACHE_MEM_OFFSET + 4 * i);
    if ((e & 0xffff) === 5) hdm = block + CACHE_MEM_OFFSET + (e >>> 20);
  }
  if (hdm < 0) throw new Error(`${bdf}: no HDM decoder capability`);
  const cfg = {
    read: (def: RegisterDef, base = dvsec) => h.configRead(bdf, base + def.offset, def.width),
    write: (def: RegisterDef, value: number, base = dvsec) =>
      h.configWrite(bdf, base + def.offset, def.width, value),
  };
  const decAt = (n: number, def: RegisterDef) =>
    hdm + HDM_DECODER_FIRST + n * HDM_DECODER_STRIDE + def.offset;
  return {
    dvsec,
    pcie,
    bar,
    block,
    hdm,
    cfg,
    /** HDM register (Capability, Global Control) by def. */
    hdmRead: (def: RegisterDef) => h.mmioRead32(bdf, bar, hdm + def.offset),
    hdmWrite: (def: RegisterDef, v: number) => h.mmioWrite32(bdf, bar, hdm + def.offset, v),
    decRead: (n: number, def: RegisterDef) => h.mmioRead32(bdf, bar, decAt(n, def)),
    decWrite: (n: number, def: RegisterDef, v: number) => h.mmioWrite32(bdf, bar, decAt(n, def), v),
    /** Decoder n's base, size and control flags. */
    decoder: async (n: number) => {
      const r = (def: RegisterDef) => h.mmioRead32(bdf, bar, decAt(n, def));
      const ctrl = await r(HDM_DECODER.control);
      return {
        base: (BigInt(await r(HDM_DECODER.baseHigh)) << 32n) | BigInt(await r(HDM_DECODER.baseLow)),
        size: (BigInt(await r(HDM_DECODER.sizeHigh)) << 32n) | BigInt(await r(HDM_DECODER.sizeLow)),
        control: ctrl,
        commit: readFlag(HDM_DECODER.control, ctrl, "commit"),
        committed: readFlag(HDM_DECODER.control, ctrl, "committed"),
        errorNotCommitted: readFlag(HDM_DECODER.control, ctrl, "errorNotCommitted"),
        lockOnCommit: readFlag(HDM_DECODER.control, ctrl, "lockOnCommit"),
        ways: readField(HDM_DECODER.control, ctrl, "interleaveWays"),
      };
    },
    /** Program decoder n (base, size, control without Commit). */
    program: async (n: number, base: bigint, size: bigint, control = 0) => {
      const w = (def: RegisterDef, v: number) => h.mmioWrite32(bdf, bar, decAt(n, def), v);
      await w(HDM_DECODER.baseHigh, Number(base >> 32n));
      await w(HDM_DECODER.baseLow, Number(base & 0xffff_ffffn));
      await w(HDM_DECODER.sizeHigh, Number(size >> 32n));
      await w(HDM_DECODER.sizeLow, Number(size & 0xffff_ffffn));
      await w(HDM_DECODER.control, control);
    },
  };
}

export const MiB256 = 0x1000_0000n;
export const hex = (v: number) => `0x${v.toString(16)}`;
