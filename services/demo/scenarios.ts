// What the demo shows, as data: each scenario is one reset request against a device of the bundled fleet
// (shared/sim/fleets/default.json), the fault armed before it (if any), and the outcome it must end with.
import type { ResetRequestInput } from "../../shared/bus/requests.ts";
import type { FaultSpec } from "../../shared/sim/index.ts";

export interface Expectation {
  /** decoders-wiped: the kernel demo's first row, the kernel's own reset without cxlrc (the seed's bug). */
  outcome: "verified" | "refused" | "quarantined" | "failed" | "decoders-wiped";
  /** Refusal reason, when refused. */
  reason?: string;
  /** The io reset broke CXL state and the full-scope restore repaired it. */
  repaired?: boolean;
}

export interface Scenario {
  id: string;
  /** What it shows, in a few words (the first column of the progress and the summary). */
  title: string;
  host: string;
  bdf: string;
  request: Pick<ResetRequestInput, "scope"> &
    Partial<Pick<ResetRequestInput, "method" | "allowEscalation" | "memClear">>;
  fault?: FaultSpec;
  /**
   * How the reset is asked for: a request to cxlrc on the bus (default), or the kernel's own reset through
   * sysfs (`echo 1 > reset`, no cxlrc: the kernel demo's seed-bug row; request then only names the scope).
   */
  via?: "bus" | "sysfs";
  expect: Expectation;
}

/** The bundled simulated fleet: every reset path of reset-rules.md, and the ways it can go wrong. */
export const SIM_SCENARIOS: readonly Scenario[] = [
  {
    id: "io-flr",
    title: "io reset by FLR",
    host: "alpha",
    bdf: "0000:01:00.0",
    request: { scope: "io" },
    expect: { outcome: "verified" },
  },
  {
    id: "full-cxl",
    title: "full reset by CXL Reset",
    host: "alpha",
    bdf: "0000:02:00.0",
    request: { scope: "full", method: "cxl" },
    expect: { outcome: "verified" },
  },
  {
    id: "full-cxl-multifunction",
    title: "CXL Reset, 3 functions",
    host: "alpha",
    bdf: "0000:03:00.0",
    request: { scope: "full", method: "cxl" },
    expect: { outcome: "verified" },
  },
  {
    id: "full-sbr",
    title: "full reset by SBR",
    host: "charlie",
    bdf: "0000:01:00.0",
    request: { scope: "full", method: "sbr" },
    expect: { outcome: "verified" },
  },
  {
    id: "sbr-sibling-busy",
    title: "SBR with a busy sibling",
    host: "bravo",
    bdf: "0000:05:00.0",
    request: { scope: "full", method: "sbr" },
    expect: { outcome: "refused", reason: "sibling-busy" },
  },
  {
    id: "scope-violation",
    title: "FLR breaks CXL state",
    host: "bravo",
    bdf: "0000:03:00.0",
    request: { scope: "io" },
    fault: { name: "flr-clears-hdm" },
    expect: { outcome: "verified", repaired: true },
  },
  {
    id: "commit-error",
    title: "decoder commit fails",
    host: "bravo",
    bdf: "0000:04:00.0",
    request: { scope: "full", method: "cxl" },
    fault: { name: "commit-error", decoder: 0 },
    expect: { outcome: "quarantined" },
  },
];

/**
 * QEMU's CXL model (two Type-3 memory devices behind a CXL switch): the model has no FLR and no CXL Reset,
 * so io scope is refused, and full scope is a secondary bus reset at the device's downstream port.
 */
export function qemuScenarios(host: string, devices: string[]): Scenario[] {
  const [first, second = first] = devices;
  if (!first) return [];
  return [
    {
      id: "io-no-flr",
      title: "io reset, model has no FLR",
      host,
      bdf: first,
      request: { scope: "io" },
      expect: { outcome: "refused", reason: "flr-unsupported" },
    },
    {
      id: "full-sbr",
      title: "full reset by SBR",
      host,
      bdf: first,
      request: { scope: "full" },
      expect: { outcome: "verified" },
    },
    {
      id: "io-escalated",
      title: "io escalated to full",
      host,
      bdf: second!,
      request: { scope: "io", allowEscalation: true },
      expect: { outcome: "verified" },
    },
  ];
}

