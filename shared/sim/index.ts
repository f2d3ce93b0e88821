// cxlrc device simulator: strict CXL Type-2 devices behind the HardwareBackend interface, with fault injection.
//
// Default addresses (simpleHost): root port 0000:00:01.0 (CXL port, SBR masked, secondary bus 1) and the
// device 0000:01:00.0 (component block at BAR0 + 0x10000, HDM decoder capability at block + 0x1000 + 0x100).
// Config space per function: PCIe capability at 0x40, DVSEC id 0 at 0x100, Register Locator (DVSEC 8) at
// 0x140; bridges: DVSEC id 3 at 0x100 when `cxl`. Everything beyond reads zero.
//
// Time: every delay is a named option in SimTimings (commitDelayMs, notReadyMs, cxlResetDurationMs,
// cxlResetNoTouchMs, cacheFlushDelayMs), evaluated lazily from clock.now() on access (no timers). Precedence:
// defaults < host spec timings < createSimHost opts.timings < device spec timings.
//
// Model choices where the spec leaves room (strict on purpose):
// - CONFIG_LOCK survives CXL Reset (cleared only by a conventional reset: SBR, VFIO full scope, boot), and so
//   do the RWL fields it locks; without the lock CXL Reset returns DVSEC Control and Range Bases to defaults.
// - Decoders: a committed (or committing) decoder ignores every write but Commit = 0; Lock On Commit +
//   Committed ignores that too. Decommit out of order (n while n+1 is committed) is ignored: Commit reads 1.
//   Decommit takes commitDelayMs like commit. Base/size alignment holds by construction (bits 27:0 reserved).
// - Initiate Cache WB+I needs Disable Caching set (same write or before); Cache Invalid reads 0 once Disable
//   Caching is cleared. Control2 is not reset by CXL Reset (software clears Disable Caching afterwards).
// - CXL Reset is started from function 0 only; all functions read all-ones for cxlResetNoTouchMs.
// - MMIO decodes only with Memory Space on and BAR0/1 holding the address assigned at boot; else all-ones.
// - SBR: bridges below keep their bus numbers (the model routes by BDF); a bridge is not reset by its own SBR.
// - kernelReset: "bus"/"cxl_bus" are listed only for a function alone on its bus (pci_parent_bus_reset);
//   "bus" under a CXL port with SBR masked fails "unsupported" (-ENOTTY); "cxl_bus" unmasks for the reset.
// - vfioReset: the first usable method, PCI save/restore, then the function's CXL state wiped incl. CONFIG_LOCK.
export { SIMPLE_DEVICE, SIMPLE_ROOT_PORT, type SimpleHostOptions, simpleHost } from "./builders.ts";
export { VirtualClock } from "./clock.ts";
export { type FaultApi, type FaultName, FaultSpec } from "./faults.ts";
export {
  type BridgeSpec,
  DEFAULT_TIMINGS,
  type DeviceSpec,
  type DeviceSpecInput,
  type Fleet,
  type FleetInput,
  FleetSchema,
  type FunctionSpec,
  HostSchema,
  type HostSpec,
  type HostSpecInput,
  type SimTimings,
  TimingsSchema,
} from "./fleet-schema.ts";
export { createSimHost } from "./host.ts";
export { defaultFleet, loadFleet, parseHost } from "./load.ts";
export type { SimCounters, SimHost, SimHostOptions, SimSnapshot } from "./types.ts";
