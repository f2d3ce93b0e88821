// An operator's CXL region, through the kernel's sysfs region interface (Linux 6.1,
// Documentation/ABI/testing/sysfs-bus-cxl), step for step what Debian's `cxl create-region -t pmem` and
// `cxl destroy-region` (ndctl 76) write. Every write is recorded with what it returned, so a check that fails
// on the kernel says which step it was.
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync, realpathSync } from "node:fs";
import { dirname } from "node:path";
import { errorJson } from "./check.ts";
import { kernelLogSince, pciDir, writeAttr } from "./sysfs-view.ts";

const CXL = "/sys/bus/cxl/devices";

export interface RegionStep {
  path: string;
  value: string;
  /** The kernel's answer: null when the write succeeded, else its error. */
  error: string | null;
}

const read = (path: string) => readFileSync(path, "utf8").trim();

/** Writes and records; throws (with every step so far) when the kernel refuses one. */
function step(steps: RegionStep[], path: string, value: string): void {
  try {
    writeAttr(path, value);
    steps.push({ path, value, error: null });
  } catch (e) {
    steps.push({ path, value, error: errorJson(e).message });
    const err = new Error(`${path} <- ${JSON.stringify(value)}: ${errorJson(e).message}`);
    Object.assign(err, { steps });
    throw err;
  }
}

/**
 * The memdev (memN) of a PCI device, its endpoint port (null until cxl_port probed it, or when its probe
 * failed) and the endpoint's decoders, as /sys/bus/cxl links them; null when the device has no memdev.
 */
export function cxlObjectsOf(
  bdf: string,
): { memdev: string; endpoint: string | null; decoders: string[] } | null {
  const names = readdirSync(CXL);
  const pci = realpathSync(pciDir(bdf));
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return null; // gone meanwhile (a driver unbinding)
    }
  };
  const memdev = names.find((n) => /^mem\d+$/.test(n) && dirname(real(`${CXL}/${n}`) ?? "/") === pci);
  if (!memdev) return null;
  const memdevDir = real(`${CXL}/${memdev}`);
  const endpoint =
    names.find(
      (n) => /^endpoint\d+$/.test(n) && memdevDir !== null && real(`${CXL}/${n}/uport`) === memdevDir,
    ) ?? null;
  const id = endpoint?.slice("endpoint".length);
  const decoders = id === undefined ? [] : names.filter((n) => n.startsWith(`decoder${id}.`)).sort();
  return { memdev, endpoint, decoders };
}

/** What the kernel shows of one device's CXL objects, for a person to read (the kernel demo's lines). */
export interface KernelSummary {
  memdev: string | null;
  /** The endpoint port, null when there is none (cxl_pci not bound, or the port failed its probe). */
  endpoint: string | null;
  /** The endpoint's decoders: range, mode and region as sysfs shows them. */
  decoders: {
    name: string;
    start: string | null;
    size: string | null;
    mode: string | null;
    region: string | null;
  }[];
  /** Regions of the device's endpoint decoders, with their commit state. */
  regions: { name: string; commit: string | null; size: string | null }[];
  /** The kernel's messages about CXL since `mark` (why a port failed its probe, for one). */
  messages: string[];
}

const attr = (path: string): string | null => {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return null;
  }
};

export function kernelSummary(bdf: string, mark: number | null = null): KernelSummary {
  const objects = cxlObjectsOf(bdf);
  const decoders = (objects?.decoders ?? []).map((name) => {
    const at = (a: string) => attr(`${CXL}/${name}/${a}`);
    const region = at("region");
    return {
      name,
      start: at("start"),
      size: at("size"),
      mode: at("mode"),
      region: region === "" ? null : region,
    };
  });
  const regions = regionNames()
    .filter((r) => decoders.some((d) => d.name === attr(`${CXL}/${r}/target0`)))
    .map((name) => ({ name, commit: attr(`${CXL}/${name}/commit`), size: attr(`${CXL}/${name}/size`) }));
  const messages = mark === null ? [] : kernelLogSince(mark).lines.filter((l) => /cxl|hdm|decoder/i.test(l));
  return {
    memdev: objects?.memdev ?? null,
    endpoint: objects?.endpoint ?? null,
    decoders,
    regions,
    messages,
  };
}

