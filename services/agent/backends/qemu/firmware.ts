// Playing the firmware for a qtest QEMU: no BIOS runs (-S), so the test side enables ECAM, numbers the
// buses below the CXL host bridge, sizes and assigns BARs, opens bridge windows and enables decoding.
// Facts: ../../../../../shared/docs/qemu-qtest.md ("Being the firmware").

import { withField } from "../../../../shared/cxl/regdef.ts";
import { PCI, PCI_BAR0, PCI_BRIDGE, PCI_CFG_SPACE_EXP_SIZE } from "../../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../../shared/errors.ts";
import { formatBdf, type Width } from "../../../../shared/hw/backend.ts";
import { memReadCommand, memWriteCommand, parseQtestNumber, type QtestClient } from "./qtest.ts";
import { CXL_HOST_BRIDGE_BUS } from "./topology.ts";

/** q35 MCH (00:00.0) PCIEXBAR register: low dword 0x60 (bit 0 enable, length bits 2:1 = 0 → 256 buses). */
const MCH_PCIEXBAR_LOW = 0x60;
const MCH_PCIEXBAR_HIGH = 0x64;
export const ECAM_BASE = 0xb000_0000;
/** Legacy configuration mechanism #1 ports. */
const PCI_CONFIG_ADDRESS = 0xcf8;
const PCI_CONFIG_DATA = 0xcfc;

/**
 * Where BARs go: free 32-bit space on q35 with 1 GiB RAM, above ECAM (0xb0000000-0xbfffffff) and below
 * the IOAPIC (0xfec00000). Unclaimed addresses fall through to the PCI address space in QEMU's q35.
 */
export const MMIO_WINDOW_BASE = 0xc000_0000;
export const MMIO_WINDOW_END = 0xfec0_0000;
/** Bridge memory windows have 1 MiB granularity (Memory Base/Limit bits 15:4 = address bits 31:20). */
const BRIDGE_WINDOW_ALIGN = 0x10_0000;
/** Bus number written as subordinate while scanning below a bridge. */
const SCAN_SUBORDINATE = 0xff;
/**
 * Type-1 Prefetchable Memory Base/Limit and their upper 32 bits (PCI-to-PCI Bridge spec 1.2 §3.2.5.9-10).
 * Not in the register map: only the firmware writes them (to close the window).
 */
const BRIDGE_PREF_BASE_LIMIT = 0x24;
const BRIDGE_PREF_BASE_UPPER = 0x28;
const BRIDGE_PREF_LIMIT_UPPER = 0x2c;

const CMD_MEMORY_SPACE = withField(PCI.command, 0, "memorySpace", true);
const CMD_BUS_MASTER = withField(PCI.command, 0, "busMaster", true);

export interface FirmwareBar {
  /** BAR index (0..5); a 64-bit BAR occupies index and index+1. */
  index: number;
  address: number;
  size: number;
  is64: boolean;
  prefetchable: boolean;
}

export interface FirmwareFunction {
  bdf: string;
  bus: number;
  dev: number;
  fn: number;
  vendorId: number;
  deviceId: number;
  classCode: number;
  headerType: 0 | 1;
  multiFunction: boolean;
  /** Bridge directly above, null for functions on the host bridge's root bus. */
  parent: string | null;
  primaryBus?: number;
  secondaryBus?: number;
  subordinateBus?: number;
  /** Memory window of a bridge (inclusive limit), null when closed. */
  window?: { base: number; limit: number } | null;
  bars: FirmwareBar[];
  /** Command register value the firmware wrote. */
  command: number;
}

export interface FirmwareState {
  ecamBase: number;
  rootBus: number;
  /** Depth-first order: every bridge before the functions below it. */
  functions: FirmwareFunction[];
}

const hex = (v: number) => `0x${(v >>> 0).toString(16)}`;

/** Config space access through ECAM with qtest memory commands (sub-dword accesses work in 7.2). */
export class Ecam {
  constructor(
    readonly q: QtestClient,
    readonly base = ECAM_BASE,
  ) {}

