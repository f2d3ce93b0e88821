// PCI config state, saved and restored the way the kernel's pci_save_state / pci_restore_state do:
// the 64-byte header plus the PCIe control registers (PCIE_SAVED). A restore writes only registers that
// differ from what they read (as pci_restore_config_dword), high dwords first, and the Command register
// last, with the value the caller chooses (the saved one, or Bus Master off for a full-scope restore).

import { configMask, type RegisterDef, withField } from "../../../shared/cxl/regdef.ts";
import { PCI, PCIE_SAVED } from "../../../shared/cxl/registers.ts";
import type { HardwareBackend } from "../../../shared/hw/backend.ts";
import type { RegisterSnapshot } from "../../../shared/image/schema.ts";
import { readConfigReg, volatileMask, writeConfigReg } from "./config-access.ts";
import { snapshot } from "./cxl-regs.ts";
import { findPcieCap } from "./locate.ts";

export const HEADER_DWORDS = 16;

export interface PciState {
  /** Config dwords 0x00..0x3c. */
  header: number[];
  pcieCapOffset: number | null;
  /** PCIE_SAVED registers by name. */
  pcie: Record<string, number>;
}

export async function readPciState(b: HardwareBackend, bdf: string): Promise<PciState> {
  const header: number[] = [];
  for (let i = 0; i < HEADER_DWORDS; i++) header.push((await b.configRead(bdf, i * 4, 4)) >>> 0);
  const pcieCapOffset = await findPcieCap(b, bdf);
  const pcie: Record<string, number> = {};
  if (pcieCapOffset !== null) {
    for (const def of PCIE_SAVED) pcie[def.name] = await readConfigReg(b, bdf, pcieCapOffset, def);
  }
  return { header, pcieCapOffset, pcie };
}

export function snapshotPcie(state: PciState): Record<string, RegisterSnapshot> {
  const out: Record<string, RegisterSnapshot> = {};
  for (const def of PCIE_SAVED) {
    const v = state.pcie[def.name];
    if (v !== undefined) out[def.name] = snapshot(def, v);
  }
  return out;
}

/** The Command register out of a saved header. */
export function savedCommand(state: PciState): number {
  return (state.header[1] ?? 0) & 0xffff;
}

/** Command for the first phase of a full-scope restore: Memory Space on, Bus Master off, INTx disabled. */
export function restoreCommand(saved: number): number {
  let c = withField(PCI.command, saved, "busMaster", false);
  c = withField(PCI.command, c, "intxDisable", true);
  return withField(PCI.command, c, "memorySpace", true);
}

/** Command after a failed restore: INTx Disable only, the device stays disabled. */
export const DISABLED_COMMAND = withField(PCI.command, 0, "intxDisable", true);

async function restoreIfDiffers(
  b: HardwareBackend,
  bdf: string,
  base: number,
  def: RegisterDef,
  saved: number,
): Promise<void> {
  const mask = configMask(def);
  const cur = await readConfigReg(b, bdf, base, def);
  if ((cur & mask) === (saved & mask)) return;
  await writeConfigReg(b, bdf, base, def, (saved & ~volatileMask(def)) >>> 0);
}

/**
 * pci_restore_state order: PCIe control registers, header dwords 15..4 (BARs, ROM, interrupt line), cache
 * line size and latency timer, then Command = `command`. Dwords 0 and 2 are read-only; Status (RW1C) is
 * never written back.
 */
export async function restorePciState(
  b: HardwareBackend,
  bdf: string,
  state: PciState,
  command: number,
): Promise<void> {
  if (state.pcieCapOffset !== null) {
    for (const def of PCIE_SAVED) {
      const saved = state.pcie[def.name];
      if (saved !== undefined) await restoreIfDiffers(b, bdf, state.pcieCapOffset, def, saved);
    }
  }
  for (let i = HEADER_DWORDS - 1; i >= 4; i--) {
    const saved = state.header[i] ?? 0;
    const cur = (await b.configRead(bdf, i * 4, 4)) >>> 0;
    if (cur !== saved) await b.configWrite(bdf, i * 4, 4, saved);
  }
  const dword3 = state.header[3] ?? 0;
  await restoreIfDiffers(b, bdf, 0, PCI.cacheLineSize, dword3 & 0xff);
  await restoreIfDiffers(b, bdf, 0, PCI.latencyTimer, (dword3 >>> 8) & 0xff);
  await writeConfigReg(b, bdf, 0, PCI.command, command);
}
