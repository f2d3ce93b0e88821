// The shapes the guest checks record (services/lab/guest/checks/*), as the tests read them back from JSON.
// 64-bit values arrive as "0x…" strings.

import type { GateResult } from "../../machines/policy/types.ts";
import type { Mismatch } from "../../services/agent/ops/compare.ts";
import type {
  BindResult,
  InventoryResult,
  ProbeResult,
  ResetResult,
  RestoreResult,
  VerifyResult,
} from "../../services/agent/ops/index.ts";
import type { DeviceState } from "../../services/lab/guest/device-state.ts";
import type { DecoderReadback } from "../../services/lab/guest/firmware.ts";
import type { LabEvent } from "../../services/lab/guest/lab-context.ts";
import type { LabError } from "../../services/lab/protocol.ts";
import type { Holder } from "../../shared/hw/backend.ts";

export type { DecoderReadback, DeviceState, LabEvent, Mismatch };

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: LabError };

export interface Range {
  base: string;
  size: string;
}

export interface SysfsFacts {
  bdf: string;
  vendorId: number;
  deviceId: number;
  headerType: number;
  driver: string | null;
  iommuGroup: number | null;
  resetMethods: string[];
  parent: string | null;
  configBytes: number;
}

export interface ImageSummary {
  bdf: string;
  checksum: string;
  command: string;
  dvsecControl: { raw: string; memEnable: boolean } | null;
  decoders: { index: number; registers: Record<string, { raw: string }> }[];
}

export interface InventoryProbeRec {
  inventory: InventoryResult;
  sysfs: SysfsFacts[];
  cxlBus: string[];
  probes: {
    bdf: string;
    driver: string | null;
    configHex: string;
    backendConfigHex: string;
    probe: ProbeResult;
    unbound: Outcome<ProbeResult>;
    rebind: Outcome<BindResult>;
    driverAtEnd: string | null;
  }[];
}

export interface BarAfterRebindRec {
  bdf: string;
  unboundRead: DecoderReadback;
  driverBound: string | null;
  boundRead: Outcome<DecoderReadback>;
  driverUnbound: string | null;
  unboundAgain: Outcome<DecoderReadback>;
  driverAtEnd: string | null;
}

export interface FlrRec {
  bdf: string;
  flrCapable: boolean | null;
  resetMethods: string[];
  driver: string | null;
  reset: Outcome<ResetResult>;
  configUnchanged: boolean;
  events: LabEvent[];
}

export interface KernelResetRec {
  bdf: string;
  start: DeviceState;
  resetMethods: string[];
  unbound: DeviceState;
  range: Range;
  firmware: DecoderReadback;
  beforeSysfsReset: DeviceState;
  afterSysfsReset: DeviceState;
  headerBeforeAfterSysfsReset: [string, string];
  firmwareAgain: DecoderReadback;
  image: ImageSummary;
  reset: ResetResult;
  afterReset: DecoderReadback[];
  restore: RestoreResult;
  verify: VerifyResult;
  final: DeviceState;
  resetMethodsAfter: string[];
  events: LabEvent[];
}

export interface BusResetRec {
  bdf: string;
  start: DeviceState;
  range: Range;
  firmware: DecoderReadback;
  outcome: {
    outcome: string;
    plan?: {
      method: string;
      scope: string;
      bridge: string | null;
      targets: string[];
      committedDecoders: number[];
    };
    message?: string;
  };
  events: { source?: string; kind: string; bdf: string | null; data: Record<string, unknown> }[];
  final: DeviceState;
}

export interface VfioRec {
  bdf: string;
  start: DeviceState;
  original: string | null;
  vfioDriver: string | null;
  bind: BindResult;
  driverAfterBind: string | null;
  firmware: DecoderReadback;
  image: ImageSummary;
  resetMethodsDuringReset?: string[];
  reset?: ResetResult;
  afterReset?: DecoderReadback[];
  restore?: RestoreResult;
  tampered?: { register: string; before: string; written: string };
  verify?: VerifyResult;
  beforeRebind: DeviceState;
  resetMethodsAtEnd: string[];
  rebind?: BindResult;
  rebindError?: LabError;
  driverAtEnd: string | null;
  end: DeviceState;
  events: LabEvent[];
  cycle: "completed" | "failed";
  cycleError?: LabError;
}

export interface HoldersRec {
  bdf: string;
  heldPaths: string[];
  holderPid: number;
  holdersWhileHeld: Holder[];
  gateWhileHeld: GateResult;
  vfioResetWhileHeld: Outcome<ResetResult>;
  holdersAfter: Holder[];
  gateAfter: GateResult;
  rebind: BindResult;
  driverAtEnd: string | null;
}

export interface MemEnableRec {
  bdf: string;
  bound: DeviceState;
  probeBound: { memEnabled: boolean | undefined; componentUnreadable: string | undefined };
  saveBound: Outcome<unknown>;
  unbound: DeviceState;
  imageBeforeUnbind: ImageSummary;
  verify: VerifyResult;
  restore: RestoreResult;
  verifyAfterRestore: VerifyResult;
  restored: DeviceState;
  firmware: DeviceState;
  fwImage: ImageSummary;
  fwBind: BindResult;
  fwBound: DeviceState["dvsecControl"];
  fwUnbound: DeviceState;
  fwVerify: VerifyResult;
  driverAtEnd: string | null;
}

export interface BridgeView {
  bdf: string;
  vendorId: string;
  command: string;
  primaryBus: number;
  secondaryBus: number;
  subordinateBus: number;
  memoryBase: string;
  memoryLimit: string;
  bridgeControl: string;
}

export interface SwitchTopologyRec {
  rootPort: string;
  upstream: string;
  downstream: string[];
  devices: string[];
}

export interface SbrRootPortRec {
  topology: SwitchTopologyRec;
  firmware: DecoderReadback[];
  plan: string[];
  before: { bridges: BridgeView[]; devices: DeviceState[]; unmaskSbr: boolean | null };
  images: ImageSummary[];
  reset: ResetResult;
  afterReset: { bridges: BridgeView[]; deviceVendorIds: string[]; unmaskSbr: boolean | null };
  kernelLogAfterReset: string[];
  devicesBehindRestoredPorts: { bdf: string; vendorId: string; command: string; bar0: string }[];
  restores: { bdf: string; scope: "io" | "full"; result: Outcome<RestoreResult> }[];
  verifies: VerifyResult[];
  after: { bridges: BridgeView[]; devices: DeviceState[] };
  events: LabEvent[];
}

export interface SbrDownstreamRec {
  target: string;
  untouched: string;
  firmware: DecoderReadback[];
  before: DeviceState[];
  unmaskSbrBefore: boolean | null;
  reset: ResetResult;
  unmaskSbrAfter: boolean | null;
  afterReset: DeviceState[];
  afterPciRestore: DeviceState;
  restore: RestoreResult;
  verifyTarget: VerifyResult;
  verifyUntouched: VerifyResult;
  after: DeviceState[];
  rebinds: Outcome<BindResult>[];
  driversAtEnd: (string | null)[];
  events: LabEvent[];
}

/** The decoders of a state, failing clearly when they could not be read. */
export function decodersOf(s: DeviceState): DecoderReadback[] {
  if (!Array.isArray(s.decoders)) throw new Error(`${s.bdf}: decoders unreadable: ${s.decoders.unreadable}`);
  return s.decoders;
}

export const kinds = (events: LabEvent[]) => events.map((e) => e.kind);