  address(bus: number, dev: number, fn: number, offset: number): number {
    return this.base + ((bus << 20) | (dev << 15) | (fn << 12) | offset);
  }

  async read(bus: number, dev: number, fn: number, offset: number, width: Width): Promise<number> {
    const cmd = memReadCommand(this.address(bus, dev, fn, offset), width);
    return parseQtestNumber(await this.q.command(cmd), cmd);
  }

  async write(
    bus: number,
    dev: number,
    fn: number,
    offset: number,
    width: Width,
    value: number,
  ): Promise<void> {
    await this.q.command(memWriteCommand(this.address(bus, dev, fn, offset), width, value));
  }

  /** Dwords from `offset` for `length` bytes, one pipelined batch. */
  async readDwords(bus: number, dev: number, fn: number, offset: number, length: number): Promise<number[]> {
    const cmds: string[] = [];
    for (let o = offset; o < offset + length; o += 4) {
      cmds.push(memReadCommand(this.address(bus, dev, fn, o), 4));
    }
    const answers = await this.q.batch(cmds);
    return answers.map((a, i) => parseQtestNumber(a, cmds[i]!));
  }

  /** The whole 4 KiB configuration space, little-endian. */
  async readAll(bus: number, dev: number, fn: number): Promise<Uint8Array> {
    const dwords = await this.readDwords(bus, dev, fn, 0, PCI_CFG_SPACE_EXP_SIZE);
    const out = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
    const view = new DataView(out.buffer);
    dwords.forEach((d, i) => {
      view.setUint32(i * 4, d, true);
    });
    return out;
  }
}

/** Map ECAM at 0xb0000000 through the MCH's PCIEXBAR, written with legacy port I/O; check it answers. */
export async function enableEcam(q: QtestClient): Promise<Ecam> {
  // CONFIG_ADDRESS: enable bit 31 | bus 0, device 0, function 0 | dword-aligned register.
  const cf8 = (off: number) => hex((0x8000_0000 | (off & 0xfc)) >>> 0);
  const answers = await q.batch([
    `outl ${hex(PCI_CONFIG_ADDRESS)} ${cf8(MCH_PCIEXBAR_HIGH)}`,
    `outl ${hex(PCI_CONFIG_DATA)} 0x0`,
    `outl ${hex(PCI_CONFIG_ADDRESS)} ${cf8(MCH_PCIEXBAR_LOW)}`,
    `outl ${hex(PCI_CONFIG_DATA)} ${hex(ECAM_BASE | 1)}`,
    `outl ${hex(PCI_CONFIG_ADDRESS)} ${cf8(0)}`,
    `inl ${hex(PCI_CONFIG_DATA)}`,
  ]);
  const legacyId = parseQtestNumber(answers[5]!, "inl 0xcfc");
  const ecam = new Ecam(q);
  const ecamId = await ecam.read(0, 0, 0, 0, 4);
  if (ecamId !== legacyId || legacyId === 0xffffffff) {
    throw new CxlrcError(
      "backend",
      `ECAM at ${hex(ECAM_BASE)} does not answer like legacy config access (ECAM ${hex(ecamId)}, legacy ${hex(legacyId)})`,
    );
  }
  return ecam;
}

interface ProbedBar {
  index: number;
  size: number;
  is64: boolean;
  prefetchable: boolean;
  io: boolean;
}

