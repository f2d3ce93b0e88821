// The Linux kernel's own view of a CXL memory device's HDM decoders and regions, as read from
// /sys/bus/cxl/devices (Documentation/ABI/testing/sysfs-bus-cxl; drivers/cxl/core/port.c, region.c,
// hdm.c). With cxl_pci bound the kernel refuses our mmap of the component-register BAR, so this is the
// only view of the decoders then; with both views at hand, crossCheck finds where they disagree.
// Pure: the reader is services/agent/backends/sysfs/cxl-view.ts.
//
// The kernel's view is software state, not a live register read: hdm.c reads each decoder's registers
// once, when the port is enumerated (init_hdm_decoder), and updates its copy only when the kernel itself
// commits or resets a decoder. A reset done behind its back (cxlrc's) leaves sysfs saying "committed".

export type KernelDecoderLevel = "root" | "port" | "endpoint";

export interface KernelDecoder {
  /** "decoder2.0": decoder<port id>.<index>. */
  name: string;
  /** The port it belongs to: rootN ("cxl_decoder_root"), portN (switch/host bridge), endpointN. */
  level: KernelDecoderLevel;
  /** "endpoint2". */
  port: string;
  /** The number after the dot: the HDM decoder instance within the port. */
  index: number;
  /** Host physical base; null when the decoder decodes nothing (size 0x0) or the attribute is missing. */
  start: bigint | null;
  /** Bytes decoded; null when 0x0 (an idle decoder) or the attribute is missing. */
  size: bigint | null;
  interleaveWays: number | null;
  interleaveGranularity: number | null;
  /** "expander" (type-3) or "accelerator"; not shown for root decoders. */
  targetType?: string;
  /** Root and switch decoders: the dport ids in interleave order; [] for endpoint decoders. */
  targetList: string[];
  /** Endpoint decoders: "ram", "pmem", "mixed" or "none". */
  mode?: string;
  /** Endpoint decoders: DPA base of the allocation; null when nothing is allocated. */
  dpaResource?: bigint | null;
  /** Endpoint decoders: DPA bytes allocated (0n when none). */
  dpaSize?: bigint | null;
  /** The region this decoder is attached to (endpoint and switch decoders), or null. */
  region: string | null;
  /** Lock On Commit as the kernel saw it; null when the attribute is missing. */
  locked: boolean | null;
  /** Derived: see decoderCommitted. */
  committed: boolean;
}

export interface RegionInUse {
  yes: boolean;
  why: string;
}

export interface KernelRegion {
  /** "region0". */
  name: string;
  /** The region's `commit` attribute: every decoder of the region is committed in hardware. */
  committed: boolean;
  /** Host physical base; null when no address space is allocated (the kernel prints all-ones). */
  resource: bigint | null;
  /** Bytes; null when none is allocated. */
  size: bigint | null;
  /** "pmem" or "ram" (the region's `mode` from 6.3; before that from its endpoint decoders). */
  mode: string;
  interleaveWays: number | null;
  interleaveGranularity: number | null;
  /** Persistent regions only; null when empty or absent. */
  uuid: string | null;
  /** Endpoint decoder names in interleave position order ("" for a position not yet set). */
  targets: string[];
  inUse: RegionInUse;
}

export interface KernelCxlView {
  bdf: string;
  /** The memdev (memN) whose parent is the PCI device. */
  memdev: string | null;
  /** The endpoint port (endpointN) whose uport is the memdev; null until cxl_mem has probed it. */
  endpoint: string | null;
  /** The endpoint's decoders, then those of each port above it up to the root. */
  decoders: KernelDecoder[];
  /** Regions that involve one of this device's endpoint decoders. */
  regions: KernelRegion[];
}

/**
 * Whether the kernel shows a decoder as committed. sysfs has no "committed" attribute in 6.1
 * (decoders_committed on ports came in 6.7), so it is derived:
 * - hdm.c init_hdm_decoder sets the size it reads to 0 unless Committed is set, and cxl_decoder_reset
 *   clears the range (cxld_clear_hpa): size 0x0 is an idle decoder.
 * - A decoder with a range and no region was committed by firmware or an earlier kernel (6.1 builds no
 *   region from those): committed.
 * - But region.c cxl_region_attach / cxl_port_setup_targets give endpoint and switch decoders the
 *   region's range as soon as all targets are attached, before `commit` is written; so a decoder whose
 *   region is not committed is not committed either. The region's `commit` is "%d" of
 *   state >= CXL_CONFIG_COMMIT, true only once every decoder of the region committed.
 * - Root decoders are fixed platform windows (CFMWS): committed whenever they have a size.
 * regionCommitted is null when the region cannot be read: the decoder then counts as committed.
 */
export function decoderCommitted(
  d: Pick<KernelDecoder, "level" | "size" | "region">,
  regionCommitted: boolean | null,
): boolean {
  if (d.size === null || d.size === 0n) return false;
  if (d.level === "root" || d.region === null) return true;
  return regionCommitted !== false;
}

