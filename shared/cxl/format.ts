// Human output for `cxlrc decode`. The CXL lines read like lspci's (pciutils 3.9 ls-ecaps.c): the same
// labels, flag style (`Name+`/`Name-`), tabs and hex widths, so the two can be compared line by line.
// Lines lspci 3.9 does not print carry the names pciutils 3.10+ uses (CXLCtl2) or cxlrc's own (CXLCapExt,
// CXLLock, the HDM decoder lines).
import type { DecodedComponentBlock, DecodedDecoder, DecodedHdm } from "./component.ts";
import type { DecodedConfig, DecodedExtCapability } from "./decode.ts";
import type {
  DecodedCxlDevice,
  DecodedPortExtensions,
  DecodedRange,
  DecodedRegisterLocator,
} from "./dvsec.ts";

const flag = (name: string, v: boolean) => `${name}${v ? "+" : "-"}`;
const hex16 = (h: string) => BigInt(h).toString(16).padStart(16, "0");
const U64 = (1n << 64n) - 1n;

/** lspci's tables: Range Size Low Media_Type / Memory_Class / Desired_Interleave. */
const MEDIA_TYPE = ["Volatile", "Non-volatile", "CDAT"];
const MEMORY_CLASS = ["DRAM", "Storage", "CDAT"];
const INTERLEAVE_BYTES = [0, 256, 4096, 512, 1024, 2048, 8192, 16384];

function reserved(n: number): string {
  return `<reserved ${n}>`;
}

export function formatRange(r: DecodedRange): string[] {
  const base = BigInt(r.base);
  const size = BigInt(r.size);
  const end = (base + size - 1n) & U64; // lspci prints base-1 for an empty range; so do we
  const timeout =
    r.memActiveTimeoutMs === null ? reserved(r.memActiveTimeoutCode) : `${r.memActiveTimeoutMs / 1000}s`;
  return [
    `\t\tRange${r.index}: ${hex16(r.base)}-${end.toString(16).padStart(16, "0")}`,
    `\t\t\t${flag("Valid", r.memInfoValid)} ${flag("Active", r.memActive)} ` +
      `Type=${MEDIA_TYPE[r.mediaType] ?? reserved(r.mediaType)} ` +
      `Class=${MEMORY_CLASS[r.memoryClass] ?? reserved(r.memoryClass)} ` +
      `interleave=${INTERLEAVE_BYTES[r.desiredInterleave] ?? reserved(r.desiredInterleave)} timeout=${timeout}`,
  ];
}

function formatTimeoutMs(ms: number): string {
  return ms >= 1000 ? `${ms / 1000}s` : `${ms}ms`;
}

export function formatCxlDevice(d: DecodedCxlDevice): string[] {
  const c = d.capability;
  const ctl = d.control;
  const ctl2 = d.control2;
  const cap2 = d.capability2;
  const out = [
    `\t\tCXLCap:\t${flag("Cache", c.cacheCapable)} ${flag("IO", c.ioCapable)} ${flag("Mem", c.memCapable)} ` +
      `${flag("Mem HW Init", c.memHwInitMode)} HDMCount ${c.hdmCount} ${flag("Viral", c.viralCapable)}`,
    `\t\tCXLCapExt:\t${flag("CacheWB&Inval", c.cacheWbInvCapable)} ${flag("Rst", c.cxlResetCapable)} ` +
      `RstTimeout ${formatTimeoutMs(c.cxlResetTimeoutMs)}${c.cxlResetTimeoutReserved ? ` (reserved code ${c.cxlResetTimeout})` : ""} ` +
      `${flag("RstMemClr", c.cxlResetMemClrCapable)} ${flag("MLD", c.multipleLogicalDevice)} ` +
      `${flag("PMInitReport", c.pmInitCompletionCapable)}`,
    `\t\tCXLCtl:\t${flag("Cache", ctl.cacheEnable)} ${flag("IO", ctl.ioEnable)} ${flag("Mem", ctl.memEnable)} ` +
      `Cache SF Cov ${ctl.cacheSfCoverage} Cache SF Gran ${ctl.cacheSfGranularity} ` +
      `${flag("Cache Clean", ctl.cacheCleanEviction)} ${flag("Viral", ctl.viralEnable)}`,
    `\t\tCXLSta:\t${flag("Viral", d.status.viralStatus)}`,
    `\t\tCXLCtl2:\t${flag("DisableCaching", ctl2.disableCaching)} ${flag("InitCacheWB&Inval", ctl2.initiateCacheWbInv)} ` +
      `${flag("InitRst", ctl2.initiateCxlReset)} ${flag("RstMemClrEn", ctl2.cxlResetMemClrEnable)}` +
      (d.revision >= 2
        ? ` ${flag("DesiredVolatileHDMStateAfterHotReset", ctl2.desiredVolatileHdmStateAfterHotReset)}`
        : ""),
    `\t\tCXLSta2:\t${flag("ResetComplete", d.status2.cxlResetComplete)} ${flag("ResetError", d.status2.cxlResetError)} ` +
      `${flag("PMComplete", d.status2.pmInitComplete)}`,
    `\t\tCXLLock:\t${flag("ConfigLock", d.lock.configLock)}`,
  ];
  if (cap2.cacheSizeUnit === 0) out.push("\t\tCache Size Not Reported");
  else if (cap2.cacheSizeBytes !== null) {
    out.push(`\t\tCache Size: ${BigInt(cap2.cacheSizeBytes).toString(16).padStart(8, "0")}`);
  } else out.push(`\t\tCache Size: ${cap2.cacheSize} of unknown unit size (${cap2.cacheSizeUnit})`);
  for (const r of d.ranges) out.push(...formatRange(r));
  return out;
}

