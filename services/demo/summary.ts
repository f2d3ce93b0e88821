// The demo's last word: what each scenario did (scope, method, outcome, time per phase), whether that is what
// it should have done, and where to look next.

import { groupTimes, PHASE_GROUPS, type TrackedRequest, totalMs } from "../../client/track.ts";
import { type Colours, outcomeColour } from "../cli/format/colour.ts";
import { formatMs } from "../cli/format/duration.ts";
import { table } from "../cli/format/table.ts";
import type { DeviceState } from "../lab/guest/device-state.ts";
import { type Expectation, expectationText, type Scenario } from "./scenarios.ts";

export interface ScenarioResult {
  scenario: Scenario;
  tracked: TrackedRequest;
  /** The device as read back (the kernel demo): before the reset when known, and after the request ended. */
  readback?: { before?: DeviceState; after: DeviceState };
  /** A refusal's sentence (what is in the way), as the coordinator answered it. */
  message?: string;
}

/** Did the request end the way the scenario says it must? */
export function asExpected(r: ScenarioResult): boolean {
  const e: Expectation = r.scenario.expect;
  const t = r.tracked;
  if (t.outcome !== e.outcome) return false;
  if (e.reason !== undefined && t.reason !== e.reason) return false;
  if (e.repaired !== undefined && t.repaired !== e.repaired) return false;
  return true;
}

/** The outcome in words: "verified", "refused sibling-busy", "verified (repaired scope violation)"... */
export function outcomeText(t: TrackedRequest): string {
  if (t.outcome === null) return "unfinished";
  if (t.outcome === "decoders-wiped") return "decoders wiped";
  if (t.outcome === "verified" && t.repaired) return "verified (repaired scope violation)";
  if (t.outcome === "refused" || t.outcome === "rejected") return `${t.outcome} ${t.reason ?? ""}`.trim();
  if (t.outcome === "quarantined" || t.outcome === "failed") return t.outcome;
  return t.outcome;
}

export function summaryJson(results: ScenarioResult[], extra: Record<string, unknown>) {
  return {
    ok: results.every(asExpected),
    ...extra,
    scenarios: results.map((r) => ({
      id: r.scenario.id,
      title: r.scenario.title,
      host: r.tracked.host,
      bdf: r.tracked.bdf,
      requestId: r.tracked.requestId,
      fault: r.scenario.fault ?? null,
      expected: r.scenario.expect,
      outcome: r.tracked.outcome,
      reason: r.tracked.reason,
      ...(r.message !== undefined ? { message: r.message } : {}),
      repaired: r.tracked.repaired,
      scopeViolations: r.tracked.violations,
      scope: r.tracked.scope,
      method: r.tracked.method,
      asExpected: asExpected(r),
      totalMs: totalMs(r.tracked),
      phasesMs: groupTimes(r.tracked),
      ...(r.readback ? { readback: r.readback } : {}),
    })),
  };
}

/**
 * Decoder 0 as read back, in a few words: "Committed 0x290000000 256 MiB", "not committed, size 0". Under a
 * driver that claims the BAR, the kernel's view of it: "cxl_pci holds the BAR; kernel: decoder2.0 idle".
 */
export function decoderText(s: DeviceState | undefined): string {
  if (!s) return "-";
  if (!Array.isArray(s.decoders)) {
    const holder = s.driver ? `${s.driver} holds the BAR` : "unreadable";
    const k = s.kernel;
    if (!k) return holder;
    if (!k.endpoint) return `${holder}; kernel: no endpoint port`;
    const d = k.decoders[0];
    if (!d) return `${holder}; kernel: ${k.endpoint} has no decoder`;
    const size = d.size ? BigInt(d.size) : 0n;
    return `${holder}; kernel: ${d.name} ${size > 0n ? `${d.start} ${Number(size >> 20n)} MiB` : "idle"}`;
  }
  const d = s.decoders[0];
  if (!d) return "no decoder";
  const mib = Number(BigInt(d.size) >> 20n);
  const size = mib === 0 ? "0" : `${mib} MiB`;
  return d.committed ? `Committed ${d.base} ${mib === 0 ? "size 0" : size}` : `not committed, size ${size}`;
}

/** The outcome's colour; the kernel's wiped decoders are the bug the demo shows. */
function colourOf(c: Colours, outcome: string | null): (s: string) => string {
  return outcome === "decoders-wiped" ? c.red : outcomeColour(c, outcome ?? "failed");
}

export function summaryTable(results: ScenarioResult[], c: Colours): string {
  // The kernel demo reads each device back: one more column, decoder 0 after the reset.
  const readback = results.some((r) => r.readback !== undefined);
  const headers = [
    "scenario",
    "host",
    "device",
    "scope",
    "method",
    "outcome",
    ...PHASE_GROUPS,
    "total",
    ...(readback ? ["decoder 0 read back"] : []),
    "",
  ];
  const rows = results.map((r) => {
    const t = r.tracked;
    const times = groupTimes(t);
    const ok = asExpected(r);
    return [
      r.scenario.title,
      t.host,
      t.bdf,
      t.scope ?? "-",
      t.method ?? "-",
      colourOf(c, t.outcome)(outcomeText(t)),
      ...PHASE_GROUPS.map((g) => (times[g] === null ? "-" : formatMs(times[g]!))),
      totalMs(t) === null ? "-" : formatMs(totalMs(t)!),
      ...(readback ? [decoderText(r.readback?.after)] : []),
      ok ? c.green("as expected") : c.red(`expected ${expectationText(r.scenario.expect)}`),
    ];
  });
  const right = headers.map(
    (h) => (PHASE_GROUPS.includes(h as never) || h === "total" ? "right" : "left") as "left" | "right",
  );
  return table(headers, rows, right);
}

export function nextSteps(
  c: Colours,
  url: string | null,
  device: { host: string; bdf: string } | null,
): string {
  const server = url ? ` --server ${url}` : "";
  const tips: Array<[string, string]> = [
    [`cxlrc watch${server} --since 1h`, "every event behind this summary"],
    [`cxlrc status${server}`, "devices per state, leases, the breaker"],
    ...(device
      ? [
          [`cxlrc image show${server} ${device.host} ${device.bdf}`, "the image a reset restores from"] as [
            string,
            string,
          ],
        ]
      : []),
    ["README.md", "running the coordinator and the agents on real hosts"],
  ];
  const width = Math.max(...tips.map(([cmd]) => cmd.length));
  const lines = [
    c.bold("Where to look next"),
    ...tips.map(([cmd, what]) => `  ${cmd.padEnd(width)}  ${c.dim(what)}`),
  ];
  if (!url)
    lines.push(c.dim("  (the demo's bus is gone now: `cxlrc demo --keep-running` keeps it up to try these)"));
  return lines.join("\n");
}
