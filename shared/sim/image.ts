// Power-on images: the register values a function has right after a power-on (cold) reset. Resets copy
// registers back from these; firmware (boot) and software then program them.
import { encodeRegister } from "../cxl/regdef.ts";
import {
  CACHE_MEM_CAP_ID,
  CXL_DVSEC_ID,
  CXL_DVSEC_VENDOR,
  cxlRange,
  encodeDecoderCount,
  PCI_CAP_ID_EXP,
  PCI_EXT_CAP_ID_DVSEC,
  REGISTER_BLOCK_ID,
} from "../cxl/registers.ts";
import { parseBdf } from "../hw/backend.ts";
import {
  bridgeLayout,
  componentLayout,
  DVSEC_CXL_DEVICE_LENGTH,
  DVSEC_PORT_EXT_LENGTH,
  endpointLayout,
  FIRST_EXT_CAP,
  HDM_CAP_POINTER,
  PCIE_CAP_OFFSET,
  RAS_CAP_POINTER,
  REGISTER_LOCATOR_LENGTH,
  REGISTER_LOCATOR_OFFSET,
} from "./layouts.ts";
import { type BridgeModel, type EndpointModel, PORT_TYPE } from "./model.ts";
import type { Layout } from "./regfile.ts";
import { poke, store } from "./regfile.ts";

type Values = Record<string, number | boolean>;

/** Set a register from field values: the layout names it, regdef encodes it. */
function set(buf: Uint8Array, layout: Layout, name: string, values: Values): void {
  const p = layout.reg(name);
  poke(buf, layout, p, encodeRegister(p.def, values));
}

const extHeader = (id: number, next: number) => (id | (1 << 16) | (next << 20)) >>> 0;
/** PCIe power-on Device Control: Relaxed Ordering, No Snoop, Max Read Request 512 B (PCIe §7.5.3.4). */
const DEV_CTL_DEFAULTS: Values = { relaxedOrdering: 1, noSnoop: 1, maxReadRequestSize: 2 };

function pcieCap(buf: Uint8Array, l: Layout, portType: number, flr: boolean): void {
  store(buf, l, PCIE_CAP_OFFSET, 2, PCI_CAP_ID_EXP); // next pointer 0: the only capability
  set(buf, l, "pcie.pcieCapabilities", { version: 2, portType });
  set(buf, l, "pcie.devCap", { maxPayloadSupported: 2, extendedTagSupported: 1, flrCapable: flr });
  set(buf, l, "pcie.devCtl", DEV_CTL_DEFAULTS);
}

export function endpointConfigImage(m: EndpointModel): Uint8Array {
  const l = endpointLayout(m.cxl, m.barSize);
  const buf = new Uint8Array(l.size);
  const d = m.device;
  set(buf, l, "pci.vendorId", { vendorId: d.vendorId });
  set(buf, l, "pci.deviceId", { deviceId: d.deviceId });
  set(buf, l, "pci.status", { capabilitiesList: 1 });
  set(buf, l, "pci.classRevision", { revisionId: 1, classCode: m.classCode });
  set(buf, l, "pci.headerType", { layout: 0, multiFunction: m.multiFunction });
  set(buf, l, "pci.capPtr", { capPtr: PCIE_CAP_OFFSET });
  set(buf, l, "pci.interruptPin", { interruptPin: 1 });
  set(buf, l, "pci.bar0", { type: 2 }); // 64-bit, non-prefetchable memory
  pcieCap(buf, l, 0, m.flr);
  if (!m.cxl) return buf;

  store(buf, l, FIRST_EXT_CAP, 4, extHeader(PCI_EXT_CAP_ID_DVSEC, REGISTER_LOCATOR_OFFSET));
  set(buf, l, "dvsec.dvsecHeader1", {
    vendor: CXL_DVSEC_VENDOR,
    revision: 2,
    length: DVSEC_CXL_DEVICE_LENGTH,
  });
  set(buf, l, "dvsec.dvsecHeader2", { id: CXL_DVSEC_ID.device });
  const owner = m.cxlResetOwner;
  set(buf, l, "dvsec.capability", {
    cacheCapable: d.cacheCapable,
    ioCapable: 1,
    memCapable: d.memCapable,
    memHwInitMode: d.memHwInitMode,
    hdmCount: d.ranges.length,
    cacheWbInvCapable: d.cacheWbInvCapable,
    cxlResetCapable: owner,
    cxlResetTimeout: owner ? d.cxlResetTimeout : 0,
    cxlResetMemClrCapable: owner && d.memClrCapable,
  });
  set(buf, l, "dvsec.control", { ioEnable: 1 });
  d.ranges.forEach((r, i) => {
    const regs = cxlRange((i + 1) as 1 | 2);
    set(buf, l, `dvsec.${regs.sizeHigh.name}`, { memorySizeHigh: Number(r.size >> 32n) });
    set(buf, l, `dvsec.${regs.sizeLow.name}`, {
      memInfoValid: 1,
      memActive: 1,
      mediaType: r.mediaType,
      memoryClass: r.memoryClass,
      memActiveTimeout: r.memActiveTimeout,
      memorySizeLow: Number((r.size >> 28n) & 0xfn),
    });
  });
  store(buf, l, REGISTER_LOCATOR_OFFSET, 4, extHeader(PCI_EXT_CAP_ID_DVSEC, 0));
  set(buf, l, "locator.dvsecHeader1", {
    vendor: CXL_DVSEC_VENDOR,
    revision: 0,
    length: REGISTER_LOCATOR_LENGTH,
  });
  set(buf, l, "locator.dvsecHeader2", { id: CXL_DVSEC_ID.registerLocator });
  set(buf, l, "locator.entry0Low", {
    bir: 0,
    blockId: REGISTER_BLOCK_ID.component,
    offsetLow: d.componentOffset >>> 16,
  });
  return buf;
}