export function formatRegisterLocator(rl: DecodedRegisterLocator): string[] {
  // lspci skips empty entries but keeps the numbering: Block3 can follow Block1.
  return rl.blocks
    .filter((b) => b.blockId !== 0)
    .map((b) => `\t\tBlock${b.index}: BIR: bar${b.bir}, ID: ${b.blockName}, offset: ${hex16(b.offset)}`);
}

export function formatPortExtensions(p: DecodedPortExtensions): string[] {
  const c = p.control;
  return [
    `\t\tCXLPortSta:\t${flag("PMComplete", p.status.portPowerManagementInitComplete)}`,
    `\t\tCXLPortCtl:\t${flag("UnmaskSBR", c.unmaskSbr)} ${flag("UnmaskLinkDisable", c.unmaskLinkDisable)} ` +
      `${flag("AltMem", c.altMemoryAndIdSpaceEnable)} ${flag("AltBME", c.altBme)} ${flag("ViralEnable", c.viralEnable)}`,
    `\t\tAlternateBus:\t${p.altBusBase.toString(16).padStart(2, "0")}-${p.altBusLimit.toString(16).padStart(2, "0")}`,
  ];
}

function extCapLine(cap: DecodedExtCapability): string {
  const where = `\tCapabilities: [${cap.offset.slice(2).padStart(3, "0")} v${cap.version}] `;
  const d = cap.dvsec;
  if (!d) return where + cap.name;
  const head = `Designated Vendor-Specific: Vendor=${d.vendor.slice(2)} ID=${d.id.toString(16).padStart(4, "0")} Rev=${d.revision} Len=${d.length}`;
  if (d.vendor !== "0x1e98") return `${where}${head} <?>`;
  return `${where}${head}: CXL${d.name ? `\n\t\t${d.name}` : ""}`;
}

/** PCIe Capabilities register 7:4, named as lspci names them. */
const PORT_TYPES: Readonly<Record<number, string>> = {
  0: "Endpoint",
  1: "Legacy Endpoint",
  4: "Root Port",
  5: "Upstream Port",
  6: "Downstream Port",
  7: "PCI-Express to PCI/PCI-X Bridge",
  8: "PCI/PCI-X to PCI-Express Bridge",
  9: "Root Complex Integrated Endpoint",
  10: "Root Complex Event Collector",
};

