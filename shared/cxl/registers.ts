// The register map: every PCI, PCIe, CXL DVSEC and HDM decoder register cxlrc reads or writes, declared
// once. Sources: ../shared/docs/cxl-registers.md (CXL r2.0 §8.1.3, §8.1.5, §8.1.9, §8.2.5.12), cross-checked
// against Linux include/uapi/linux/pci_regs.h, drivers/cxl/cxlpci.h, drivers/cxl/cxl.h and pciutils ls-ecaps.c.
import type { FieldDef, RegisterDef } from "./regdef.ts";

const ro = (name: string, lo: number, hi = lo): FieldDef => ({ name, lo, hi, access: "RO" });
const rw = (name: string, lo: number, hi = lo): FieldDef => ({ name, lo, hi, access: "RW" });
const rwl = (name: string, lo: number, hi = lo): FieldDef => ({
  name,
  lo,
  hi,
  access: "RWL",
  lock: "configLock",
});
const dl = (name: string, lo: number, hi = lo): FieldDef => ({
  name,
  lo,
  hi,
  access: "RWL",
  lock: "decoderLock",
});
const cmd = (name: string, lo: number): FieldDef => ({ name, lo, hi: lo, access: "CMD" });
const rw1c = (name: string, lo: number): FieldDef => ({ name, lo, hi: lo, access: "RW1C" });
const reg = (name: string, offset: number, width: 1 | 2 | 4, fields: FieldDef[]): RegisterDef => ({
  name,
  offset,
  width,
  fields,
});

// ---------------------------------------------------------------------------------------------------------
// PCI header (PCI Local Bus 3.0 §6.2; pci_regs.h)
export const PCI_STD_CAP_PTR = 0x34;
export const PCI_CFG_SPACE_SIZE = 256;
export const PCI_CFG_SPACE_EXP_SIZE = 4096;
export const PCI_EXT_CAP_START = 0x100;

export const PCI = {
  vendorId: reg("vendorId", 0x00, 2, [ro("vendorId", 0, 15)]),
  deviceId: reg("deviceId", 0x02, 2, [ro("deviceId", 0, 15)]),
  command: reg("command", 0x04, 2, [
    rw("ioSpace", 0),
    rw("memorySpace", 1),
    rw("busMaster", 2),
    ro("specialCycles", 3),
    rw("mwiEnable", 4),
    rw("vgaPaletteSnoop", 5),
    rw("parityErrorResponse", 6),
    rw("serrEnable", 8),
    rw("fastBackToBack", 9),
    rw("intxDisable", 10),
  ]),
  status: reg("status", 0x06, 2, [
    ro("interruptStatus", 3),
    ro("capabilitiesList", 4),
    rw1c("masterDataParityError", 8),
    rw1c("signaledTargetAbort", 11),
    rw1c("receivedTargetAbort", 12),
    rw1c("receivedMasterAbort", 13),
    rw1c("signaledSystemError", 14),
    rw1c("detectedParityError", 15),
  ]),
  classRevision: reg("classRevision", 0x08, 4, [ro("revisionId", 0, 7), ro("classCode", 8, 31)]),
  cacheLineSize: reg("cacheLineSize", 0x0c, 1, [rw("cacheLineSize", 0, 7)]),
  latencyTimer: reg("latencyTimer", 0x0d, 1, [rw("latencyTimer", 0, 7)]),
  headerType: reg("headerType", 0x0e, 1, [ro("layout", 0, 6), ro("multiFunction", 7)]),
  capPtr: reg("capPtr", 0x34, 1, [ro("capPtr", 0, 7)]),
  interruptLine: reg("interruptLine", 0x3c, 1, [rw("interruptLine", 0, 7)]),
  interruptPin: reg("interruptPin", 0x3d, 1, [ro("interruptPin", 0, 7)]),
} as const;

/** Type-0 BARs 0..5 at 0x10 + 4n. Memory BAR: bit 0 = 0, 2:1 type (2 = 64-bit), 3 prefetchable. */
export const PCI_BAR0 = 0x10;
export const PCI_BAR_COUNT = 6;