/**
 * What the kernel demo does to a device before a scenario's request, inside the guest, as the people and
 * programs of a real host would: an operator creates a CXL region or takes it down (the kernel's sysfs region
 * interface, as Debian's `cxl` tool writes it), an operator hands a device to vfio-pci for a VM
 * (driver_override + drivers_probe), and the VM's kernel programs HDM decoder 0 of its assigned device
 * through the BAR vfio-pci leaves to its user.
 */
export type KernelSetup = "create-region" | "take-region-down" | "bind-vfio" | "vm-programs-decoder";

export interface KernelScenario extends Scenario {
  /** Done in the guest, in this order, right before the request. */
  setup: KernelSetup[];
}

/**
 * The kernel demo (a real Linux kernel under QEMU, services/lab), from the state a host boots into: every
 * device on the driver the kernel chose (cxl_pci). Through the bus inside the guest: a full reset of the device
 * as it booted, cxl_pci handed over for the reset and bound again after (verified with it back); the same once
 * the operator created a pmem region, refused with the region named; and once the region is taken down, where
 * QEMU 7.2's stale Committed bit makes Linux 6.1 refuse the endpoint after the hand-back (failed, said why).
 * Then a device on vfio-pci (the
 * second one when there are two): the kernel's own reset (`echo 1 > reset`, no cxlrc) wipes the HDM decoder
 * its VM programmed; cxlrc resets it through VFIO and the decoder reads back Committed, vfio-pci still bound.
 * Last, an io reset, which the model cannot do (no FLR): refused before anything is touched.
 */
export function kernelScenarios(host: string, devices: string[]): KernelScenario[] {
  const [first, second] = devices;
  if (!first) return [];
  const vfio = second ?? first;
  return [
    {
      id: "driver-handover",
      title: "full reset, cxl_pci handed over and back",
      host,
      bdf: first,
      request: { scope: "full" },
      setup: [],
      expect: { outcome: "verified" },
    },
    {
      id: "region-busy",
      title: "full reset, pmem region in use",
      host,
      bdf: first,
      request: { scope: "full" },
      setup: ["create-region"],
      expect: { outcome: "refused", reason: "device-busy" },
    },
    {
      // QEMU 7.2 keeps Committed on the decoder the kernel decommitted (size 0); restored as it was, Linux 6.1's
      // cxl_port rejects it when cxl_pci is back, so the endpoint (and the Mem_Enable it sets) does not come
      // back: the read-back with the driver in place says so, and the request fails rather than lie.
      id: "region-down",
      title: "full reset after the region is taken down (QEMU 7.2 keeps a decommitted decoder Committed)",
      host,
      bdf: first,
      request: { scope: "full" },
      setup: ["take-region-down"],
      expect: { outcome: "failed" },
    },
    {
      id: "kernel-reset-wipes-decoders",
      title: "kernel's reset alone (echo 1 > reset)",
      host,
      bdf: vfio,
      request: { scope: "full" },
      via: "sysfs",
      setup: ["bind-vfio", "vm-programs-decoder"],
      expect: { outcome: "decoders-wiped" },
    },
    {
      id: "vfio",
      title: "full reset through VFIO",
      host,
      bdf: vfio,
      request: { scope: "full", method: "vfio" },
      setup: ["vm-programs-decoder"],
      expect: { outcome: "verified" },
    },
    {
      id: "io-no-flr",
      title: "io reset, model has no FLR",
      host,
      bdf: first,
      request: { scope: "io" },
      setup: [],
      expect: { outcome: "refused", reason: "flr-unsupported" },
    },
  ];
}

/** The expectation in words, as the summary prints it. */
export function expectationText(e: Expectation): string {
  if (e.outcome === "refused") return `refused ${e.reason ?? ""}`.trim();
  if (e.repaired) return "verified after repairing a scope violation";
  if (e.outcome === "decoders-wiped") return "decoders wiped";
  return e.outcome;
}
