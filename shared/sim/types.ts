// The simulator's public contract: a HardwareBackend with fault injection, boot and snapshots.

import type { Clock, HardwareBackend } from "../hw/backend.ts";
import type { KernelCxlView } from "../hw/kernel-cxl.ts";
import type { FaultApi } from "./faults.ts";
import type { SimTimings } from "./fleet-schema.ts";

export interface SimHostOptions {
  /** Default: a new VirtualClock. Use realClock (shared/hw/backend.ts) for a live demo. */
  clock?: Clock;
  /** Timings for every device; the host spec's timings and then each device's own override these. */
  timings?: Partial<SimTimings>;
}

/** What happened to one function, for tests (the registers show the rest). */
export interface SimCounters {
  flr: number;
  /** CXL Resets that completed (function 0 counts; every function's CXL state was reset). */
  cxlReset: number;
  /** Secondary bus resets (and power-on style resets) that reached this function. */
  conventionalReset: number;
  /** CXL Resets with Mem Clr Enable on a Mem Clr capable device: the device memory was cleared. */
  memCleared: number;
  cacheFlushes: number;
  /** Decoder commits that reached Committed. */
  commits: number;
}

export interface SimSnapshot {
  /** 4096 bytes of config space as the device holds it (no not-ready masking). */
  config: Uint8Array;
  /** The 64 KiB component block (all zero for a function without one). */
  component: Uint8Array;
}

export interface SimHost extends HardwareBackend {
  readonly kind: "sim";
  readonly name: string;
  readonly faults: FaultApi;
  /** Host boot: every function to power-on defaults, then firmware (BARs, decoders, Mem_Enable, lock…). */
  boot(): void;
  snapshot(bdf: string): SimSnapshot;
  counters(bdf: string): SimCounters;
  /** Register names usable by the bit-flip fault, e.g. "dvsec.control", "decoder0.baseLow". */
  registerNames(bdf: string): string[];
  kernelReset(bdf: string, method: string): Promise<void>;
  vfioReset(bdf: string): Promise<void>;
  bindDriver(bdf: string, driver: string | null, opts?: { override?: string | null }): Promise<string | null>;
  driverOverride(bdf: string): Promise<string | null>;
  cxlView(bdf: string): Promise<KernelCxlView | null>;
}