// Type-1 (bridge) header.
export const PCI_BRIDGE = {
  primaryBus: reg("primaryBus", 0x18, 1, [rw("primaryBus", 0, 7)]),
  secondaryBus: reg("secondaryBus", 0x19, 1, [rw("secondaryBus", 0, 7)]),
  subordinateBus: reg("subordinateBus", 0x1a, 1, [rw("subordinateBus", 0, 7)]),
  memoryBase: reg("memoryBase", 0x20, 2, [rw("memoryBase", 4, 15)]),
  memoryLimit: reg("memoryLimit", 0x22, 2, [rw("memoryLimit", 4, 15)]),
  bridgeControl: reg("bridgeControl", 0x3e, 2, [
    rw("parityErrorResponse", 0),
    rw("serrEnable", 1),
    rw("isaEnable", 2),
    rw("vgaEnable", 3),
    rw("vga16Bit", 4),
    rw("masterAbortMode", 5),
    rw("secondaryBusReset", 6),
    rw("fastBackToBack", 7),
  ]),
} as const;

// ---------------------------------------------------------------------------------------------------------
// PCI Express capability (id 0x10), offsets relative to the capability (PCIe base spec §7.5.3).
export const PCI_CAP_ID_EXP = 0x10;
export const PCIE = {
  capabilities: reg("pcieCapabilities", 0x02, 2, [
    ro("version", 0, 3),
    ro("portType", 4, 7),
    ro("slotImplemented", 8),
  ]),
  devCap: reg("devCap", 0x04, 4, [
    ro("maxPayloadSupported", 0, 2),
    ro("extendedTagSupported", 5),
    ro("flrCapable", 28),
  ]),
  devCtl: reg("devCtl", 0x08, 2, [
    rw("correctableErrorReporting", 0),
    rw("nonFatalErrorReporting", 1),
    rw("fatalErrorReporting", 2),
    rw("unsupportedRequestReporting", 3),
    rw("relaxedOrdering", 4),
    rw("maxPayloadSize", 5, 7),
    rw("extendedTag", 8),
    rw("phantomFunctions", 9),
    rw("auxPowerPm", 10),
    rw("noSnoop", 11),
    rw("maxReadRequestSize", 12, 14),
    // Initiate FLR on endpoints (Bridge Configuration Retry Enable on bridges): reads 0.
    cmd("initiateFlr", 15),
  ]),
  devStatus: reg("devStatus", 0x0a, 2, [rw1c("correctableError", 0), ro("transactionsPending", 5)]),
  linkCtl: reg("linkCtl", 0x10, 2, [
    rw("aspmControl", 0, 1),
    rw("readCompletionBoundary", 3),
    rw("linkDisable", 4),
    cmd("retrainLink", 5),
    rw("commonClock", 6),
    rw("extendedSynch", 7),
    rw("clockPm", 8),
    rw("hwAutonomousWidthDisable", 9),
    rw("bandwidthMgmtIntEnable", 10),
    rw("autonomousBandwidthIntEnable", 11),
  ]),
  slotCtl: reg("slotCtl", 0x18, 2, [rw("slotControl", 0, 12)]),
  rootCtl: reg("rootCtl", 0x1c, 2, [rw("rootControl", 0, 4)]),
  devCtl2: reg("devCtl2", 0x28, 2, [
    rw("completionTimeoutValue", 0, 3),
    rw("completionTimeoutDisable", 4),
    rw("devCtl2Other", 5, 15),
  ]),
  linkCtl2: reg("linkCtl2", 0x30, 2, [rw("targetLinkSpeed", 0, 3), rw("linkCtl2Other", 4, 15)]),
  slotCtl2: reg("slotCtl2", 0x38, 2, []),
} as const;

/** PCIe registers saved and restored the way the kernel's pci_save_pcie_state does. */
export const PCIE_SAVED = [
  PCIE.devCtl,
  PCIE.linkCtl,
  PCIE.slotCtl,
  PCIE.rootCtl,
  PCIE.devCtl2,
  PCIE.linkCtl2,
] as const;

