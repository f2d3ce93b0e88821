// decodeConfigSpace: one config space image (64, 256 or 4096 bytes) → the JSON-ready object `cxlrc decode
// --json` prints. Pure and allocation-light: one DataView, no regular expressions.
import {
  type CapabilityWalk,
  checkConfigSize,
  findPcieCapability,
  type PcieCapability,
  viewOf,
  walkCapabilities,
} from "./capabilities.ts";
import {
  type DecodedCxlDevice,
  type DecodedPortExtensions,
  type DecodedRegisterLocator,
  decodeCxlDevice,
  decodeDvsecHeader,
  decodePortExtensions,
  decodeRegisterLocator,
  dvsecName,
} from "./dvsec.ts";
import { hex } from "./regdef.ts";
import { CXL_DVSEC_ID, CXL_DVSEC_VENDOR, PCI, PCI_EXT_CAP_ID_DVSEC } from "./registers.ts";

export interface DecodedDvsecHeader {
  /** DVSEC vendor id, lowercase hex ("0x1e98" for CXL). */
  vendor: string;
  id: number;
  revision: number;
  length: number;
  /** Name of a known CXL DVSEC, null for any other. */
  name: string | null;
}

export interface DecodedExtCapability {
  offset: string;
  id: number;
  version: number;
  /** Human name of the capability id ("Designated Vendor-Specific", "Data Object Exchange"…). */
  name: string;
  /** The DVSEC header when id is 0x23, else null. Unknown DVSECs are listed too, never dropped. */
  dvsec: DecodedDvsecHeader | null;
}

export interface DecodedStdCapability {
  offset: string;
  id: number;
  name: string;
}

export interface DecodedConfig {
  bdf: string | null;
  vendorId: string;
  deviceId: string;
  /** 24-bit class code (base class, subclass, programming interface). */
  classCode: string;
  revisionId: number;
  /** Header layout (0 endpoint, 1 bridge); bit 7 multi-function is in headerMultiFunction. */
  headerType: number;
  headerMultiFunction: boolean;
  /** Size of the image decoded: 64, 256 or 4096. */
  configSize: number;
  /**
   * PCIe Device Capabilities bit 28. False when the device has no PCI Express capability; null when the
   * image (a 64-byte `lspci -x` dump) ends before the capability list, so the answer is not in the data.
   */
  flrCapable: boolean | null;
  pcie: PcieCapability | null;
  capabilities: DecodedStdCapability[];
  /** False when the image ends before the standard list does (64-byte dumps). */
  capabilitiesComplete: boolean;
  extendedCapabilities: DecodedExtCapability[];
  /** The first PCIe DVSEC for CXL Devices (id 0), decoded. */
  cxlDevice: DecodedCxlDevice | null;
  /** The first Register Locator DVSEC (id 8). */
  registerLocator: DecodedRegisterLocator | null;
  /** The first CXL Extensions DVSEC for Ports (id 3): root and switch ports. */
  portExtensions: DecodedPortExtensions | null;
}

export interface DecodeOptions {
  /** Device address to report, when the caller knows it (sysfs path, dump header). */
  bdf?: string | null;
}

const STD_CAP_NAMES: Readonly<Record<number, string>> = {
  1: "Power Management",
  5: "MSI",
  9: "Vendor Specific Information",
  13: "Subsystem ID",
  16: "Express",
  17: "MSI-X",
  18: "SATA HBA",
  19: "PCI Advanced Features",
  20: "Enhanced Allocation",
};

