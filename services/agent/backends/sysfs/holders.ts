// Who holds a device: its bound driver (unless cxlrc bound it for the operation), and processes that have
// its VFIO group node or its sysfs `config`/`resourceN` files open (procRoot/PID/fd) or mapped
// (procRoot/PID/maps). Our own process is skipped: the backend itself keeps config fds open.
import { readdir, readFile, readlink, realpath } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Holder } from "../../../../shared/hw/backend.ts";
import type { Logger } from "../../../../shared/log.ts";
import { isNotFound, readAttr, readLinkName } from "./sysfs-attr.ts";
import { deviceDir, type SysfsRoots, vfioGroupPath } from "./sysfs-paths.ts";

/** Files of a device directory that give access to the hardware. */
const DEVICE_FILE_RE = /^(config|resource\d+(_wc)?)$/;

export interface HolderScan {
  roots: SysfsRoots;
  bdf: string;
  /** The driver cxlrc bound for the operation, which does not count as a holder. */
  ownDriver: string | null;
  selfPid: number;
  log: Logger;
}

interface Matcher {
  /** Classifies a path a process has open or mapped; null when it is not this device's. */
  match(path: string): { kind: Holder["kind"]; what: string } | null;
}

async function matcherFor(roots: SysfsRoots, bdf: string): Promise<Matcher> {
  const dir = deviceDir(roots, bdf);
  const prefixes = [dir];
  try {
    prefixes.push(await realpath(dir)); // /proc shows the resolved /sys/devices/... path
  } catch {
    // device gone: the bus path still matches stale holders
  }
  const group = await readLinkName(join(dir, "iommu_group"));
  const groupPath = group !== null && /^\d+$/.test(group) ? vfioGroupPath(roots, Number(group)) : null;
  return {
    match(path) {
      const clean = path.replace(/ \(deleted\)$/, "");
      if (groupPath !== null && clean === groupPath) return { kind: "vfio-group", what: clean };
      for (const p of prefixes) {
        if (clean.startsWith(`${p}/`) && DEVICE_FILE_RE.test(clean.slice(p.length + 1))) {
          return { kind: "resource", what: basename(clean) };
        }
      }
      return null;
    },
  };
}

async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch {
    return []; // process gone or not ours to inspect
  }
}

async function openPaths(pidDir: string): Promise<{ paths: string[]; readable: boolean }> {
  const fdDir = join(pidDir, "fd");
  let fds: string[];
  try {
    fds = await readdir(fdDir);
  } catch (e) {
    // A process that exited meanwhile is no holder; one we may not inspect is a blind spot.
    return { paths: [], readable: isNotFound(e) };
  }
  const paths = await Promise.all(fds.map((fd) => readlink(join(fdDir, fd)).catch(() => "")));
  return { paths: paths.filter((p) => p !== ""), readable: true };
}

async function mappedPaths(pidDir: string): Promise<string[]> {
  const text = await readFile(join(pidDir, "maps"), "utf8").catch(() => "");
  const out: string[] = [];
  for (const line of text.split("\n")) {
    // address perms offset dev inode pathname (pathname may contain spaces)
    const m = /^\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+(.+)$/.exec(line);
    if (m) out.push(m[1]!);
  }
  return out;
}

export async function findHolders(scan: HolderScan): Promise<Holder[]> {
  const { roots, bdf, log } = scan;
  const holders: Holder[] = [];
  const driver = await readLinkName(join(deviceDir(roots, bdf), "driver"));
  // A vfio driver holds nothing by itself, whoever bound it (an operator, for a VM to come): the process that
  // opens the device's VFIO group does, and is reported below as vfio-group (issue #17).
  if (driver !== null && driver !== scan.ownDriver && !driver.includes("vfio")) {
    holders.push({ kind: "driver", detail: driver });
  }

  const matcher = await matcherFor(roots, bdf);
  const pids = (await listDir(roots.procRoot))
    .filter((p) => /^\d+$/.test(p) && Number(p) !== scan.selfPid)
    .sort((a, b) => Number(a) - Number(b));
  let unreadable = 0;
  for (const pid of pids) {
    const pidDir = join(roots.procRoot, pid);
    const { paths, readable } = await openPaths(pidDir);
    if (!readable) unreadable++;
    const seen = new Set<string>();
    const found: { kind: Holder["kind"]; what: string; how: string }[] = [];
    for (const [how, list] of [
      ["open", paths],
      ["mapped", await mappedPaths(pidDir)],
    ] as const) {
      for (const p of list) {
        const hit = matcher.match(p);
        if (hit && !seen.has(hit.what)) {
          seen.add(hit.what);
          found.push({ ...hit, how });
        }
      }
    }
    if (found.length === 0) continue;
    const comm = (await readAttr(join(pidDir, "comm")).catch(() => null)) ?? "?";
    for (const f of found) {
      holders.push({ kind: f.kind, detail: `${f.what} ${f.how} by pid ${pid} (${comm})`, pid: Number(pid) });
    }
  }
  if (unreadable > 0) {
    log.warn(
      { bdf, unreadable },
      "could not inspect some processes' open files (not root?): holders may be missing",
    );
  }
  return holders;
}
