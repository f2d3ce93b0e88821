// The kernel's view of one PCI device's CXL decoders and regions, read from /sys/bus/cxl/devices (the ABI
// of Linux 6.1: Documentation/ABI/testing/sysfs-bus-cxl; formats from drivers/cxl/core/port.c and
// region.c). For when cxl_pci is bound and the kernel refuses our mmap of the component registers.
//
// How the objects hang together in /sys/devices (6.1):
//   .../0000:0d:00.0/mem0                            the memdev: a child of the PCI device (cxl_pci)
//   .../ACPI0017:00/root0/port1/endpoint2            ports nest: a port's parent directory is its parent port
//   .../endpoint2/uport -> .../0000:0d:00.0/mem0     an endpoint port's uport is its memdev
//   .../root0/decoder0.0, .../port1/decoder1.0, .../endpoint2/decoder2.0   decoders are children of ports
//   .../root0/decoder0.0/region0[/pmem_region0|/dax_region0/dax0.0]      regions are children of root decoders
// and /sys/bus/cxl/devices holds a link to each. A pmem region's libnvdimm region lives on the nd bus
// (/sys/bus/nd/devices/regionN, numbered apart from CXL regions): it is found by its start address.
import { readdir, realpath } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { CxlrcError, isCxlrcError } from "../../../../shared/errors.ts";
import {
  decoderCommitted,
  judgeRegionUse,
  type KernelCxlView,
  type KernelDecoder,
  type KernelDecoderLevel,
  type KernelRegion,
  type RegionUseEvidence,
} from "../../../../shared/hw/kernel-cxl.ts";
import { fsError, isNotFound, readAttr, readLinkName } from "./sysfs-attr.ts";
import { deviceDir, type SysfsRoots } from "./sysfs-paths.ts";

const ALL_ONES = (1n << 64n) - 1n;
/** Longest port chain we follow up from an endpoint (root, host bridge, switches): a guard against loops. */
const MAX_PORT_DEPTH = 16;

const cxlDevicesDir = (r: SysfsRoots) => join(r.sysfsRoot, "bus/cxl/devices");
const ndDevicesDir = (r: SysfsRoots) => join(r.sysfsRoot, "bus/nd/devices");
const memoryBlocksDir = (r: SysfsRoots) => join(r.sysfsRoot, "devices/system/memory");

function malformed(path: string, text: string, expected: string): CxlrcError {
  return new CxlrcError(
    "backend",
    `malformed sysfs attribute ${path}: expected ${expected}, read ${JSON.stringify(text)}`,
    { path, value: text },
  );
}

/** "%#llx" (and "%pa", zero-padded): 0x-prefixed hex. */
function hexAttr(path: string, text: string | null): bigint | null {
  if (text === null) return null;
  const t = text.trim();
  if (!/^0x[0-9a-fA-F]+$/.test(t)) throw malformed(path, text, 'hex "0x..."');
  return BigInt(t);
}

function decAttr(path: string, text: string | null): number | null {
  if (text === null) return null;
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw malformed(path, text, "a decimal number");
  return Number(t);
}

function decBigAttr(path: string, text: string | null): bigint | null {
  if (text === null) return null;
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw malformed(path, text, "a decimal number");
  return BigInt(t);
}

function flagAttr(path: string, text: string | null): boolean | null {
  if (text === null) return null;
  const t = text.trim();
  if (t !== "0" && t !== "1") throw malformed(path, text, '"0" or "1"');
  return t === "1";
}

/** A name-valued attribute: null when missing or empty (the kernel prints "\n" for none). */
const nameAttr = (text: string | null) => (text === null || text.trim() === "" ? null : text.trim());

/**
 * readAttr, but an attribute the kernel refuses to show right now (ENXIO: a region's targetN past its
 * interleave_ways after a change) reads as missing.
 */
async function readOptional(path: string): Promise<string | null> {
  try {
    return await readAttr(path);
  } catch (e) {
    if (isCxlrcError(e) && e.details.errnoName === "ENXIO") return null;
    throw e;
  }
}

async function listDir(path: string): Promise<string[] | null> {
  try {
    return await readdir(path);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw fsError("readdir", path, e);
  }
}

