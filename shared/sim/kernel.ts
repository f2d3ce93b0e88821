// The kernel's side of a reset, as the simulator's `kernelReset` and `vfioReset` emulate it
// (drivers/pci/pci.c: pci_reset_function → pci_dev_save_and_disable, the method, pci_dev_restore).
// It saves and restores the PCI config state (header dwords 0–15, PCIe control registers) and nothing else:
// CXL DVSEC and HDM state are not part of it (docs/real-kernel.md: decoders came back wiped).
import { CXL_PORT_EXT, PCI_BRIDGE, PCIE, PCIE_SAVED } from "../cxl/registers.ts";
import { CxlrcError } from "../errors.ts";
import type { Clock } from "../hw/backend.ts";
import { BIT } from "./bits.ts";
import type { SimFunction } from "./function.ts";
import { FIRST_EXT_CAP, PCIE_CAP_OFFSET } from "./layouts.ts";

/** Kernel constants (drivers/pci/pci.c): FLR settle time, SBR hold, poll limit for a device to answer. */
export const KERNEL_FLR_WAIT_MS = 100;
export const KERNEL_SBR_HOLD_MS = 2;
export const KERNEL_SBR_SETTLE_MS = 100;
export const KERNEL_READY_TIMEOUT_MS = 60_000;

export interface KernelHost {
  readonly clock: Clock;
  configRead(bdf: string, offset: number, width: 1 | 2 | 4): Promise<number>;
  configWrite(bdf: string, offset: number, width: 1 | 2 | 4, value: number): Promise<void>;
  parentOf(f: SimFunction): SimFunction | null;
  /** Functions on the same bus as f (other than f). */
  busNeighbours(f: SimFunction): SimFunction[];
}

/** The methods the kernel lists in reset_method, in its order (device_specific acpi flr af_flr pm bus cxl_bus). */
export function resetMethods(host: KernelHost, f: SimFunction): string[] {
  if (f.model.kind !== "endpoint") return [];
  const out: string[] = [];
  if (f.model.flr) out.push("flr");
  const parent = host.parentOf(f);
  // pci_parent_bus_reset: only when the function is alone on its bus (no other function, no sibling device).
  if (parent && host.busNeighbours(f).length === 0) {
    out.push("bus");
    if (parent.model.kind === "bridge" && parent.model.spec.cxl) out.push("cxl_bus");
  }
  return out;
}

/** A CXL port masks SBR unless Unmask SBR is set (the kernel's "bus" method then fails with -ENOTTY). */
export function sbrMasked(bridge: SimFunction): boolean {
  return (
    bridge.has("port.portControlExtensions") && !(bridge.get("port.portControlExtensions") & BIT.unmaskSbr)
  );
}

const PCIE_REGS = PCIE_SAVED.map((d) => ({ offset: PCIE_CAP_OFFSET + d.offset, width: d.width }));

async function saveState(h: KernelHost, bdf: string): Promise<{ header: number[]; pcie: number[] }> {
  const header: number[] = [];
  for (let i = 0; i < 16; i++) header.push(await h.configRead(bdf, i * 4, 4));
  const pcie: number[] = [];
  for (const r of PCIE_REGS) pcie.push(await h.configRead(bdf, r.offset, r.width));
  return { header, pcie };
}

/** pci_restore_state: PCIe registers, then header dwords 15..0 that differ (BARs before Command). */
async function restoreState(
  h: KernelHost,
  bdf: string,
  s: { header: number[]; pcie: number[] },
): Promise<void> {
  for (const [i, r] of PCIE_REGS.entries()) await h.configWrite(bdf, r.offset, r.width, s.pcie[i]!);
  for (let i = 15; i >= 0; i--) {
    if ((await h.configRead(bdf, i * 4, 4)) !== s.header[i]) await h.configWrite(bdf, i * 4, 4, s.header[i]!);
  }
}

/** pci_dev_wait: poll the vendor id until the function answers. */
async function waitReady(h: KernelHost, bdf: string): Promise<void> {
  let waited = 0;
  let delay = 1;
  while ((await h.configRead(bdf, 0, 4)) === 0xffff_ffff) {
    if (waited >= KERNEL_READY_TIMEOUT_MS)
      throw new CxlrcError("not-ready", `${bdf} not ready ${waited} ms after reset; giving up`, { bdf });
    await h.clock.sleep(delay);
    waited += delay;
    delay = Math.min(delay * 2, 1000);
  }
}

