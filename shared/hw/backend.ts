// The one interface every hardware backend implements (sysfs on real machines, the simulator, QEMU).
// The agent's operations (probe, save, reset, restore, verify...) are written once against it.
//
// Addresses are PCI BDFs in the kernel's sysfs form "DDDD:BB:DD.F" (lowercase hex).
// All register access is async: the sim answers at once, sysfs through koffi, QEMU over a socket.

import type { KernelCxlView } from "./kernel-cxl.ts";

export type Width = 1 | 2 | 4;

/** Time source. The simulator's virtual clock advances on sleep() without waiting; the others use real time. */
export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

/** Something that keeps a device in use: a full-scope reset must not run while one exists. */
export interface Holder {
  kind: "driver" | "vfio-group" | "resource" | "process" | "memory-online";
  /** e.g. driver name, "/dev/vfio/12", "resource0", "pid 1234 (qemu)", "0x100000000-0x10fffffff". */
  detail: string;
  pid?: number;
}

export interface PciFunctionInfo {
  bdf: string;
  vendorId: number;
  deviceId: number;
  classCode: number;
  /** Header layout: 0 endpoint, 1 bridge. */
  headerType: 0 | 1;
  multiFunction: boolean;
  /** BDF of the bridge (root/downstream port) directly above, or null at the top. */
  parent: string | null;
  /** For bridges: the bus range below. */
  secondaryBus?: number;
  subordinateBus?: number;
  /** Bound driver name, or null. */
  driver: string | null;
  iommuGroup: number | null;
  /** Kernel reset methods (sysfs reset_method), in the kernel's order; [] when unknown. */
  resetMethods: string[];
}

/** Methods the backend can perform itself, beyond register writes the operations do generically. */
export interface BackendCapabilities {
  /** The kernel's reset file (`reset_method` + `reset`). */
  kernelReset: boolean;
  /** VFIO_DEVICE_RESET on a vfio-pci bound device. */
  vfioReset: boolean;
  /** driver_override / unbind / drivers_probe. */
  bind: boolean;
  /** Fault injection (simulated backends only). */
  faults: boolean;
}

export interface HardwareBackend {
  readonly kind: "sysfs" | "sim" | "qemu";
  readonly clock: Clock;
  readonly capabilities: BackendCapabilities;

  /** Every PCI function the backend can see (devices and bridges). */
  listFunctions(): Promise<PciFunctionInfo[]>;

  /** Config space access; a function that is absent or not ready reads all-ones. Offsets must be width-aligned. */
  configRead(bdf: string, offset: number, width: Width): Promise<number>;
  configWrite(bdf: string, offset: number, width: Width, value: number): Promise<void>;
  /** Whole config space as far as it is readable (4096 bytes when extended space is there, else 256). */
  configReadAll(bdf: string): Promise<Uint8Array>;

  /** 32-bit MMIO on a BAR (component registers are accessed with 32-bit accesses only). */
  mmioRead32(bdf: string, bar: number, offset: number): Promise<number>;
  mmioWrite32(bdf: string, bar: number, offset: number, value: number): Promise<void>;

  /** Processes, drivers, VFIO groups, resource mappings and online memory that hold the device. */
  holders(bdf: string): Promise<Holder[]>;

  /** Kernel reset via sysfs (only when capabilities.kernelReset). method is a reset_method name. */
  kernelReset?(bdf: string, method: string): Promise<void>;
  /** VFIO_DEVICE_RESET (only when capabilities.vfioReset); the device must be bound to a vfio driver. */
  vfioReset?(bdf: string): Promise<void>;
  /**
   * Bind to a driver (null = unbind only) via driver_override + drivers_probe; returns the previous driver.
   * `override`: the driver_override to leave behind (default: the driver bound; none when unbinding).
   */
  bindDriver?(
    bdf: string,
    driver: string | null,
    opts?: { override?: string | null },
  ): Promise<string | null>;
  /** The function's driver_override (null when none is set). */
  driverOverride?(bdf: string): Promise<string | null>;
  /** The kernel's own view of the device's HDM decoders and regions (/sys/bus/cxl); null when it has none. */
  cxlView?(bdf: string): Promise<KernelCxlView | null>;

  /** Release everything (file descriptors, mappings, child processes). Idempotent. */
  close(): Promise<void>;
}

/** Real time. */
export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms))),
};

/** BDF "DDDD:BB:DD.F" parsing and validation (clear error on anything else). */
export const BDF_RE = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$/;
export function parseBdf(bdf: string): { domain: number; bus: number; dev: number; fn: number } {
  const m = BDF_RE.exec(bdf);
  if (!m) throw new TypeError(`not a PCI address "DDDD:BB:DD.F" (lowercase hex): ${JSON.stringify(bdf)}`);
  const dev = Number.parseInt(m[3]!, 16);
  if (dev > 0x1f) throw new TypeError(`PCI device number out of range in ${bdf}`);
  return {
    domain: Number.parseInt(m[1]!, 16),
    bus: Number.parseInt(m[2]!, 16),
    dev,
    fn: Number.parseInt(m[4]!, 10),
  };
}
export function formatBdf(a: { domain: number; bus: number; dev: number; fn: number }): string {
  const h = (v: number, n: number) => v.toString(16).padStart(n, "0");
  return `${h(a.domain, 4)}:${h(a.bus, 2)}:${h(a.dev, 2)}.${a.fn}`;
}
