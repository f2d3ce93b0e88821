// Component registers sit behind a memory BAR: with Memory Space off (a quarantined device is left at
// Command = INTx Disable only) every MMIO read returns all-ones. Reading them must not depend on that state.

import { readFlag, withField } from "../../../shared/cxl/regdef.ts";
import { PCI } from "../../../shared/cxl/registers.ts";
import type { HardwareBackend } from "../../../shared/hw/backend.ts";
import { readConfigReg, writeConfigReg } from "./config-access.ts";

/**
 * Run `fn` with Memory Space enabled on the function, then put Command back exactly as it was.
 * Only Memory Space is turned on: Bus Master stays as it was (off on a quarantined device), so the device
 * cannot start DMA; the BARs are not touched.
 */
export async function withMemorySpace<T>(b: HardwareBackend, bdf: string, fn: () => Promise<T>): Promise<T> {
  const before = await readConfigReg(b, bdf, 0, PCI.command);
  if (readFlag(PCI.command, before, "memorySpace")) return fn();
  await writeConfigReg(b, bdf, 0, PCI.command, withField(PCI.command, before, "memorySpace", true));
  try {
    return await fn();
  } finally {
    await writeConfigReg(b, bdf, 0, PCI.command, before);
  }
}