async function resolve(path: string): Promise<string | null> {
  try {
    return await realpath(path);
  } catch (e) {
    if (isNotFound(e)) return null;
    throw fsError("realpath", path, e);
  }
}

/** Names matching re, ordered by their numbers ("decoder2.10" after "decoder2.9"). */
function matching(names: string[], re: RegExp): string[] {
  const key = (n: string) => (n.match(/\d+/g) ?? []).map(Number);
  return names
    .filter((n) => re.test(n))
    .sort((a, b) => {
      const ka = key(a);
      const kb = key(b);
      for (let i = 0; i < Math.max(ka.length, kb.length); i++) {
        const d = (ka[i] ?? -1) - (kb[i] ?? -1);
        if (d !== 0) return d;
      }
      return 0;
    });
}

async function readDecoder(
  dir: string,
  name: string,
  level: KernelDecoderLevel,
  port: string,
): Promise<Omit<KernelDecoder, "committed">> {
  const at = (f: string) => join(dir, f);
  const read = (f: string) => readAttr(at(f));
  const [startT, sizeT, lockedT, waysT, granT, typeT, listT, modeT, dpaResT, dpaSizeT, regionT] =
    await Promise.all([
      read("start"),
      read("size"),
      read("locked"),
      read("interleave_ways"),
      read("interleave_granularity"),
      read("target_type"),
      read("target_list"),
      read("mode"),
      read("dpa_resource"),
      read("dpa_size"),
      read("region"),
    ]);
  // Parse everything (a malformed value is an error even where it would be dropped), then drop the start
  // of an empty range: hdm.c keeps the base register's value with size 0 for an uncommitted decoder.
  const rawStart = hexAttr(at("start"), startT);
  const rawSize = hexAttr(at("size"), sizeT);
  const size = rawSize === null || rawSize === 0n ? null : rawSize;
  const targetList =
    listT === null || listT.trim() === ""
      ? []
      : listT.split(",").map((t) => {
          if (!/^\d+$/.test(t.trim())) throw malformed(at("target_list"), listT, "comma-separated dport ids");
          return t.trim();
        });
  const decoder: Omit<KernelDecoder, "committed"> = {
    name,
    level,
    port,
    index: Number(name.slice(name.indexOf(".") + 1)),
    start: size === null ? null : rawStart,
    size,
    interleaveWays: decAttr(at("interleave_ways"), waysT),
    interleaveGranularity: decAttr(at("interleave_granularity"), granT),
    targetList,
    region: nameAttr(regionT),
    locked: flagAttr(at("locked"), lockedT),
  };
  if (typeT !== null) decoder.targetType = typeT.trim();
  if (level === "endpoint") {
    if (modeT !== null) decoder.mode = modeT.trim();
    // cxl_dpa_resource_start() is -1 while nothing is allocated.
    const dpaResource = hexAttr(at("dpa_resource"), dpaResT);
    decoder.dpaResource = dpaResource === ALL_ONES ? null : dpaResource;
    decoder.dpaSize = hexAttr(at("dpa_size"), dpaSizeT);
  }
  return decoder;
}

/** regionZ/targetN in position order; "" for a position not yet written. */
async function readTargets(regionDir: string): Promise<string[]> {
  const names = matching((await listDir(regionDir)) ?? [], /^target\d+$/);
  return Promise.all(names.map(async (n) => nameAttr(await readOptional(join(regionDir, n))) ?? ""));
}

/** memoryN blocks (block N covers [N * block_size_bytes, (N + 1) * block_size_bytes)) not offline in range. */
async function onlineBlocks(roots: SysfsRoots, start: bigint, size: bigint): Promise<string[]> {
  const dir = memoryBlocksDir(roots);
  const bsPath = join(dir, "block_size_bytes");
  const bsText = await readAttr(bsPath);
  if (bsText === null) return []; // no memory hotplug: nothing can be onlined into the region
  if (!/^[0-9a-fA-F]+$/.test(bsText.trim())) throw malformed(bsPath, bsText, "hex without 0x");
  const blockSize = BigInt(`0x${bsText.trim()}`);
  if (blockSize === 0n) throw malformed(bsPath, bsText, "a non-zero block size");
  const first = start / blockSize;
  const last = (start + size - 1n) / blockSize;
  const blocks = matching((await listDir(dir)) ?? [], /^memory\d+$/).filter((n) => {
    const id = BigInt(n.slice("memory".length));
    return id >= first && id <= last;
  });
  const states = await Promise.all(blocks.map((b) => readAttr(join(dir, b, "state"))));
  return blocks.filter((_, i) => states[i] !== null && states[i]!.trim() !== "offline");
}