const EXT_CAP_NAMES: Readonly<Record<number, string>> = {
  0: "Null",
  1: "Advanced Error Reporting",
  2: "Virtual Channel",
  3: "Device Serial Number",
  4: "Power Budgeting",
  5: "Root Complex Link",
  11: "Vendor Specific Information",
  13: "Access Control Services",
  14: "Alternative Routing-ID Interpretation (ARI)",
  15: "Address Translation Service (ATS)",
  16: "Single Root I/O Virtualization (SR-IOV)",
  18: "Multicast",
  19: "Page Request Interface (PRI)",
  21: "Resizable BAR",
  23: "Transaction Processing Hints",
  24: "Latency Tolerance Reporting",
  25: "Secondary PCI Express",
  27: "Process Address Space ID (PASID)",
  29: "Downstream Port Containment",
  30: "L1 PM Substates",
  31: "Precision Time Measurement",
  35: "Designated Vendor-Specific",
  37: "Data Link Feature",
  38: "Physical Layer 16.0 GT/s",
  39: "Lane Margining at the Receiver",
  42: "Physical Layer 32.0 GT/s",
  46: "Data Object Exchange",
};

export function stdCapabilityName(id: number): string {
  return STD_CAP_NAMES[id] ?? `Capability ID ${hex(id, 2)}`;
}

export function extCapabilityName(id: number): string {
  return EXT_CAP_NAMES[id] ?? `Extended Capability ID ${hex(id)}`;
}

/**
 * Decode a config space image. Throws CxlrcError("decode") for a size other than 64/256/4096, a looping
 * or out-of-range capability list, or a CXL DVSEC too short for its registers.
 */
export function decodeConfigSpace(bytes: Uint8Array, opts: DecodeOptions = {}): DecodedConfig {
  checkConfigSize(bytes);
  const dv = viewOf(bytes);
  const walk: CapabilityWalk = walkCapabilities(bytes);
  const pcie = findPcieCapability(bytes, walk.standard);
  const header = dv.getUint8(PCI.headerType.offset);

  const extendedCapabilities: DecodedExtCapability[] = [];
  let cxlDevice: DecodedCxlDevice | null = null;
  let registerLocator: DecodedRegisterLocator | null = null;
  let portExtensions: DecodedPortExtensions | null = null;
  for (const cap of walk.extended) {
    let dvsec: DecodedDvsecHeader | null = null;
    if (cap.id === PCI_EXT_CAP_ID_DVSEC) {
      const h = decodeDvsecHeader(bytes, cap.offset);
      dvsec = {
        vendor: hex(h.vendor, 4),
        id: h.id,
        revision: h.revision,
        length: h.length,
        name: dvsecName(h),
      };
      if (h.vendor === CXL_DVSEC_VENDOR) {
        if (h.id === CXL_DVSEC_ID.device && !cxlDevice) cxlDevice = decodeCxlDevice(bytes, cap.offset);
        else if (h.id === CXL_DVSEC_ID.registerLocator && !registerLocator) {
          registerLocator = decodeRegisterLocator(bytes, cap.offset);
        } else if (h.id === CXL_DVSEC_ID.portExtensions && !portExtensions) {
          portExtensions = decodePortExtensions(bytes, cap.offset);
        }
      }
    }
    extendedCapabilities.push({
      offset: hex(cap.offset),
      id: cap.id,
      version: cap.version,
      name: extCapabilityName(cap.id),
      dvsec,
    });
  }

  return {
    bdf: opts.bdf ?? null,
    vendorId: hex(dv.getUint16(PCI.vendorId.offset, true), 4),
    deviceId: hex(dv.getUint16(PCI.deviceId.offset, true), 4),
    classCode: hex(dv.getUint32(PCI.classRevision.offset, true) >>> 8, 6),
    revisionId: dv.getUint8(PCI.classRevision.offset),
    headerType: header & 0x7f,
    headerMultiFunction: (header & 0x80) !== 0,
    configSize: bytes.length,
    flrCapable: pcie ? pcie.flrCapable : walk.standardComplete ? false : null,
    pcie,
    capabilities: walk.standard.map((c) => ({
      offset: hex(c.offset),
      id: c.id,
      name: stdCapabilityName(c.id),
    })),
    capabilitiesComplete: walk.standardComplete,
    extendedCapabilities,
    cxlDevice,
    registerLocator,
    portExtensions,
  };
}