// ---------------------------------------------------------------------------------------------------------
// Extended capabilities and DVSEC (PCIe base spec §7.9.6)
export const PCI_EXT_CAP_ID_DVSEC = 0x23;
export const CXL_DVSEC_VENDOR = 0x1e98;
export const DVSEC_HEADER = {
  header1: reg("dvsecHeader1", 0x04, 4, [ro("vendor", 0, 15), ro("revision", 16, 19), ro("length", 20, 31)]),
  header2: reg("dvsecHeader2", 0x08, 2, [ro("id", 0, 15)]),
} as const;

export const CXL_DVSEC_ID = {
  device: 0,
  nonCxlFunctionMap: 2,
  portExtensions: 3,
  gpfPort: 4,
  gpfDevice: 5,
  flexBusPort: 7,
  registerLocator: 8,
  mld: 9,
} as const;

// DVSEC id 0: PCIe DVSEC for CXL Devices (CXL r2.0 §8.1.3). Offsets relative to the DVSEC.
export const CXL_DEVICE = {
  capability: reg("capability", 0x0a, 2, [
    ro("cacheCapable", 0),
    ro("ioCapable", 1),
    ro("memCapable", 2),
    ro("memHwInitMode", 3),
    ro("hdmCount", 4, 5),
    ro("cacheWbInvCapable", 6),
    ro("cxlResetCapable", 7),
    ro("cxlResetTimeout", 8, 10),
    ro("cxlResetMemClrCapable", 11),
    ro("multipleLogicalDevice", 13),
    ro("viralCapable", 14),
    ro("pmInitCompletionCapable", 15),
  ]),
  control: reg("control", 0x0c, 2, [
    rwl("cacheEnable", 0),
    ro("ioEnable", 1), // RO, reads 1
    rwl("memEnable", 2),
    rwl("cacheSfCoverage", 3, 7),
    rwl("cacheSfGranularity", 8, 10),
    rwl("cacheCleanEviction", 11),
    rwl("viralEnable", 14),
  ]),
  status: reg("status", 0x0e, 2, [{ name: "viralStatus", lo: 14, hi: 14, access: "RW1CS" }]),
  control2: reg("control2", 0x10, 2, [
    rw("disableCaching", 0),
    cmd("initiateCacheWbInv", 1),
    cmd("initiateCxlReset", 2),
    rw("cxlResetMemClrEnable", 3),
    rw("desiredVolatileHdmStateAfterHotReset", 4), // r3.x
    rw("modifiedCompletionEnable", 5), // r3.x
  ]),
  status2: reg("status2", 0x12, 2, [
    ro("cacheInvalid", 0),
    ro("cxlResetComplete", 1),
    ro("cxlResetError", 2),
    ro("volatileHdmPreservationError", 3), // r3.x
    ro("pmInitComplete", 15),
  ]),
  lock: reg("lock", 0x14, 2, [{ name: "configLock", lo: 0, hi: 0, access: "RWO" }]),
  capability2: reg("capability2", 0x16, 2, [ro("cacheSizeUnit", 0, 3), ro("cacheSize", 8, 15)]),
} as const;

/** Range n (1 or 2) registers of DVSEC id 0. */
export function cxlRange(n: 1 | 2) {
  const b = n === 1 ? 0x18 : 0x28;
  return {
    sizeHigh: reg(`range${n}SizeHigh`, b, 4, [ro("memorySizeHigh", 0, 31)]),
    sizeLow: reg(`range${n}SizeLow`, b + 0x04, 4, [
      ro("memInfoValid", 0),
      ro("memActive", 1),
      ro("mediaType", 2, 4),
      ro("memoryClass", 5, 7),
      ro("desiredInterleave", 8, 12),
      ro("memActiveTimeout", 13, 15),
      ro("memorySizeLow", 28, 31),
    ]),
    baseHigh: reg(`range${n}BaseHigh`, b + 0x08, 4, [rwl("memoryBaseHigh", 0, 31)]),
    baseLow: reg(`range${n}BaseLow`, b + 0x0c, 4, [rwl("memoryBaseLow", 28, 31)]),
  } as const;
}
export const CXL_RANGES = [cxlRange(1), cxlRange(2)] as const;
export const CXL_DEVICE_DVSEC_LENGTH_R20 = 0x38;
export const CXL_DEVICE_DVSEC_LENGTH_R3 = 0x3c;