/** The libnvdimm region cxl_pmem built for a pmem region: the nd region with the same start address. */
async function ndRegionAt(roots: SysfsRoots, start: bigint): Promise<RegionUseEvidence["ndRegion"]> {
  const dir = ndDevicesDir(roots);
  for (const name of matching((await listDir(dir)) ?? [], /^region\d+$/)) {
    const regionDir = join(dir, name);
    const resPath = join(regionDir, "resource");
    if (hexAttr(resPath, await readAttr(resPath)) !== start) continue;
    const namespaces = await Promise.all(
      matching((await listDir(regionDir)) ?? [], /^namespace\d+\.\d+$/).map(async (ns) => {
        const nsDir = join(regionDir, ns);
        const [sizeT, modeT, holderT, driver] = await Promise.all([
          readAttr(join(nsDir, "size")),
          readAttr(join(nsDir, "mode")),
          readAttr(join(nsDir, "holder")),
          readLinkName(join(nsDir, "driver")),
        ]);
        return {
          name: ns,
          size: decBigAttr(join(nsDir, "size"), sizeT) ?? 0n,
          mode: nameAttr(modeT),
          holder: nameAttr(holderT),
          driver,
        };
      }),
    );
    return { name, enabled: (await readLinkName(join(regionDir, "driver"))) !== null, namespaces };
  }
  return null;
}

/** The dax devices below regionZ/dax_regionZ (cxl_dax_region, 6.3+); null when there is no dax region. */
async function daxDevicesOf(regionDir: string): Promise<RegionUseEvidence["daxDevices"]> {
  const daxRegion = matching((await listDir(regionDir)) ?? [], /^dax_region\d+$/)[0];
  if (daxRegion === undefined) return null;
  const dir = join(regionDir, daxRegion);
  const devices = matching((await listDir(dir)) ?? [], /^dax\d+\.\d+$/);
  return Promise.all(
    devices.map(async (name) => ({ name, driver: await readLinkName(join(dir, name, "driver")) })),
  );
}

async function readRegion(roots: SysfsRoots, name: string, targets: string[]): Promise<KernelRegion> {
  const dir = join(cxlDevicesDir(roots), name);
  const at = (f: string) => join(dir, f);
  const read = (f: string) => readAttr(at(f));
  const [commitT, resourceT, sizeT, modeT, waysT, granT, uuidT] = await Promise.all([
    read("commit"),
    read("resource"),
    read("size"),
    read("mode"),
    read("interleave_ways"),
    read("interleave_granularity"),
    read("uuid"),
  ]);
  // A region without `commit` (never seen: it is there since 6.0) counts as committed: fail-safe.
  const committed = flagAttr(at("commit"), commitT) ?? true;
  const rawResource = hexAttr(at("resource"), resourceT); // all-ones while no address space is allocated
  const rawSize = hexAttr(at("size"), sizeT);
  const resource = rawResource === ALL_ONES ? null : rawResource;
  const size = rawSize === null || rawSize === 0n ? null : rawSize;
  // regionZ/mode came in 6.3 together with create_ram_region: a region without it is a pmem region.
  const mode = nameAttr(modeT) ?? "pmem";
  const evidence: RegionUseEvidence = { committed, mode, onlineBlocks: [] };
  if (committed && resource !== null && size !== null) {
    evidence.onlineBlocks = await onlineBlocks(roots, resource, size);
    if (mode === "pmem") evidence.ndRegion = await ndRegionAt(roots, resource);
    if (mode === "ram") evidence.daxDevices = await daxDevicesOf(dir);
  }
  return {
    name,
    committed,
    resource,
    size,
    mode,
    interleaveWays: decAttr(at("interleave_ways"), waysT),
    interleaveGranularity: decAttr(at("interleave_granularity"), granT),
    uuid: nameAttr(uuidT),
    targets,
    inUse: judgeRegionUse(evidence),
  };
}

