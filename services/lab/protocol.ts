// What the guest runner tells the host: one JSON object per line on the guest's second serial port.
// Shared by both sides so that a field name exists once.
import type { TrackedRequest } from "../../client/track.ts";
import type { Scenario } from "../demo/scenarios.ts";
import type { DeviceState } from "./guest/device-state.ts";

/** Scenarios the runner knows, each run in one boot of one topology. */
export const LAB_SCENARIOS = {
  /** One Type-3 device below a root port: inventory/probe, the kernel's reset, VFIO, gates. */
  single: "single",
  /** A CXL switch with a Type-3 device on each of two downstream ports: the agent's SBR. */
  switch: "switch",
  /** `cxlrc demo --backend kernel` on the single-device topology: from the drivers the kernel chose, over the bus. */
  demo: "demo",
  /** The same demo on the switch topology (a device on each of two downstream ports). */
  "demo-switch": "demo-switch",
} as const;
export type LabScenario = keyof typeof LAB_SCENARIOS;

/** The guest writes its result lines to the second serial port (the console on ttyS0 stays the kernel's). */
export const RESULT_TTY = "/dev/ttyS1";

/** The kernel command-line word that names the scenario (`cxlrc.lab=single`). */
export const SCENARIO_PARAM = "cxlrc.lab";

export interface LabError {
  name: string;
  message: string;
  kind?: string;
  details?: Record<string, unknown>;
}

export type LabLine =
  | { t: "hello"; scenario: string; release: string; node: string; uptimeS: number }
  | {
      t: "check";
      name: string;
      ok: boolean;
      /** Guest uptime when the check started, and how long it ran (guest clock). */
      startS: number;
      ms: number;
      /** Everything the check read back (also when it failed, as far as it got). */
      data?: unknown;
      error?: LabError;
    }
  | { t: "done"; uptimeS: number }
  | LabDemoLine;

/**
 * What the kernel demo's guest check (guest/checks/demo.ts) streams while it runs, for the host to render
 * live: steps in words (what the operator and a VM do to the devices), the seed's bug as read back, each
 * scenario as it starts, every event of the guest's bus that belongs to a scenario (the subject it came on
 * and its EventEnvelope, as published), and each scenario's result (the request followed through its events
 * in the guest, and the device and the kernel's view of it read back after).
 */
export type LabDemoLine =
  | { t: "demo"; kind: "step"; text: string }
  | {
      t: "demo";
      kind: "seed-bug";
      scenario: Scenario;
      /** The device's reset_method, the one `echo 1 > reset` uses. */
      resetMethod: string;
      /** The write to `reset`, guest clock (Date.now(), ms). */
      startMs: number;
      endMs: number;
      before: DeviceState;
      after: DeviceState;
    }
  | { t: "demo"; kind: "scenario"; scenario: Scenario; requestId: string }
  | { t: "demo"; kind: "event"; subject: string; event: unknown }
  | {
      t: "demo";
      kind: "result";
      id: string;
      tracked: TrackedRequest;
      /** The device read back when the request ended, with the kernel's CXL objects of it. */
      readback: DeviceState;
      /** A refusal's sentence (what is in the way, the region named), or an error's. */
      message?: string;
    };

export type LabCheckLine = Extract<LabLine, { t: "check" }>;

/** bigint → "0x…" so that 64-bit values survive JSON. */
export function toJsonLine(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v));
}

export function parseLabLines(raw: readonly string[]): { lines: LabLine[]; garbage: string[] } {
  const lines: LabLine[] = [];
  const garbage: string[] = [];
  for (const l of raw) {
    try {
      const v = JSON.parse(l) as LabLine;
      if (v && typeof v === "object" && typeof (v as { t?: unknown }).t === "string") lines.push(v);
      else garbage.push(l);
    } catch {
      garbage.push(l);
    }
  }
  return { lines, garbage };
}
