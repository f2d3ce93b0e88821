// The guest's own look at the kernel's files, with plain fs calls and nothing of the backend under test:
// what a check compares the backend's answers with, and the setup steps a person would do with echo.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync, realpathSync, writeFileSync } from "node:fs";
import { basename, dirname } from "node:path";
import { BDF_RE } from "../../../shared/hw/backend.ts";

export const pciDir = (bdf: string) => `/sys/bus/pci/devices/${bdf}`;

function link(path: string): string | null {
  try {
    return basename(readlinkSync(path));
  } catch {
    return null;
  }
}

function text(path: string): string | null {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return null;
  }
}

export const driverOf = (bdf: string) => link(`${pciDir(bdf)}/driver`);

export function iommuGroupOf(bdf: string): number | null {
  const g = link(`${pciDir(bdf)}/iommu_group`);
  return g === null ? null : Number(g);
}

export function resetMethodsOf(bdf: string): string[] {
  return (text(`${pciDir(bdf)}/reset_method`) ?? "").split(/\s+/).filter(Boolean);
}

/** The BDF-named directory above the device's real path (its bridge), as `readlink -f` shows it. */
export function parentOf(bdf: string): string | null {
  const above = basename(dirname(realpathSync(pciDir(bdf))));
  return BDF_RE.test(above) ? above : null;
}

/** The whole `config` file, as `cat` would read it. */
export const configBytes = (bdf: string): Buffer => readFileSync(`${pciDir(bdf)}/config`);

export function configRead(bdf: string, offset: number, width: 1 | 2 | 4): number {
  return configBytes(bdf).readUIntLE(offset, width);
}

export function describe(bdf: string) {
  const c = configBytes(bdf);
  return {
    bdf,
    vendorId: c.readUInt16LE(0),
    deviceId: c.readUInt16LE(2),
    headerType: c[0x0e]! & 0x7f,
    driver: driverOf(bdf),
    iommuGroup: iommuGroupOf(bdf),
    resetMethods: resetMethodsOf(bdf),
    parent: parentOf(bdf),
    configBytes: c.length,
  };
}

export const pciFunctions = () => readdirSync("/sys/bus/pci/devices").sort();

/** One write(2) of text to a sysfs attribute, as `echo -n TEXT > PATH`. */
export function writeAttr(path: string, value: string): void {
  writeFileSync(path, value);
}

/** Entries of /sys/bus/cxl/devices (root0, port1, endpoint2, mem0, decoderN.M...). */
export function cxlBusDevices(): string[] {
  try {
    return readdirSync("/sys/bus/cxl/devices").sort();
  } catch {
    return [];
  }
}

/** The CXL fixed memory window the platform (CFMWS) offers: the root decoder's range. */
export function cxlRootWindow(): { start: bigint; size: bigint } | null {
  const start = text("/sys/bus/cxl/devices/decoder0.0/start");
  const size = text("/sys/bus/cxl/devices/decoder0.0/size");
  return start && size ? { start: BigInt(start), size: BigInt(size) } : null;
}

/** Kernel messages logged since `mark` lines of the ring buffer (busybox dmesg), and the new mark. */
export function kernelLogSince(mark: number): { lines: string[]; mark: number } {
  try {
    const all = execFileSync("dmesg", { encoding: "utf8" }).split("\n").filter(Boolean);
    return { lines: all.slice(mark), mark: all.length };
  } catch {
    return { lines: [], mark };
  }
}