/** What the reader found about who uses a region's memory (see judgeRegionUse). */
export interface RegionUseEvidence {
  committed: boolean;
  mode: string;
  /** Online (not "offline") memory blocks (memoryN) inside the region's address range. */
  onlineBlocks: string[];
  /** pmem: the libnvdimm region found at the same start address; null when none was found. */
  ndRegion?: {
    name: string;
    /** Bound to the nd_region driver (its namespaces exist only then). */
    enabled: boolean;
    namespaces: Array<{
      name: string;
      size: bigint;
      mode: string | null;
      holder: string | null;
      driver: string | null;
    }>;
  } | null;
  /** ram: the dax devices (daxN.M) below the region's dax_regionN; null when there is no dax_region. */
  daxDevices?: Array<{ name: string; driver: string | null }> | null;
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/**
 * "In use" means someone outside the CXL core can reach the region's memory, so unbinding cxl_pci (or
 * resetting the device) would pull memory from under them:
 * - memory blocks in its range are online (System RAM, whoever onlined it: kmem or firmware);
 * - pmem: the libnvdimm region built for it (cxl_pmem, found by start address) has a namespace with
 *   capacity: a block device (fsdax, sector) or a device-dax that may be mounted or mapped, holding data;
 * - ram: a dax device of its dax_region is bound to a driver: kmem (memory handed to the kernel) or
 *   device_dax (/dev/daxN.M, mappable by any process).
 * Fail-safe: a committed region whose consumers cannot be found (no nd region, no dax_region, a mode we
 * do not know) counts as in use, with the reason.
 */
export function judgeRegionUse(e: RegionUseEvidence): RegionInUse {
  if (e.onlineBlocks.length > 0) {
    return { yes: true, why: `memory online in ${e.onlineBlocks.join(", ")}` };
  }
  if (!e.committed) return { yes: false, why: "not committed: it decodes no host memory" };
  if (e.mode === "pmem") {
    const nd = e.ndRegion;
    if (nd === undefined || nd === null) {
      return {
        yes: true,
        why: "no nd region found for it (cxl_pmem or libnvdimm not loaded?): cannot tell whether its memory is in use",
      };
    }
    const used = nd.namespaces.filter((n) => n.size > 0n);
    if (used.length > 0) {
      const what = used.map((n) => {
        const extra = [
          n.mode,
          n.holder ? `claimed by ${n.holder}` : null,
          n.driver ? `driver ${n.driver}` : null,
        ]
          .filter((x) => x !== null && x !== "")
          .join(", ");
        return `${n.name} (${hex(n.size)} bytes${extra ? `, ${extra}` : ""})`;
      });
      return {
        yes: true,
        why: `${what.join(", ")} on nd region ${nd.name}: a namespace with capacity may be mounted or mapped`,
      };
    }
    return {
      yes: false,
      why: nd.enabled
        ? `nd region ${nd.name} has no namespace with capacity`
        : `nd region ${nd.name} is disabled (no namespaces)`,
    };
  }
  if (e.mode === "ram") {
    const dax = e.daxDevices;
    if (dax === undefined || dax === null) {
      return { yes: true, why: "no dax region below it: cannot tell whether its memory is in use" };
    }
    const bound = dax.filter((d) => d.driver !== null);
    if (bound.length > 0) {
      const what = bound.map((d) =>
        d.driver === "kmem"
          ? `${d.name} bound to kmem (memory handed to the kernel)`
          : d.driver === "device_dax"
            ? `${d.name} bound to device_dax (/dev/${d.name} may be mapped)`
            : `${d.name} bound to ${d.driver}`,
      );
      return { yes: true, why: what.join(", ") };
    }
    return {
      yes: false,
      why: dax.length === 0 ? "its dax region has no dax device" : "no dax device of it is bound to a driver",
    };
  }
  return { yes: true, why: `mode ${JSON.stringify(e.mode)}: cannot tell whether its memory is in use` };
}

function rangeText(start: bigint | null, size: bigint | null): string {
  return start === null || size === null || size === 0n
    ? "no address range"
    : `${hex(start)}-${hex(start + size - 1n)}`;
}

const endpointDecoders = (view: KernelCxlView) => view.decoders.filter((d) => d.level === "endpoint");

/**
 * One sentence per region of the device that is committed (decodes host memory) or whose memory is in
 * use, naming the region. For a gate that refuses a full reset: never unbind a driver under a user, and
 * never pull the decode out from under a region the kernel believes is live.
 */
export function regionsInUse(view: KernelCxlView): string[] {
  const mine = new Set(endpointDecoders(view).map((d) => d.name));
  const out: string[] = [];
  for (const r of view.regions) {
    if (!r.committed && !r.inUse.yes) continue;
    const via = r.targets.filter((t) => mine.has(t));
    const head =
      `region ${r.name} (${r.mode}, ${rangeText(r.resource, r.size)}` +
      `${via.length > 0 ? `, through ${via.join(", ")}` : ""})`;
    if (r.committed && r.inUse.yes) out.push(`${head} is committed and in use: ${r.inUse.why}`);
    else if (r.committed) out.push(`${head} is committed (it decodes host memory; ${r.inUse.why})`);
    else out.push(`${head} is not committed but in use: ${r.inUse.why}`);
  }
  return out;
}

/**
 * Committed endpoint decoders that belong to no region: programmed by firmware or an earlier kernel
 * (6.1 does not assemble regions from them). Their memory may be online as System RAM without any
 * region to show it; the online-memory check is the caller's (holders' memory-online).
 */
export function unclaimedCommittedDecoders(view: KernelCxlView): string[] {
  return endpointDecoders(view)
    .filter((d) => d.committed && d.region === null)
    .map(
      (d) =>
        `${d.name} is committed (${rangeText(d.start, d.size)}${d.locked ? ", locked" : ""}) without a region: ` +
        "programmed by firmware or an earlier kernel; its memory may be online",
    );
}

/** An HDM decoder fact (as machines/facts.ts DecoderFact) taken from the kernel's view. */
export interface KernelDecoderFact {
  index: number;
  /** Host physical base, hex ("0x0" when the decoder decodes nothing). */
  base: string;
  /** Size in bytes, hex. */
  size: string;
  committed: boolean;
  /** The kernel's `locked`; null when it does not show it. */
  lockOnCommit: boolean | null;
  source: "kernel";
}

/** The endpoint's decoders as decoder facts, for when the component-register BAR cannot be read. */
export function endpointDecoderFacts(view: KernelCxlView): KernelDecoderFact[] {
  return endpointDecoders(view)
    .slice()
    .sort((a, b) => a.index - b.index)
    .map((d) => ({
      index: d.index,
      base: hex(d.start ?? 0n),
      size: hex(d.size ?? 0n),
      committed: d.committed,
      lockOnCommit: d.locked,
      source: "kernel" as const,
    }));
}

export interface BarDecoder {
  index: number;
  base: bigint;
  size: bigint;
  committed: boolean;
}

export interface ViewDifference {
  decoder: number;
  field: string;
  kernel: string;
  bar: string;
}

const committedText = (c: boolean) => (c ? "committed" : "not committed");

/**
 * Where the kernel's endpoint decoders and the BAR's HDM decoder registers disagree: presence, committed,
 * and base and size when either side has the decoder committed (an idle decoder's base and size
 * registers mean nothing, and the kernel shows none for it). After a reset behind the kernel's back the
 * kernel still shows what it saw last: exactly what this reports.
 */
export function crossCheck(kernel: KernelCxlView, bar: BarDecoder[]): ViewDifference[] {
  const k = new Map(endpointDecoders(kernel).map((d) => [d.index, d]));
  const b = new Map(bar.map((d) => [d.index, d]));
  const indexes = [...new Set([...k.keys(), ...b.keys()])].sort((x, y) => x - y);
  const diffs: ViewDifference[] = [];
  for (const i of indexes) {
    const kd = k.get(i);
    const bd = b.get(i);
    if (!kd || !bd) {
      diffs.push({
        decoder: i,
        field: "present",
        kernel: kd ? kd.name : "absent",
        bar: bd ? `decoder ${i}` : "absent",
      });
      continue;
    }
    if (kd.committed !== bd.committed) {
      diffs.push({
        decoder: i,
        field: "committed",
        kernel: committedText(kd.committed),
        bar: committedText(bd.committed),
      });
    }
    if (!kd.committed && !bd.committed) continue;
    const kBase = kd.start ?? 0n;
    const kSize = kd.size ?? 0n;
    if (kBase !== bd.base) diffs.push({ decoder: i, field: "base", kernel: hex(kBase), bar: hex(bd.base) });
    if (kSize !== bd.size) diffs.push({ decoder: i, field: "size", kernel: hex(kSize), bar: hex(bd.size) });
  }
  return diffs;
}

/** One line per decoder, for logs and events. */
export function describeKernelDecoders(view: KernelCxlView): string[] {
  return view.decoders.map((d) => {
    const parts = [
      rangeText(d.start, d.size) + (d.size ? ` (${hex(d.size)} bytes)` : ""),
      committedText(d.committed),
    ];
    if (d.locked !== null) parts.push(d.locked ? "locked" : "unlocked");
    if (d.mode !== undefined) parts.push(`mode ${d.mode}`);
    if (d.dpaSize) parts.push(`dpa ${hex(d.dpaResource ?? 0n)}+${hex(d.dpaSize)}`);
    if (d.interleaveWays !== null) {
      parts.push(
        `ways ${d.interleaveWays}${d.interleaveGranularity !== null ? ` x ${d.interleaveGranularity} B` : ""}`,
      );
    }
    if (d.targetList.length > 0) parts.push(`targets ${d.targetList.join(",")}`);
    if (d.region !== null) parts.push(`region ${d.region}`);
    return `${d.name} (${d.level} ${d.port}): ${parts.join(", ")}`;
  });
}