interface PortAt {
  name: string;
  dir: string;
  level: KernelDecoderLevel;
}

/** The endpoint port, then each port above it (a port's parent directory is its parent port) to the root. */
function portChain(endpoint: string, endpointDir: string): PortAt[] {
  const chain: PortAt[] = [{ name: endpoint, dir: endpointDir, level: "endpoint" }];
  let dir = dirname(endpointDir);
  for (let depth = 0; depth < MAX_PORT_DEPTH; depth++) {
    const name = basename(dir);
    if (/^port\d+$/.test(name)) chain.push({ name, dir, level: "port" });
    else if (/^root\d+$/.test(name)) {
      chain.push({ name, dir, level: "root" });
      break;
    } else break;
    dir = dirname(dir);
  }
  return chain;
}

/**
 * The kernel's view of bdf's CXL memory device, or null when it has none: no /sys/bus/cxl, no such PCI
 * device, or no memdev whose parent is that device (cxl_pci not bound, or not a CXL memory device).
 * A malformed attribute throws CxlrcError "backend" naming the file and the value read.
 */
export async function readCxlView(roots: SysfsRoots, bdf: string): Promise<KernelCxlView | null> {
  const busDir = cxlDevicesDir(roots);
  const names = await listDir(busDir);
  if (names === null) return null;
  const pciDir = await resolve(deviceDir(roots, bdf));
  if (pciDir === null) return null;

  // The memdev is a direct child: a switch's upstream port has other devices' memdevs further below it.
  let memdev: string | null = null;
  let memdevDir: string | null = null;
  for (const name of matching(names, /^mem\d+$/)) {
    const real = await resolve(join(busDir, name));
    if (real !== null && dirname(real) === pciDir) {
      memdev = name;
      memdevDir = real;
      break;
    }
  }
  if (memdev === null || memdevDir === null) return null;

  let endpoint: string | null = null;
  let endpointDir: string | null = null;
  for (const name of matching(names, /^endpoint\d+$/)) {
    if ((await resolve(join(busDir, name, "uport"))) === memdevDir) {
      endpoint = name;
      endpointDir = await resolve(join(busDir, name));
      break;
    }
  }
  const view: KernelCxlView = { bdf, memdev, endpoint, decoders: [], regions: [] };
  if (endpoint === null || endpointDir === null) return view; // cxl_mem has not probed the memdev

  const raw: Array<Omit<KernelDecoder, "committed">> = [];
  for (const port of portChain(endpoint, endpointDir)) {
    for (const name of matching((await listDir(port.dir)) ?? [], /^decoder\d+\.\d+$/)) {
      raw.push(await readDecoder(join(port.dir, name), name, port.level, port.name));
    }
  }

  const mine = raw.filter((d) => d.level === "endpoint");
  const mineNames = new Set(mine.map((d) => d.name));
  const named = new Set(mine.map((d) => d.region).filter((r): r is string => r !== null));
  for (const name of matching(names, /^region\d+$/)) {
    const targets = await readTargets(join(busDir, name));
    if (named.has(name) || targets.some((t) => mineNames.has(t))) {
      view.regions.push(await readRegion(roots, name, targets));
    }
  }

  // A port decoder may serve a region of another device below the same switch: read its commit too.
  const regionCommit = new Map(view.regions.map((r) => [r.name, r.committed]));
  const commitOf = async (region: string | null): Promise<boolean | null> => {
    if (region === null) return null;
    if (!regionCommit.has(region)) {
      const path = join(busDir, region, "commit");
      regionCommit.set(region, flagAttr(path, await readAttr(path)) ?? true);
    }
    return regionCommit.get(region) ?? null;
  };
  for (const d of raw) view.decoders.push({ ...d, committed: decoderCommitted(d, await commitOf(d.region)) });
  return view;
}