async function secondaryBusReset(h: KernelHost, bridge: SimFunction, target: string): Promise<void> {
  const ctl = PCI_BRIDGE.bridgeControl.offset;
  const v = await h.configRead(bridge.bdf, ctl, 2);
  await h.configWrite(bridge.bdf, ctl, 2, v | BIT.secondaryBusReset);
  await h.clock.sleep(KERNEL_SBR_HOLD_MS);
  await h.configWrite(bridge.bdf, ctl, 2, v & ~BIT.secondaryBusReset);
  await h.clock.sleep(KERNEL_SBR_SETTLE_MS);
  await waitReady(h, target);
}

/** Perform one reset method the way the kernel does; throws "unsupported" where the kernel returns -ENOTTY. */
async function doMethod(h: KernelHost, f: SimFunction, method: string): Promise<void> {
  const parent = h.parentOf(f);
  switch (method) {
    case "flr": {
      const devCtl = PCIE_CAP_OFFSET + PCIE.devCtl.offset;
      const v = await h.configRead(f.bdf, devCtl, 2);
      await h.configWrite(f.bdf, devCtl, 2, v | BIT.initiateFlr);
      await h.clock.sleep(KERNEL_FLR_WAIT_MS);
      return waitReady(h, f.bdf);
    }
    case "bus":
      if (!parent) break;
      if (sbrMasked(parent))
        throw new CxlrcError(
          "unsupported",
          `bus reset of ${f.bdf}: SBR is masked by CXL port ${parent.bdf}`,
          {
            bdf: f.bdf,
          },
        );
      return secondaryBusReset(h, parent, f.bdf);
    case "cxl_bus": {
      if (!parent?.has("port.portControlExtensions")) break;
      // cxl_reset_bus_function: Unmask SBR for the duration of the reset, then put the bit back.
      const off = FIRST_EXT_CAP + CXL_PORT_EXT.portControl.offset;
      const saved = await h.configRead(parent.bdf, off, 2);
      await h.configWrite(parent.bdf, off, 2, saved | BIT.unmaskSbr);
      try {
        await secondaryBusReset(h, parent, f.bdf);
      } finally {
        await h.configWrite(parent.bdf, off, 2, saved);
      }
      return;
    }
  }
  throw new CxlrcError("unsupported", `reset method ${method} is not available for ${f.bdf}`, { bdf: f.bdf });
}

/** Write `1` to sysfs `reset` with `reset_method` = method. */
export async function kernelReset(h: KernelHost, f: SimFunction, method: string): Promise<void> {
  const methods = resetMethods(h, f);
  if (!methods.includes(method))
    throw new CxlrcError(
      "unsupported",
      `${f.bdf} has no reset method ${method} (has: ${methods.join(" ") || "none"})`,
      {
        bdf: f.bdf,
        methods,
      },
    );
  const state = await saveState(h, f.bdf);
  await h.configWrite(f.bdf, 0x04, 2, BIT.intxDisable); // pci_dev_save_and_disable
  try {
    await doMethod(h, f, method);
  } finally {
    await restoreState(h, f.bdf, state);
  }
}

/**
 * VFIO_DEVICE_RESET: the first method that works, with the same PCI save/restore, and (for a CXL device) the
 * full CXL scope of the seed discussion: the function's CXL DVSEC and HDM state are wiped, CONFIG_LOCK too.
 */
export async function vfioReset(h: KernelHost, f: SimFunction): Promise<void> {
  if (!f.driver || !/^vfio[-_]pci$|_vfio_pci$/.test(f.driver))
    throw new CxlrcError(
      "unsupported",
      `VFIO_DEVICE_RESET needs a vfio-pci driver; ${f.bdf} has ${f.driver ?? "none"}`,
      {
        bdf: f.bdf,
      },
    );
  const parent = h.parentOf(f);
  const method = resetMethods(h, f).find((m) => !(m === "bus" && parent && sbrMasked(parent)));
  if (!method) throw new CxlrcError("unsupported", `${f.bdf} has no usable reset method`, { bdf: f.bdf });
  await kernelReset(h, f, method);
  f.cxlStateReset(true);
}
