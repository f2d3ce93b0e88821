// Which VFIO driver to bind, the way libvirt picks it: match the device's `modalias` against the
// `alias vfio_pci:…` lines of modules.alias. A variant driver naming vendor and device (mlx5_vfio_pci)
// beats the catch-all `vfio_pci:v*d*sv*sd*bc*sc*i*`.
// Names: module names use '_'; the sysfs driver name of the catch-all module vfio_pci is "vfio-pci"
// (its pci_driver.name), while variant drivers register under their module name (KBUILD_MODNAME).
import { readFile } from "node:fs/promises";
import { release } from "node:os";
import { join } from "node:path";
import { fsError } from "./sysfs-attr.ts";
import { deviceFile, type SysfsRoots } from "./sysfs-paths.ts";

const ALIAS_LINE_RE = /^alias\s+(vfio_pci:\S+)\s+(\S+)\s*$/;
const NAMED_DEVICE_RE = /^vfio_pci:v[0-9A-Fa-f]{8}d[0-9A-Fa-f]{8}/;

/** Module name → sysfs driver name. */
export function vfioDriverName(module: string): string {
  return module === "vfio_pci" ? "vfio-pci" : module;
}

/** fnmatch-style glob (* and ?) as an anchored RegExp. */
export function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

/** The sysfs driver name to bind, or null when no vfio alias matches (vfio-pci not installed). */
export function chooseVfioDriver(modalias: string, modulesAliasText: string): string | null {
  const alias = modalias.trim();
  if (!alias.startsWith("pci:")) return null;
  const subject = `vfio_pci:${alias.slice("pci:".length)}`;
  let best: { module: string; named: boolean; wildcards: number } | null = null;
  for (const line of modulesAliasText.split("\n")) {
    const m = ALIAS_LINE_RE.exec(line.trim());
    if (!m || !globToRegExp(m[1]!).test(subject)) continue;
    const candidate = {
      module: m[2]!,
      named: NAMED_DEVICE_RE.test(m[1]!),
      wildcards: (m[1]!.match(/[*?]/g) ?? []).length,
    };
    const better =
      best === null ||
      (candidate.named && !best.named) ||
      (candidate.named === best.named && candidate.wildcards < best.wildcards);
    if (better) best = candidate;
  }
  return best === null ? null : vfioDriverName(best.module);
}

export const defaultModulesAliasPath = () => join("/lib/modules", release(), "modules.alias");

/** chooseVfioDriver for a device of this machine: reads its modalias and the running kernel's aliases. */
export async function vfioDriverFor(
  roots: SysfsRoots,
  bdf: string,
  modulesAliasPath = defaultModulesAliasPath(),
): Promise<string | null> {
  const read = async (path: string) => {
    try {
      return await readFile(path, "utf8");
    } catch (e) {
      throw fsError("read", path, e);
    }
  };
  return chooseVfioDriver(await read(deviceFile(roots, bdf, "modalias")), await read(modulesAliasPath));
}