/** Size the BARs of a function (memory decoding is off: QEMU resets command to 0 and we never set it before). */
async function sizeBars(
  ecam: Ecam,
  bus: number,
  dev: number,
  fn: number,
  count: number,
): Promise<ProbedBar[]> {
  const bars: ProbedBar[] = [];
  for (let i = 0; i < count; i++) {
    const off = PCI_BAR0 + i * 4;
    const orig = await ecam.read(bus, dev, fn, off, 4);
    const io = (orig & 1) === 1;
    const is64 = !io && ((orig >>> 1) & 3) === 2;
    await ecam.write(bus, dev, fn, off, 4, 0xffffffff);
    const lo = await ecam.read(bus, dev, fn, off, 4);
    await ecam.write(bus, dev, fn, off, 4, orig);
    let hi = 0;
    if (is64) {
      const origHi = await ecam.read(bus, dev, fn, off + 4, 4);
      await ecam.write(bus, dev, fn, off + 4, 4, 0xffffffff);
      hi = await ecam.read(bus, dev, fn, off + 4, 4);
      await ecam.write(bus, dev, fn, off + 4, 4, origHi);
    }
    const maskLo = io ? lo & ~0x3 : lo & ~0xf;
    if (maskLo !== 0) {
      if (is64 && hi !== 0xffffffff) {
        throw new CxlrcError(
          "backend",
          `BAR ${i} of ${formatBdf({ domain: 0, bus, dev, fn })} is larger than 4 GiB`,
        );
      }
      const size = io ? ((~maskLo & 0xffff) + 1) >>> 0 : (~maskLo >>> 0) + 1;
      bars.push({ index: i, size, is64, prefetchable: !io && (orig & 0x8) !== 0, io });
    }
    if (is64) i++;
  }
  return bars;
}

const alignUp = (v: number, a: number) => Math.ceil(v / a) * a;

/**
 * Enumerate depth-first from the host bridge's root bus: each bridge gets secondary = next free bus and
 * subordinate 0xff while we scan below it, then its real subordinate. Then assign BARs and windows.
 */
export async function runFirmware(ecam: Ecam, rootBus = CXL_HOST_BRIDGE_BUS): Promise<FirmwareState> {
  const functions: FirmwareFunction[] = [];
  let nextBus = rootBus + 1;

  const scanBus = async (bus: number, parent: string | null): Promise<void> => {
    // Function 0 of every device in one batch.
    const ids = await ecam.q.batch(
      Array.from({ length: 32 }, (_, dev) => memReadCommand(ecam.address(bus, dev, 0, 0), 4)),
    );
    for (let dev = 0; dev < 32; dev++) {
      if (parseQtestNumber(ids[dev]!, "readl") === 0xffffffff) continue;
      const header0 = await ecam.read(bus, dev, 0, PCI.headerType.offset, 1);
      const fns = (header0 & 0x80) !== 0 ? 8 : 1;
      for (let fn = 0; fn < fns; fn++) {
        // Dwords 0 (ids), 2 (class, revision), 3 (header type in bits 23:16).
        const d = await ecam.readDwords(bus, dev, fn, 0, 16);
        const id = d[0]!;
        if (id === 0xffffffff) continue;
        const header = (d[3]! >>> 16) & 0xff;
        const layout = header & 0x7f;
        if (layout !== 0 && layout !== 1) continue; // CardBus: not ours
        const bdf = formatBdf({ domain: 0, bus, dev, fn });
        const f: FirmwareFunction = {
          bdf,
          bus,
          dev,
          fn,
          vendorId: id & 0xffff,
          deviceId: id >>> 16,
          classCode: d[2]! >>> 8,
          headerType: layout as 0 | 1,
          multiFunction: (header & 0x80) !== 0,
          parent,
          bars: [],
          command: 0,
        };
        functions.push(f);
        if (layout === 1) {
          const secondary = nextBus++;
          f.primaryBus = bus;
          f.secondaryBus = secondary;
          await setBusNumbers(ecam, f, bus, secondary, SCAN_SUBORDINATE);
          await scanBus(secondary, bdf);
          f.subordinateBus = nextBus - 1;
          await setBusNumbers(ecam, f, bus, secondary, f.subordinateBus);
        }
      }
    }
  };
  await scanBus(rootBus, null);

  // Resource assignment: a bump allocator, depth-first, bridges' own BARs in the parent's range.
  let cursor = MMIO_WINDOW_BASE;
  const allocate = (size: number, align: number): number => {
    const at = alignUp(cursor, align);
    if (at + size > MMIO_WINDOW_END) {
      throw new CxlrcError("backend", `out of MMIO space assigning ${size} bytes at ${hex(at)}`);
    }
    cursor = at + size;
    return at;
  };
  const assignBus = async (parent: string | null): Promise<void> => {
    for (const f of functions.filter((x) => x.parent === parent)) {
      const probed = await sizeBars(ecam, f.bus, f.dev, f.fn, f.headerType === 0 ? 6 : 2);
      // Largest first: least padding. I/O BARs stay unassigned (no CXL register block lives there).
      for (const b of probed.filter((p) => !p.io).sort((a, b) => b.size - a.size)) {
        const address = allocate(b.size, b.size);
        const off = PCI_BAR0 + b.index * 4;
        await ecam.write(f.bus, f.dev, f.fn, off, 4, address);
        if (b.is64) await ecam.write(f.bus, f.dev, f.fn, off + 4, 4, 0);
        f.bars.push({ index: b.index, address, size: b.size, is64: b.is64, prefetchable: b.prefetchable });
      }
      f.bars.sort((a, b) => a.index - b.index);
      if (f.headerType === 1) {
        cursor = alignUp(cursor, BRIDGE_WINDOW_ALIGN);
        const base = cursor;
        await assignBus(f.bdf);
        if (cursor > base) {
          cursor = alignUp(cursor, BRIDGE_WINDOW_ALIGN);
          f.window = { base, limit: cursor - 1 };
        } else {
          f.window = null;
        }
        await writeBridgeWindows(ecam, f);
      }
    }
  };
  await assignBus(null);

  // Decoding on: bridges forward memory and requests; devices decode their BARs. Parents first.
  for (const f of functions) {
    f.command = f.headerType === 1 ? CMD_MEMORY_SPACE | CMD_BUS_MASTER : CMD_MEMORY_SPACE;
    await ecam.write(f.bus, f.dev, f.fn, PCI.command.offset, 2, f.command);
  }
  return { ecamBase: ecam.base, rootBus, functions };
}

