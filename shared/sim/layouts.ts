// Where the simulated registers sit: config space of an endpoint or a bridge, and the component block.
// The layouts are shared by every function of the same shape, so 10,000 devices cost one table each.
import type { FieldDef, RegisterDef } from "../cxl/regdef.ts";
import {
  CACHE_MEM_ARRAY_HEADER,
  CACHE_MEM_CAP_HEADER,
  CACHE_MEM_OFFSET,
  CXL_DEVICE,
  CXL_DEVICE_DVSEC_LENGTH_R3,
  CXL_PORT_EXT,
  cxlRange,
  DVSEC_HEADER,
  HDM,
  HDM_DECODER,
  HDM_DECODER_FIRST,
  HDM_DECODER_STRIDE,
  PCI,
  PCI_BAR0,
  PCI_BRIDGE,
  PCIE,
  REGISTER_LOCATOR_ENTRY,
  REGISTER_LOCATOR_FIRST_ENTRY,
} from "../cxl/registers.ts";
import { Layout, type Placed } from "./regfile.ts";

/** Bytes of config space the model backs; everything above reads zero (the 4 KiB space is still there). */
export const CONFIG_BACKED_BYTES = 0x200;
export const PCIE_CAP_OFFSET = 0x40;
/** DVSEC id 0 (endpoints) or DVSEC id 3 (CXL bridges). */
export const FIRST_EXT_CAP = 0x100;
export const REGISTER_LOCATOR_OFFSET = 0x140;
export const REGISTER_LOCATOR_LENGTH = REGISTER_LOCATOR_FIRST_ENTRY + 8;
export const DVSEC_CXL_DEVICE_LENGTH = CXL_DEVICE_DVSEC_LENGTH_R3;
export const DVSEC_PORT_EXT_LENGTH = 0x28;
/** Component block: RAS capability and HDM Decoder capability pointers (relative to block + 0x1000). */
export const RAS_CAP_POINTER = 0x40;
export const HDM_CAP_POINTER = 0x100;
export const HDM_CAP_OFFSET = CACHE_MEM_OFFSET + HDM_CAP_POINTER;

/**
 * BAR0/BAR1 as one 64-bit non-prefetchable memory BAR of `size` bytes (PCI 3.0 §6.2.5.1): address bits
 * below the size read zero, which is how software sizes a BAR. Declared here as data like registers.ts.
 */
const barCache = new Map<number, { low: RegisterDef; high: RegisterDef }>();
export function bar64(size: number): { low: RegisterDef; high: RegisterDef } {
  let b = barCache.get(size);
  if (!b) {
    const sizeBits = Math.log2(size);
    if (!Number.isInteger(sizeBits) || sizeBits < 4 || sizeBits > 31)
      throw new RangeError(`BAR size ${size}`);
    const ro = (name: string, lo: number, hi = lo): FieldDef => ({ name, lo, hi, access: "RO" });
    b = {
      low: {
        name: "bar0",
        offset: PCI_BAR0,
        width: 4,
        fields: [
          ro("memorySpaceIndicator", 0),
          ro("type", 1, 2),
          ro("prefetchable", 3),
          { name: "baseLow", lo: sizeBits, hi: 31, access: "RW" },
        ],
      },
      high: {
        name: "bar1",
        offset: PCI_BAR0 + 4,
        width: 4,
        fields: [{ name: "baseHigh", lo: 0, hi: 31, access: "RW" }],
      },
    };
    barCache.set(size, b);
  }
  return b;
}

const place = (prefix: string, base: number, defs: Iterable<RegisterDef>, decoder?: number): Placed[] =>
  [...defs].map((def) => ({
    name: `${prefix}.${def.name}`,
    offset: base + def.offset,
    def,
    ...(decoder === undefined ? {} : { decoder }),
  }));

const HEADER_COMMON = [
  PCI.vendorId,
  PCI.deviceId,
  PCI.command,
  PCI.status,
  PCI.classRevision,
  PCI.cacheLineSize,
  PCI.latencyTimer,
  PCI.headerType,
  PCI.capPtr,
  PCI.interruptLine,
  PCI.interruptPin,
];
const DVSEC_HEADERS = [DVSEC_HEADER.header1, DVSEC_HEADER.header2];