/** CXL Reset Timeout encodings (Capability bits 10:8). 5–7 are reserved: callers use 100 s and say so. */
export const CXL_RESET_TIMEOUT_MS: Readonly<Record<number, number>> = {
  0: 10,
  1: 100,
  2: 1000,
  3: 10_000,
  4: 100_000,
};
export const CXL_RESET_TIMEOUT_RESERVED_FALLBACK_MS = 100_000;
/** Memory_Active_Timeout encodings (Range Size Low bits 15:13), in ms. */
export const MEM_ACTIVE_TIMEOUT_MS: Readonly<Record<number, number>> = {
  0: 1000,
  1: 4000,
  2: 16_000,
  3: 64_000,
  4: 256_000,
};

// DVSEC id 3: CXL Extensions DVSEC for Ports (CXL r2.0 §8.1.5).
export const CXL_PORT_EXT = {
  portExtStatus: reg("portExtensionStatus", 0x0a, 2, [
    ro("portPowerManagementInitComplete", 0),
    { name: "viralStatus", lo: 14, hi: 14, access: "RW1CS" },
  ]),
  portControl: reg("portControlExtensions", 0x0c, 2, [
    rw("unmaskSbr", 0),
    rw("unmaskLinkDisable", 1),
    rw("altMemoryAndIdSpaceEnable", 2),
    rw("altBme", 3),
    rw("viralEnable", 14),
  ]),
  altBusBase: reg("altBusBase", 0x0e, 1, [rw("altBusBase", 0, 7)]),
  altBusLimit: reg("altBusLimit", 0x0f, 1, [rw("altBusLimit", 0, 7)]),
  altMemBase: reg("altMemoryBase", 0x10, 2, [rw("altMemoryBase", 4, 15)]),
  altMemLimit: reg("altMemoryLimit", 0x12, 2, [rw("altMemoryLimit", 4, 15)]),
  altPrefetchMemBase: reg("altPrefetchableMemoryBase", 0x14, 2, [rw("altPrefetchableMemoryBase", 4, 15)]),
  altPrefetchMemLimit: reg("altPrefetchableMemoryLimit", 0x16, 2, [rw("altPrefetchableMemoryLimit", 4, 15)]),
  altPrefetchMemBaseHigh: reg("altPrefetchableMemoryBaseHigh", 0x18, 4, [
    rw("altPrefetchableMemoryBaseHigh", 0, 31),
  ]),
  altPrefetchMemLimitHigh: reg("altPrefetchableMemoryLimitHigh", 0x1c, 4, [
    rw("altPrefetchableMemoryLimitHigh", 0, 31),
  ]),
  rcrbBase: reg("cxlRcrbBase", 0x20, 4, [rw("rcrbEnable", 0), rw("rcrbBaseLow", 13, 31)]),
  rcrbBaseHigh: reg("cxlRcrbBaseHigh", 0x24, 4, [rw("rcrbBaseHigh", 0, 31)]),
} as const;

// DVSEC id 8: Register Locator (CXL r2.0 §8.1.9). Entries of 8 bytes from +0x0C.
export const REGISTER_LOCATOR_FIRST_ENTRY = 0x0c;
export const REGISTER_LOCATOR_ENTRY = {
  low: reg("registerBlockLow", 0, 4, [ro("bir", 0, 2), ro("blockId", 8, 15), ro("offsetLow", 16, 31)]),
  high: reg("registerBlockHigh", 4, 4, [ro("offsetHigh", 0, 31)]),
} as const;
export const REGISTER_BLOCK_ID = {
  empty: 0,
  component: 1,
  barVirtualizationAcl: 2,
  memoryDevice: 3,
  cpmu: 4,
} as const;

