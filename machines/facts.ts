// What the reset policy knows about a device and what a caller asks for. Small and independent of the
// probe's wire format: the coordinator maps the agent's ProbeResult onto DeviceFacts.
import type { Scope } from "../shared/bus/agent-messages.ts";
import type { Holder } from "../shared/hw/backend.ts";

/** One HDM decoder as the device reports it before the reset. Addresses are hex strings ("0x..."). */
export interface DecoderFact {
  index: number;
  /** Host physical base, hex. */
  base: string;
  /** Size in bytes, hex. */
  size: string;
  committed: boolean;
  lockOnCommit: boolean;
}

/** A host physical address range that is online (claimed by the kernel's memory or a driver). */
export interface AddressRange {
  /** Hex, inclusive start. */
  base: string;
  /** Hex, bytes. */
  size: string;
}

/** The bridge (root or downstream port) directly above the device: the one a secondary bus reset goes through. */
export interface BridgeFact {
  bdf: string;
  /** A CXL root or downstream port: it masks SBR unless Unmask SBR is set (reset-rules: cxl_bus). */
  cxlPort: boolean;
  /** The switch the port belongs to, when there is one (concurrency is limited per switch). */
  switchId?: string;
}

export interface DeviceFacts {
  host: string;
  /** The device's address as requested (usually function 0). */
  bdf: string;
  /** Every function of the device; function 0's DVSEC carries CXL Reset, which resets them all. */
  functions: string[];
  flrCapable: boolean;
  cxlResetCapable: boolean;
  /** Declared CXL Reset Timeout, decoded. For a reserved encoding (5-7) the mapper sets 100 s and the flag. */
  cxlResetTimeoutMs: number;
  cxlResetTimeoutReserved: boolean;
  cacheCapable: boolean;
  cacheEnabled: boolean;
  /** Cache Writeback and Invalidate Capable. */
  wbInvCapable: boolean;
  /** CXL Reset Mem Clr Capable. */
  memClrCapable: boolean;
  /** DVSEC Lock.CONFIG_LOCK: the RWL fields (DVSEC Control, Range Base) are read-only until a conventional reset. */
  configLock: boolean;
  decoders: DecoderFact[];
  /** Online host memory ranges that may overlap the device's committed decoders. */
  memoryOnline: AddressRange[];
  /** Whatever keeps the device in use (open VFIO group, driver in use, process, online memory). */
  holders: Holder[];
  bridge: BridgeFact | null;
  /** Functions below the same bridge that are not part of this device. */
  siblings: string[];
  /** Holders of the siblings, when known (a plan that includes siblings resets them too). */
  siblingHolders?: Record<string, Holder[]>;
  /** sysfs reset_method, in the kernel's order. */
  kernelResetMethods: string[];
  /** Bound to vfio-pci: VFIO_DEVICE_RESET is available. */
  vfioBound: boolean;
  /** The driver bound to the device's function (null: none; absent: not known). */
  driver?: string | null;
  /** The driver that holds each function of the device (the backend reports it as a holder), by BDF. */
  functionDrivers?: Record<string, string>;
}

/** The explicit full-scope methods a caller may name. */
export type FullResetMethod = "cxl" | "sbr" | "vfio";

export interface ResetRequest {
  requestId: string;
  host: string;
  bdf: string;
  scope: Scope;
  /** io scope only: move to full scope when the function has no FLR (never silently). */
  allowEscalation?: boolean;
  /** CXL Reset Mem Clr Enable. */
  memClear?: boolean;
  reason: string;
  /** ISO time after which the request must not start. */
  deadline?: string;
  /** Plan only: compute scope, method, siblings, gates and deadlines; touch nothing. */
  dryRun?: boolean;
  /** Explicit full-scope method; honoured or refused with a reason. */
  method?: FullResetMethod;
  /** SBR: siblings below the bridge join the plan (each saved and restored) instead of refusing. */
  includeSiblings?: boolean;
}