export function componentImage(decoderCount: number): Uint8Array {
  const l = componentLayout(decoderCount);
  const buf = new Uint8Array(l.size);
  set(buf, l, "cachemem.header", {
    capabilityId: CACHE_MEM_CAP_ID.cxl,
    version: 1,
    cacheMemVersion: 1,
    arraySize: 2,
  });
  set(buf, l, "cachemem.cap1", { capabilityId: CACHE_MEM_CAP_ID.ras, version: 2, pointer: RAS_CAP_POINTER });
  set(buf, l, "cachemem.cap2", {
    capabilityId: CACHE_MEM_CAP_ID.hdmDecoder,
    version: 1,
    pointer: HDM_CAP_POINTER,
  });
  set(buf, l, "hdm.hdmCapability", { decoderCount: encodeDecoderCount(decoderCount), targetCount: 0 });
  return buf;
}

export function bridgeConfigImage(m: BridgeModel): Uint8Array {
  const s = m.spec;
  const l = bridgeLayout(s.cxl);
  const buf = new Uint8Array(l.size);
  set(buf, l, "pci.vendorId", { vendorId: s.vendorId });
  set(buf, l, "pci.deviceId", { deviceId: s.deviceId });
  set(buf, l, "pci.status", { capabilitiesList: 1 });
  set(buf, l, "pci.classRevision", { revisionId: 1, classCode: 0x060400 });
  set(buf, l, "pci.headerType", { layout: 1 });
  set(buf, l, "pci.capPtr", { capPtr: PCIE_CAP_OFFSET });
  // Bus numbers: the model routes by BDF and keeps the enumerated numbers (the kernel restores them anyway).
  set(buf, l, "bridge.primaryBus", { primaryBus: parseBdf(m.bdf).bus });
  set(buf, l, "bridge.secondaryBus", { secondaryBus: s.secondaryBus });
  set(buf, l, "bridge.subordinateBus", { subordinateBus: m.subordinateBus });
  pcieCap(buf, l, PORT_TYPE[s.kind], false);
  if (s.cxl) {
    store(buf, l, FIRST_EXT_CAP, 4, extHeader(PCI_EXT_CAP_ID_DVSEC, 0));
    set(buf, l, "port.dvsecHeader1", {
      vendor: CXL_DVSEC_VENDOR,
      revision: 0,
      length: DVSEC_PORT_EXT_LENGTH,
    });
    set(buf, l, "port.dvsecHeader2", { id: CXL_DVSEC_ID.portExtensions });
  }
  return buf;
}

/** Registers a conventional reset leaves alone on a bridge (see bridgeConfigImage). */
export const BRIDGE_KEPT = new Set(["bridge.primaryBus", "bridge.secondaryBus", "bridge.subordinateBus"]);