// ---------------------------------------------------------------------------------------------------------
// Component registers (CXL r2.0 §8.2.4, §8.2.5). Offsets relative to the 64 KiB component block.
export const COMPONENT_BLOCK_SIZE = 0x10000;
export const CACHE_MEM_OFFSET = 0x1000;
export const CACHE_MEM_ARRAY_HEADER = reg("cacheMemCapabilityHeader", 0, 4, [
  ro("capabilityId", 0, 15), // 0x0001 = CXL capability
  ro("version", 16, 19),
  ro("cacheMemVersion", 20, 23),
  ro("arraySize", 24, 31),
]);
export const CACHE_MEM_CAP_HEADER = reg("cacheMemCapability", 0, 4, [
  ro("capabilityId", 0, 15),
  ro("version", 16, 19),
  ro("pointer", 20, 31),
]);
export const CACHE_MEM_CAP_ID = {
  cxl: 1,
  ras: 2,
  security: 3,
  link: 4,
  hdmDecoder: 5,
  extSecurity: 6,
  ide: 7,
} as const;

// HDM Decoder capability (CXL r2.0 §8.2.5.12). Offsets relative to the capability.
export const HDM = {
  capability: reg("hdmCapability", 0x00, 4, [
    ro("decoderCount", 0, 3),
    ro("targetCount", 4, 7),
    ro("a11to8InterleaveCapable", 8),
    ro("a14to12InterleaveCapable", 9),
    ro("poisonOnDecodeErrorCapable", 10),
    ro("threeSixTwelveWayCapable", 11), // r3.x
    ro("sixteenWayCapable", 12), // r3.x
  ]),
  globalControl: reg("hdmGlobalControl", 0x04, 4, [
    rw("poisonOnDecodeErrorEnable", 0),
    rw("hdmDecoderEnable", 1),
  ]),
} as const;

export const HDM_DECODER_FIRST = 0x10;
export const HDM_DECODER_STRIDE = 0x20;

/** Registers of one decoder, offsets relative to the decoder (HDM cap + 0x10 + n*0x20). */
export const HDM_DECODER = {
  baseLow: reg("baseLow", 0x00, 4, [dl("memoryBaseLow", 28, 31)]),
  baseHigh: reg("baseHigh", 0x04, 4, [dl("memoryBaseHigh", 0, 31)]),
  sizeLow: reg("sizeLow", 0x08, 4, [dl("memorySizeLow", 28, 31)]),
  sizeHigh: reg("sizeHigh", 0x0c, 4, [dl("memorySizeHigh", 0, 31)]),
  control: reg("control", 0x10, 4, [
    dl("interleaveGranularity", 0, 3),
    dl("interleaveWays", 4, 7),
    dl("lockOnCommit", 8),
    dl("commit", 9),
    ro("committed", 10),
    ro("errorNotCommitted", 11),
    dl("targetDeviceType", 12),
  ]),
  // Devices: DPA Skip; ports: Target List (same offsets).
  dpaSkipLow: reg("dpaSkipLow", 0x14, 4, [dl("dpaSkipLow", 28, 31)]),
  dpaSkipHigh: reg("dpaSkipHigh", 0x18, 4, [dl("dpaSkipHigh", 0, 31)]),
} as const;

/** Decoder count encoding (HDM Capability 3:0): 0→1, n→2n up to 8→16; r3.0: 9→20 … 12→32; else reserved. */
export function decodeDecoderCount(code: number): number | null {
  if (code === 0) return 1;
  if (code >= 1 && code <= 8) return code * 2;
  if (code >= 9 && code <= 12) return 20 + (code - 9) * 4;
  return null;
}

export function encodeDecoderCount(count: number): number {
  for (let c = 0; c <= 12; c++) if (decodeDecoderCount(c) === count) return c;
  throw new RangeError(`no HDM decoder count encoding for ${count} decoders`);
}

/** 256 MiB: HDM decoder base/size granularity and alignment. */
export const HDM_ALIGN = 0x1000_0000n;
/** Interleave ways encoding (Control 7:4). */
export const INTERLEAVE_WAYS: Readonly<Record<number, number>> = {
  0: 1,
  1: 2,
  2: 4,
  3: 8,
  4: 16,
  8: 3,
  9: 6,
  10: 12,
};