const cache = new Map<string, Layout>();
function cached(key: string, make: () => Layout): Layout {
  let l = cache.get(key);
  if (!l) {
    l = make();
    cache.set(key, l);
  }
  return l;
}

/** A type-0 function: header with a 64-bit BAR0, PCIe capability; CXL: DVSEC id 0 and Register Locator. */
export function endpointLayout(cxl: boolean, barSize: number): Layout {
  return cached(`ep:${cxl}:${barSize}`, () => {
    const bar = bar64(barSize);
    const regs = [
      ...place("pci", 0, [...HEADER_COMMON, bar.low, bar.high]),
      ...place("pcie", PCIE_CAP_OFFSET, Object.values(PCIE)),
    ];
    if (cxl) {
      regs.push(
        ...place("dvsec", FIRST_EXT_CAP, [
          ...DVSEC_HEADERS,
          ...Object.values(CXL_DEVICE),
          ...Object.values(cxlRange(1)),
          ...Object.values(cxlRange(2)),
        ]),
        ...place("locator", REGISTER_LOCATOR_OFFSET, DVSEC_HEADERS),
        ...place("locator", REGISTER_LOCATOR_OFFSET + REGISTER_LOCATOR_FIRST_ENTRY, [
          { ...REGISTER_LOCATOR_ENTRY.low, name: "entry0Low" },
          { ...REGISTER_LOCATOR_ENTRY.high, name: "entry0High" },
        ]),
      );
    }
    return new Layout(0, CONFIG_BACKED_BYTES, regs);
  });
}

/** A type-1 function (root port, switch port): bridge header, PCIe capability, DVSEC id 3 when CXL. */
export function bridgeLayout(cxl: boolean): Layout {
  return cached(`br:${cxl}`, () => {
    const regs = [
      ...place("pci", 0, HEADER_COMMON),
      ...place("bridge", 0, Object.values(PCI_BRIDGE)),
      ...place("pcie", PCIE_CAP_OFFSET, Object.values(PCIE)),
    ];
    if (cxl) regs.push(...place("port", FIRST_EXT_CAP, [...DVSEC_HEADERS, ...Object.values(CXL_PORT_EXT)]));
    return new Layout(0, CONFIG_BACKED_BYTES, regs);
  });
}

/** Component block (offsets relative to the block): CXL.cache/mem array, RAS header, HDM capability. */
export function componentLayout(decoderCount: number): Layout {
  return cached(`hdm:${decoderCount}`, () => {
    const regs: Placed[] = [
      { name: "cachemem.header", offset: CACHE_MEM_OFFSET, def: CACHE_MEM_ARRAY_HEADER },
      { name: "cachemem.cap1", offset: CACHE_MEM_OFFSET + 4, def: CACHE_MEM_CAP_HEADER },
      { name: "cachemem.cap2", offset: CACHE_MEM_OFFSET + 8, def: CACHE_MEM_CAP_HEADER },
      ...place("hdm", HDM_CAP_OFFSET, Object.values(HDM)),
    ];
    for (let n = 0; n < decoderCount; n++)
      regs.push(
        ...place(
          `decoder${n}`,
          HDM_CAP_OFFSET + HDM_DECODER_FIRST + n * HDM_DECODER_STRIDE,
          Object.values(HDM_DECODER),
          n,
        ),
      );
    const end = HDM_CAP_OFFSET + HDM_DECODER_FIRST + decoderCount * HDM_DECODER_STRIDE;
    return new Layout(CACHE_MEM_OFFSET, end - CACHE_MEM_OFFSET, regs);
  });
}

/** BAR0 size: the smallest power of two holding the component block at its offset. */
export function barSizeFor(componentOffset: number): number {
  let s = 0x10000;
  while (s < componentOffset + 0x10000) s *= 2;
  return s;
}

/** Register name of decoder n's register, e.g. decoderReg(1, "control") = "decoder1.control". */
export const decoderReg = (n: number, reg: keyof typeof HDM_DECODER): string =>
  `decoder${n}.${HDM_DECODER[reg].name}`;
