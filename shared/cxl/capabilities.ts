// Capability list walks over a config space image (PCI Local Bus 3.0 §6.7; PCIe base spec §7.6.3, §7.9.6).
// Pure: bytes in, offsets out. Invalid lists stop with a CxlrcError("decode"); the end markers real hardware
// uses (pointer 0, an all-zero or all-ones header) end a walk quietly.
import { CxlrcError } from "../errors.ts";
import { hex } from "./regdef.ts";
import {
  PCI_CAP_ID_EXP,
  PCI_CFG_SPACE_EXP_SIZE,
  PCI_CFG_SPACE_SIZE,
  PCI_EXT_CAP_START,
  PCI_STD_CAP_PTR,
  PCIE,
} from "./registers.ts";

/** Config space images come in three sizes: `lspci -x` (64), conventional PCI (256), PCIe (4096). */
export const CONFIG_SPACE_SIZES = [64, PCI_CFG_SPACE_SIZE, PCI_CFG_SPACE_EXP_SIZE] as const;
/** The header-only image `lspci -x` and non-root sysfs reads give. */
export const PCI_CFG_HEADER_SIZE = 64;
/** First offset a standard capability may sit at (after the type-0/1 header). */
export const PCI_STD_CAP_MIN = 0x40;
/** Last offset an extended capability header may sit at. */
export const PCI_EXT_CAP_MAX = 0xffc;
/** Status register (0x06) bit 4: the capabilities pointer at 0x34 is valid. */
const PCI_STATUS_CAP_LIST = 0x10;

export interface StdCapability {
  /** Offset in config space. */
  offset: number;
  /** Capability id (8 bits). */
  id: number;
}

export interface ExtCapability {
  offset: number;
  /** Extended capability id (16 bits). */
  id: number;
  /** Capability version (4 bits). */
  version: number;
}

export interface CapabilityWalk {
  standard: StdCapability[];
  extended: ExtCapability[];
  /**
   * False when the image stops before the capability list does (a 64-byte `lspci -x` dump whose
   * pointer leads past byte 63): the lists above are then incomplete, not empty.
   */
  standardComplete: boolean;
  /** False when the image has no extended space (64 or 256 bytes). */
  extendedAvailable: boolean;
}