export function formatDecoder(d: DecodedDecoder): string[] {
  const base = BigInt(d.base);
  const end = (base + BigInt(d.size) - 1n) & U64;
  const c = d.control;
  const ig =
    c.interleaveGranularityBytes === null
      ? reserved(c.interleaveGranularity)
      : `${c.interleaveGranularityBytes}B`;
  const iw = c.interleaveWaysCount === null ? reserved(c.interleaveWays) : String(c.interleaveWaysCount);
  return [
    `\t\tDecoder${d.index}: ${hex16(d.base)}-${end.toString(16).padStart(16, "0")} [size=${d.size}]`,
    `\t\t\tIG=${ig} IW=${iw} ${flag("LockOnCommit", c.lockOnCommit)} ${flag("Commit", c.commit)} ` +
      `${flag("Committed", c.committed)} ${flag("ErrNotCommitted", c.errorNotCommitted)} ` +
      `Type=${c.targetDeviceType ? "HostOnly(Type3)" : "DevCoherent(Type2)"} DPASkip=${d.dpaSkip} TargetList=${d.targetList}`,
  ];
}

export function formatHdm(h: DecodedHdm): string[] {
  const c = h.capability;
  const g = h.globalControl;
  return [
    `\tHDM Decoder Capability: [${h.offset.slice(2)}] Decoders ${h.decoderCount} Targets ${c.targetCount} ` +
      `${flag("A11to8", c.a11to8InterleaveCapable)} ${flag("A14to12", c.a14to12InterleaveCapable)} ` +
      `${flag("PoisonOnDecodeErr", c.poisonOnDecodeErrorCapable)} ${flag("3/6/12Way", c.threeSixTwelveWayCapable)} ` +
      `${flag("16Way", c.sixteenWayCapable)}`,
    `\t\tHDMGlobalCtl:\t${flag("PoisonOnDecodeErrEn", g.poisonOnDecodeErrorEnable)} ${flag("DecoderEnable", g.hdmDecoderEnable)}`,
    ...h.decoders.flatMap(formatDecoder),
  ];
}

export function formatComponent(c: DecodedComponentBlock): string[] {
  const m = c.cacheMem;
  const out = [
    `\tComponent registers: CXL.cache/mem capability array [1000] v${m.version} cache_mem v${m.cacheMemVersion}, ${m.arraySize} entries`,
    ...m.capabilities.map(
      (cap) => `\t\tCapability: [${cap.offset.slice(2)}] ID=${cap.id} v${cap.version} ${cap.name}`,
    ),
  ];
  if (c.hdm) out.push(...formatHdm(c.hdm));
  else out.push("\tHDM Decoder Capability: none");
  return out;
}

/** The whole human report for one device (and its component block, when given). */
export function formatHuman(d: DecodedConfig, component?: DecodedComponentBlock | null): string {
  const out: string[] = [];
  out.push(
    `${d.bdf ?? "(no address)"} ${d.vendorId.slice(2)}:${d.deviceId.slice(2)} class ${d.classCode.slice(2)} ` +
      `rev ${d.revisionId.toString(16).padStart(2, "0")} (${d.configSize} bytes of config space)`,
  );
  const flr =
    d.flrCapable === null
      ? "unknown (dump ends before the capability list)"
      : d.flrCapable
        ? "capable"
        : "not capable";
  out.push(`\tFLR: ${flr}`);
  for (const cap of d.capabilities) {
    const p = d.pcie;
    const type = p ? (PORT_TYPES[p.portType] ?? `port type ${p.portType}`) : "";
    const name =
      cap.id === 0x10 && p ? `Express (v${p.version}) ${type}, ${flag("FLReset", p.flrCapable)}` : cap.name;
    out.push(`\tCapabilities: [${cap.offset.slice(2)}] ${name}`);
  }
  if (!d.capabilitiesComplete) out.push("\tCapabilities: <dump ends before the capability list>");
  for (const cap of d.extendedCapabilities) {
    out.push(extCapLine(cap));
    if (cap.dvsec?.vendor !== "0x1e98") continue;
    if (d.cxlDevice && d.cxlDevice.offset === cap.offset) out.push(...formatCxlDevice(d.cxlDevice));
    else if (d.registerLocator && d.registerLocator.offset === cap.offset) {
      out.push(...formatRegisterLocator(d.registerLocator));
    } else if (d.portExtensions && d.portExtensions.offset === cap.offset) {
      out.push(...formatPortExtensions(d.portExtensions));
    }
  }
  if (d.configSize < 4096)
    out.push("\tExtended capabilities: not in the dump (needs the 4096-byte config space)");
  if (!d.cxlDevice && d.configSize === 4096) out.push("\tCXL: no PCIe DVSEC for CXL Devices");
  if (component) out.push(...formatComponent(component));
  return `${out.join("\n")}\n`;
}
