// listFunctions: every PCI function under sysfs bus/pci/devices, with its place in the tree (the parent
// bridge is the BDF-named directory above it in the device's real path), driver, IOMMU group and the
// kernel's reset methods.
import { readdir, realpath } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { PCI, PCI_BRIDGE } from "../../../../shared/cxl/registers.ts";
import { BDF_RE, type PciFunctionInfo } from "../../../../shared/hw/backend.ts";
import type { Logger } from "../../../../shared/log.ts";
import type { ConfigSpace } from "./config-space.ts";
import { fsError, readAttr, readHexAttr, readLinkName } from "./sysfs-attr.ts";
import { deviceDir, pciDevicesDir, type SysfsRoots } from "./sysfs-paths.ts";

/** The BDF of the directory that holds devicePath, when that directory is a PCI function. */
export function parentFromRealPath(devicePath: string): string | null {
  const above = basename(dirname(devicePath));
  return BDF_RE.test(above) ? above : null;
}

/** reset_method as a list in the kernel's order; [] when the file is missing or empty. */
export async function readResetMethods(path: string): Promise<string[]> {
  const text = await readAttr(path);
  return text === null ? [] : text.split(/\s+/).filter((m) => m !== "");
}

export async function describeFunction(
  roots: SysfsRoots,
  bdf: string,
  config: ConfigSpace,
): Promise<PciFunctionInfo> {
  const dir = deviceDir(roots, bdf);
  let real: string;
  try {
    real = await realpath(dir);
  } catch (e) {
    throw fsError("realpath", dir, e);
  }
  const vendorId =
    (await readHexAttr(join(dir, "vendor"))) ?? (await config.read(bdf, PCI.vendorId.offset, 2));
  const deviceId =
    (await readHexAttr(join(dir, "device"))) ?? (await config.read(bdf, PCI.deviceId.offset, 2));
  const classCode =
    (await readHexAttr(join(dir, "class"))) ?? (await config.read(bdf, PCI.classRevision.offset, 4)) >>> 8;
  const headerRaw = await config.read(bdf, PCI.headerType.offset, 1);
  const headerType: 0 | 1 = (headerRaw & 0x7f) === 1 ? 1 : 0;
  const group = await readLinkName(join(dir, "iommu_group"));
  const info: PciFunctionInfo = {
    bdf,
    vendorId,
    deviceId,
    classCode,
    headerType,
    multiFunction: (headerRaw & 0x80) !== 0,
    parent: parentFromRealPath(real),
    driver: await readLinkName(join(dir, "driver")),
    iommuGroup: group !== null && /^\d+$/.test(group) ? Number(group) : null,
    resetMethods: await readResetMethods(join(dir, "reset_method")),
  };
  if (headerType === 1) {
    info.secondaryBus = await config.read(bdf, PCI_BRIDGE.secondaryBus.offset, 1);
    info.subordinateBus = await config.read(bdf, PCI_BRIDGE.subordinateBus.offset, 1);
  }
  return info;
}

export async function listFunctions(
  roots: SysfsRoots,
  config: ConfigSpace,
  log: Logger,
): Promise<PciFunctionInfo[]> {
  const dir = pciDevicesDir(roots);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    throw fsError("list", dir, e);
  }
  const out: PciFunctionInfo[] = [];
  for (const name of names.sort()) {
    // Domains wider than 16 bits (VMD: 10000:00:00.0) do not fit cxlrc's BDF form.
    if (!BDF_RE.test(name)) {
      log.warn({ entry: name, dir }, "skipping PCI device entry that is not a DDDD:BB:DD.F address");
      continue;
    }
    out.push(await describeFunction(roots, name, config));
  }
  return out;
}