export interface PmemRegion {
  name: string;
  rootDecoder: string;
  endpointDecoder: string;
  uuid: string;
  size: string;
  granularity: string;
  steps: RegionStep[];
}

/**
 * `cxl create-region -m -d ROOT -w 1 -t pmem MEMDEV`: a 1-way pmem region over the device's whole pmem
 * capacity, committed (the HDM decoders programmed by the kernel) and enabled (cxl_region bound: cxl_pmem
 * builds the nd region on it).
 */
export function createPmemRegion(bdf: string, rootDecoder = "decoder0.0"): PmemRegion {
  const objects = cxlObjectsOf(bdf);
  if (!objects?.endpoint) throw new Error(`${bdf}: no memdev with a probed endpoint port on /sys/bus/cxl`);
  const endpointDecoder = objects.decoders[0];
  if (!endpointDecoder) throw new Error(`${bdf}: ${objects.endpoint} has no decoder`);
  const root = `${CXL}/${rootDecoder}`;
  const steps: RegionStep[] = [];
  const name = read(`${root}/create_pmem_region`);
  step(steps, `${root}/create_pmem_region`, name);
  const region = `${CXL}/${name}`;
  const granularity = read(`${root}/interleave_granularity`);
  const size = `0x${BigInt(read(`${CXL}/${objects.memdev}/pmem/size`)).toString(16)}`;
  const uuid = randomUUID();
  step(steps, `${region}/interleave_granularity`, granularity);
  step(steps, `${region}/interleave_ways`, "1");
  step(steps, `${region}/uuid`, `${uuid}\n`); // 6.1's uuid_store takes exactly 36 characters and a newline
  step(steps, `${CXL}/${endpointDecoder}/mode`, "pmem");
  step(steps, `${CXL}/${endpointDecoder}/dpa_size`, size);
  step(steps, `${region}/size`, size);
  step(steps, `${region}/target0`, endpointDecoder);
  step(steps, `${region}/commit`, "1");
  step(steps, "/sys/bus/cxl/drivers/cxl_region/bind", name);
  return { name, rootDecoder, endpointDecoder, uuid, size, granularity, steps };
}

/**
 * `cxl destroy-region`: disable (cxl_region unbound: the nd region goes), reset the decode (commit 0: the
 * kernel decommits the HDM decoders), detach the target, free its DPA, delete the region.
 */
export function takeRegionDown(
  region: string,
  endpointDecoder: string,
  rootDecoder = "decoder0.0",
): RegionStep[] {
  const dir = `${CXL}/${region}`;
  const steps: RegionStep[] = [];
  try {
    realpathSync(`${dir}/driver`);
    step(steps, "/sys/bus/cxl/drivers/cxl_region/unbind", region);
  } catch (e) {
    if ((e as { steps?: unknown }).steps) throw e; // the unbind itself failed; not enabled is fine
  }
  step(steps, `${dir}/commit`, "0");
  step(steps, `${dir}/target0`, "\n");
  step(steps, `${CXL}/${endpointDecoder}/dpa_size`, "0");
  step(steps, `${CXL}/${rootDecoder}/delete_region`, region);
  return steps;
}

/** The regions the kernel has (regionN under /sys/bus/cxl/devices). */
export const regionNames = (): string[] => readdirSync(CXL).filter((n) => /^region\d+$/.test(n));

/**
 * Waits until the device's endpoint port has probed, or the kernel said why not (a failed probe, a decoder
 * it rejected), or 10 s passed; returns how long it waited.
 */
export async function settleCxl(bdf: string, mark: number): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < 10_000) {
    if (cxlObjectsOf(bdf)?.endpoint) break;
    if (kernelLogSince(mark).lines.some((l) => /failed probe|decoder\d+\.\d+:/.test(l))) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 300)); // the rest of the probe's messages
  return Date.now() - t0;
}
