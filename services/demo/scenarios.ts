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
 * The kernel demo (a real Linux kernel under QEMU, services/lab): first the kernel's own reset through sysfs,
 * which restores the PCI state and leaves the HDM decoders wiped (read back); then cxlrc over the bus inside
 * the guest: a full reset by SBR per device (save, reset, restore, verify; decoders read back Committed),
 * and an io reset, which the model cannot do (no FLR) and the gates refuse before anything is touched.
 */
export function kernelScenarios(host: string, devices: string[]): Scenario[] {
  const [first] = devices;
  if (!first) return [];
  const many = devices.length > 1;
  return [
    {
      id: "kernel-reset-wipes-decoders",
      title: "kernel's reset alone (echo 1 > reset)",
      host,
      bdf: first,
      request: { scope: "full" },
      via: "sysfs",
      expect: { outcome: "decoders-wiped" },
    },
    ...devices.map(
      (bdf, i): Scenario => ({
        id: many ? `full-sbr-${i + 1}` : "full-sbr",
        title: many ? `cxlrc full reset by SBR, device ${i + 1}` : "cxlrc full reset by SBR",
        host,
        bdf,
        request: { scope: "full", method: "sbr" },
        expect: { outcome: "verified" },
      }),
    ),
    {
      id: "io-no-flr",
      title: "cxlrc io reset, model has no FLR",
      host,
      bdf: first,
      request: { scope: "io" },
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