/** Throws unless the image is one of the three config space sizes. */
export function checkConfigSize(bytes: Uint8Array): void {
  const n = bytes.length;
  if (n !== 64 && n !== PCI_CFG_SPACE_SIZE && n !== PCI_CFG_SPACE_EXP_SIZE) {
    throw new CxlrcError(
      "decode",
      `config space is ${n} bytes; expected 64, 256 or 4096 (truncated or padded input)`,
      { size: n },
    );
  }
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Standard list from the pointer at 0x34: each entry `[id:8][next:8]`. The low two pointer bits are
 * reserved and masked, as the kernel (pci_find_next_cap_ttl) and lspci do.
 */
export function walkStandardCapabilities(bytes: Uint8Array): { caps: StdCapability[]; complete: boolean } {
  checkConfigSize(bytes);
  const caps: StdCapability[] = [];
  const status = bytes[0x06]! | (bytes[0x07]! << 8);
  if ((status & PCI_STATUS_CAP_LIST) === 0 || status === 0xffff) return { caps, complete: true };
  const size = bytes.length;
  const seen = new Uint8Array(256);
  let where = bytes[PCI_STD_CAP_PTR]! & 0xfc;
  let from = PCI_STD_CAP_PTR;
  while (where !== 0) {
    if (where < PCI_STD_CAP_MIN) {
      throw new CxlrcError(
        "decode",
        `standard capability pointer at ${hex(from)} is ${hex(where)}, inside the header (below 0x40)`,
        { offset: hex(from), value: hex(where) },
      );
    }
    // A 64-byte image ends before any capability: the list exists but is not in the data.
    if (size === PCI_CFG_HEADER_SIZE) return { caps, complete: false };
    if (where > size - 2) {
      throw new CxlrcError(
        "decode",
        `standard capability pointer at ${hex(from)} is ${hex(where)}, past the ${size}-byte config space`,
        { offset: hex(from), value: hex(where) },
      );
    }
    if (seen[where]) {
      throw new CxlrcError(
        "decode",
        `standard capability list loops: ${hex(from)} points back to ${hex(where)}`,
        { offset: hex(where) },
      );
    }
    seen[where] = 1;
    const id = bytes[where]!;
    const next = bytes[where + 1]!;
    if ((id === 0xff && next === 0xff) || (id === 0 && next === 0)) break;
    caps.push({ offset: where, id });
    from = where + 1;
    where = next & 0xfc;
  }
  return { caps, complete: true };
}

/**
 * Extended list from 0x100 (4 KiB images only): header bits 15:0 id, 19:16 version, 31:20 next
 * (low two bits masked, as PCI_EXT_CAP_NEXT does). Walked whenever the image has 4 KiB, even without a PCI
 * Express capability (lspci and the kernel only look there below one): the data given is what is decoded,
 * and a conventional device's 0x100 reads zero, which ends the walk anyway.
 */
export function walkExtendedCapabilities(bytes: Uint8Array): ExtCapability[] {
  checkConfigSize(bytes);
  const caps: ExtCapability[] = [];
  if (bytes.length !== PCI_CFG_SPACE_EXP_SIZE) return caps;
  const dv = viewOf(bytes);
  const seen = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  let where = PCI_EXT_CAP_START;
  let from = -1;
  while (where !== 0) {
    if (where < PCI_EXT_CAP_START || where > PCI_EXT_CAP_MAX) {
      throw new CxlrcError(
        "decode",
        `extended capability at ${hex(from)} points to ${hex(where)}, outside 0x100..0xffc`,
        { offset: hex(from), value: hex(where) },
      );
    }
    if (seen[where]) {
      throw new CxlrcError(
        "decode",
        `extended capability list loops: ${hex(from)} points back to ${hex(where)}`,
        { offset: hex(where) },
      );
    }
    seen[where] = 1;
    const header = dv.getUint32(where, true);
    if (header === 0 || header === 0xffffffff) break;
    caps.push({ offset: where, id: header & 0xffff, version: (header >>> 16) & 0xf });
    from = where;
    // Next pointer bits 31:20 with the two reserved low bits masked: a multiple of 4 up to 0xffc.
    where = (header >>> 20) & 0xffc;
  }
  return caps;
}

/** Both lists of a config space image. */
export function walkCapabilities(bytes: Uint8Array): CapabilityWalk {
  const std = walkStandardCapabilities(bytes);
  return {
    standard: std.caps,
    extended: walkExtendedCapabilities(bytes),
    standardComplete: std.complete,
    extendedAvailable: bytes.length === PCI_CFG_SPACE_EXP_SIZE,
  };
}

export interface PcieCapability {
  offset: number;
  /** Capability version (PCIe Capabilities register 3:0). */
  version: number;
  /** Device/port type (7:4): 0 endpoint, 4 root port, 5 upstream, 6 downstream, 9 RCiEP... */
  portType: number;
  /** Device Capabilities bit 28 (Function Level Reset capable). */
  flrCapable: boolean;
  /** Raw Device Capabilities register, lowercase hex. */
  devCap: string;
}

/** The PCI Express capability (id 0x10), or null when the device has none. */
export function findPcieCapability(bytes: Uint8Array, std?: readonly StdCapability[]): PcieCapability | null {
  const caps = std ?? walkStandardCapabilities(bytes).caps;
  const cap = caps.find((c) => c.id === PCI_CAP_ID_EXP);
  if (!cap) return null;
  // Standard capabilities live in the first 256 bytes: one that runs past them is corrupt.
  const end = cap.offset + PCIE.devCap.offset + 4;
  if (end > Math.min(bytes.length, PCI_CFG_SPACE_SIZE)) {
    throw new CxlrcError(
      "decode",
      `PCI Express capability at ${hex(cap.offset)} runs past the standard config space (0x100)`,
      { offset: hex(cap.offset) },
    );
  }
  const dv = viewOf(bytes);
  const pcieCaps = dv.getUint16(cap.offset + PCIE.capabilities.offset, true);
  const devCap = dv.getUint32(cap.offset + PCIE.devCap.offset, true);
  return {
    offset: cap.offset,
    version: pcieCaps & 0xf,
    portType: (pcieCaps >>> 4) & 0xf,
    flrCapable: ((devCap >>> 28) & 1) === 1,
    devCap: hex(devCap, 8),
  };
}