async function setBusNumbers(
  ecam: Ecam,
  f: FirmwareFunction,
  primary: number,
  secondary: number,
  subordinate: number,
): Promise<void> {
  // Primary, secondary, subordinate, secondary latency timer (0) share the dword at 0x18.
  const value = (primary | (secondary << 8) | (subordinate << 16)) >>> 0;
  await ecam.write(f.bus, f.dev, f.fn, PCI_BRIDGE.primaryBus.offset, 4, value);
}

/** Memory window from f.window (closed when null); prefetchable window always closed (base > limit). */
async function writeBridgeWindows(ecam: Ecam, f: FirmwareFunction): Promise<void> {
  const w = f.window;
  const memBase = w ? (w.base >>> 16) & 0xfff0 : 0xfff0;
  const memLimit = w ? (w.limit >>> 16) & 0xfff0 : 0x0000;
  await ecam.write(f.bus, f.dev, f.fn, PCI_BRIDGE.memoryBase.offset, 4, (memBase | (memLimit << 16)) >>> 0);
  await ecam.write(f.bus, f.dev, f.fn, BRIDGE_PREF_BASE_LIMIT, 4, 0x0000fff0);
  await ecam.write(f.bus, f.dev, f.fn, BRIDGE_PREF_BASE_UPPER, 4, 0);
  await ecam.write(f.bus, f.dev, f.fn, BRIDGE_PREF_LIMIT_UPPER, 4, 0);
}

/**
 * Write back what the firmware programmed into a function (bus numbers, windows, BARs, command), as the
 * kernel's pci_restore_state would for bridges after a secondary bus reset wiped them.
 */
export async function reapplyFunction(ecam: Ecam, f: FirmwareFunction): Promise<void> {
  if (f.headerType === 1) {
    await setBusNumbers(ecam, f, f.primaryBus!, f.secondaryBus!, f.subordinateBus!);
    await writeBridgeWindows(ecam, f);
  }
  for (const b of f.bars) {
    const off = PCI_BAR0 + b.index * 4;
    await ecam.write(f.bus, f.dev, f.fn, off, 4, b.address);
    if (b.is64) await ecam.write(f.bus, f.dev, f.fn, off + 4, 4, 0);
  }
  await ecam.write(f.bus, f.dev, f.fn, PCI.command.offset, 2, f.command);
}
