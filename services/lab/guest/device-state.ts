// A device's state as a check records it (read back, never remembered), and the way back to a known start:
// no driver, the kernel's own reset (decoders wiped), the original driver bound again.

import { CXL_DVSEC_ID, PCI } from "../../../shared/cxl/registers.ts";
import { operations } from "../../agent/ops/index.ts";
import { findCxlDvsec } from "../../agent/ops/locate.ts";
import { errorJson } from "./check.ts";
import type { KernelSummary } from "./cxl-region.ts";
import { type DecoderReadback, dvsecControl, findHdm, readDecoders } from "./firmware.ts";
import type { LabContext } from "./lab-context.ts";
import { attrText, configRead, driverOf, pciDir, resetMethodsOf, writeAttr } from "./sysfs-view.ts";

export interface DeviceState {
  bdf: string;
  driver: string | null;
  /** driver_override as `cat` shows it ("(null)": none). */
  driverOverride: string | null;
  command: string;
  bar0: string;
  dvsecControl: { raw: string; memEnable: boolean } | null;
  /** Decoders read through a fresh backend, or why they could not be read (a driver holds the BAR). */
  decoders: DecoderReadback[] | { unreadable: string };
  /** The kernel's CXL objects of the device (the kernel demo's read-backs). */
  kernel?: KernelSummary;
}

const hex = (v: number) => `0x${v.toString(16)}`;

export async function deviceState(lab: LabContext, bdf: string): Promise<DeviceState> {
  return lab.readBack(async (b) => {
    let decoders: DeviceState["decoders"];
    try {
      decoders = await readDecoders(b, await findHdm(b, bdf));
    } catch (e) {
      decoders = { unreadable: errorJson(e).message };
    }
    // Config space stays readable under a driver: find the DVSEC there, not through the BAR.
    const dvsec = await findCxlDvsec(b, bdf, CXL_DVSEC_ID.device);
    let control: DeviceState["dvsecControl"] = null;
    if (dvsec) {
      const c = await dvsecControl(b, { bdf, dvsecOffset: dvsec.offset });
      control = { raw: c.raw, memEnable: c.memEnable };
    }
    return {
      bdf,
      driver: driverOf(bdf),
      driverOverride: attrText(`${pciDir(bdf)}/driver_override`),
      command: hex(configRead(bdf, PCI.command.offset, 2)),
      bar0: hex(configRead(bdf, 0x10, 4)),
      dvsecControl: control,
      decoders,
    };
  });
}

/**
 * Back to the start: unbind, the kernel's reset through sysfs (HDM decoders wiped, PCI state restored by
 * the kernel), reset methods to the kernel's default, then `driver` bound (cxl_pci: Mem_Enable set by it).
 */
export async function startClean(lab: LabContext, bdf: string, driver: string | null): Promise<DeviceState> {
  await operations.bind(lab.ctx, { bdf, driver: null });
  writeAttr(`${pciDir(bdf)}/reset_method`, "default");
  if (resetMethodsOf(bdf).length > 0) writeAttr(`${pciDir(bdf)}/reset`, "1");
  if (driver !== null) await operations.bind(lab.ctx, { bdf, driver });
  lab.takeEvents();
  return deviceState(lab, bdf);
}
