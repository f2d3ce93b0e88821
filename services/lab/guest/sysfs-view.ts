// The guest's own look at the kernel's files, with plain fs calls and nothing of the backend under test:
// what a check compares the backend's answers with, and the setup steps a person would do with echo.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, writeFileSync } from "node:fs";
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

/** A sysfs attribute as `cat` shows it (trimmed), or null when it cannot be read. */
export const attrText = text;

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

/** What a decoder shows in /sys/bus/cxl/devices/decoderN.M (those it has: root decoders lack the dpa_*). */
const DECODER_ATTRS = [
  "start",
  "size",
  "locked",
  "target_type",
  "interleave_ways",
  "interleave_granularity",
  "mode",
  "dpa_resource",
  "dpa_size",
  "region",
] as const;

/** What a region shows in /sys/bus/cxl/devices/regionN. */
const REGION_ATTRS = [
  "commit",
  "resource",
  "size",
  "uuid",
  "interleave_ways",
  "interleave_granularity",
  "target0",
] as const;

export interface KernelView {
  devices: string[];
  /** Port/endpoint name → the cxl driver bound to it (null: none, e.g. its probe failed). */
  portDrivers: Record<string, string | null>;
  decoders: Record<string, Record<string, string | null>>;
  /** The endpoint decoders (decoderN.M with N an endpoint's id). */
  endpointDecoders: string[];
  /** regionN → its attributes, and the driver bound to it (cxl_region when enabled). */
  regions: Record<string, Record<string, string | null>>;
}

function attrsOf(dir: string, names: readonly string[]): Record<string, string | null> {
  const attrs: Record<string, string | null> = {};
  for (const a of names) if (existsSync(`${dir}/${a}`)) attrs[a] = text(`${dir}/${a}`);
  return attrs;
}

/** The kernel's CXL objects as `ls` and `cat` under /sys/bus/cxl/devices show them. */
export function kernelView(): KernelView {
  const devices = cxlBusDevices();
  const portDrivers: KernelView["portDrivers"] = {};
  const decoders: KernelView["decoders"] = {};
  const regions: KernelView["regions"] = {};
  for (const d of devices) {
    const dir = `/sys/bus/cxl/devices/${d}`;
    if (/^(port|endpoint)\d+$/.test(d)) portDrivers[d] = link(`${dir}/driver`);
    if (/^decoder\d+\.\d+$/.test(d)) decoders[d] = attrsOf(dir, DECODER_ATTRS);
    if (/^region\d+$/.test(d)) regions[d] = { ...attrsOf(dir, REGION_ATTRS), driver: link(`${dir}/driver`) };
  }
  const endpointIds = devices.flatMap((d) => /^endpoint(\d+)$/.exec(d)?.[1] ?? []);
  const endpointDecoders = Object.keys(decoders).filter((d) =>
    endpointIds.includes(/^decoder(\d+)\./.exec(d)![1]!),
  );
  return { devices, portDrivers, decoders, endpointDecoders, regions };
}
