// Where things live: the sysfs, proc and dev roots (overridable so tests point them at a temp dir) and
// the per-device paths below them.
import { join } from "node:path";
import { CxlrcError } from "../../../../shared/errors.ts";
import { parseBdf } from "../../../../shared/hw/backend.ts";

export interface SysfsRoots {
  sysfsRoot: string;
  procRoot: string;
  devRoot: string;
}

/** Validated BDF (CxlrcError "bad-input" otherwise). */
export function checkBdf(bdf: string): string {
  try {
    parseBdf(bdf);
  } catch (cause) {
    throw new CxlrcError("bad-input", (cause as Error).message, { bdf }, { cause });
  }
  return bdf;
}

export const pciDevicesDir = (r: SysfsRoots) => join(r.sysfsRoot, "bus/pci/devices");
export const deviceDir = (r: SysfsRoots, bdf: string) => join(pciDevicesDir(r), checkBdf(bdf));
export const deviceFile = (r: SysfsRoots, bdf: string, name: string) => join(deviceDir(r, bdf), name);
export const driversProbePath = (r: SysfsRoots) => join(r.sysfsRoot, "bus/pci/drivers_probe");
export const vfioContainerPath = (r: SysfsRoots) => join(r.devRoot, "vfio/vfio");
export const vfioGroupPath = (r: SysfsRoots, group: number) => join(r.devRoot, "vfio", String(group));
