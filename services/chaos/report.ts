// The report of a chaos run: what was asked, what was injected, what happened to every request and device,
// every invariant check and violation, and the timings. `formatReport` prints it for people; the object
// itself is what `--json` prints.
import type { FaultRecord } from "./faults.ts";
import type { InvariantSummary, Violation } from "./invariants.ts";

export interface ChaosReport {
  scenario: string;
  seed: number;
  ok: boolean;
  cluster: { size: number };
  coordinators: { count: number; starts: number; leaseTtlMs: number };
  fleet: { hosts: number; devices: number; agentStarts: number };
  requests: {
    planned: number;
    sent: number;
    /** Outcome kind → count (first terminal event of each request); "none" for requests without one. */
    outcomes: Record<string, number>;
    /** Every request ended before the deadline and the fleet came to rest. */
    complete: boolean;
    /** Each request's first outcome (detail: refusal reason and message, or what failed). */
    list: Array<{
      requestId: string;
      host: string;
      bdf: string;
      scope: string;
      outcome: string;
      by: string | null;
      detail: string;
    }>;
  };
  /** Device resets counted on the simulated devices (flr + CXL Reset + conventional). */
  resets: { total: number; flr: number; cxlReset: number; conventionalReset: number };
  faults: {
    /** Faults that hit something (scenario and random; undo and settle actions not counted). */
    injected: number;
    failed: number;
    byAction: Record<string, number>;
    /** Planned faults whose trigger never came. */
    unfired: string[];
    log: FaultRecord[];
  };
  invariants: { checks: number; violations: number; byInvariant: InvariantSummary["byInvariant"] };
  violations: Violation[];
  events: { stored: number; coordinator: number; agent: number };
  timings: {
    clusterReadyMs: number;
    startMs: number;
    runMs: number;
    settleMs: number;
    checkMs: number;
    totalMs: number;
  };
}

/** One line of figures (what the tests print). */
export function figuresLine(r: ChaosReport): string {
  return `chaos ${r.scenario} (seed ${r.seed}): resets=${r.resets.total} requests=${r.requests.sent} faults=${r.faults.injected} invariant-checks=${r.invariants.checks} violations=${r.invariants.violations} in ${(r.timings.totalMs / 1000).toFixed(1)} s`;
}

export function formatReport(r: ChaosReport, opts: { requests?: boolean } = {}): string {
  const lines: string[] = [];
  const kv = (o: Record<string, number>) =>
    Object.entries(o)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k} ${v}`)
      .join(", ") || "none";
  lines.push(`chaos scenario ${r.scenario} (seed ${r.seed}): ${r.ok ? "PASSED" : "FAILED"}`);
  lines.push(
    `  bus: ${r.cluster.size} NATS node(s); coordinators: ${r.coordinators.count} (${r.coordinators.starts} process starts, lease ${r.coordinators.leaseTtlMs} ms); fleet: ${r.fleet.hosts} hosts, ${r.fleet.devices} devices (${r.fleet.agentStarts} agent starts)`,
  );
  lines.push(
    `  requests: ${r.requests.sent}/${r.requests.planned} sent; outcomes: ${kv(r.requests.outcomes)}${r.requests.complete ? "" : " (NOT all finished)"}`,
  );
  const unusual = r.requests.list.filter((q) => q.outcome !== "verified");
  for (const q of opts.requests ? r.requests.list : unusual.slice(0, 20)) {
    lines.push(
      `    ${q.requestId} ${q.host} ${q.bdf} ${q.scope}: ${q.outcome}${q.by ? ` by ${q.by}` : ""}${q.detail ? ` (${q.detail})` : ""}`,
    );
  }
  if (!opts.requests && unusual.length > 20) lines.push(`    … and ${unusual.length - 20} more not verified`);
  lines.push(
    `  resets on the devices: ${r.resets.total} (flr ${r.resets.flr}, CXL Reset ${r.resets.cxlReset}, conventional ${r.resets.conventionalReset})`,
  );
  lines.push(
    `  faults injected: ${r.faults.injected} (${kv(r.faults.byAction)})${r.faults.failed ? `, ${r.faults.failed} could not be done` : ""}`,
  );
  if (r.faults.unfired.length > 0) lines.push(`  faults never triggered: ${r.faults.unfired.join(", ")}`);
  lines.push(
    `  events: ${r.events.stored} stored (${r.events.coordinator} coordinator, ${r.events.agent} agent)`,
  );
  lines.push(`  invariant checks: ${r.invariants.checks}, violations: ${r.invariants.violations}`);
  for (const [name, b] of Object.entries(r.invariants.byInvariant).sort(([a], [b2]) => a.localeCompare(b2))) {
    lines.push(`    ${name.padEnd(36)} ${String(b.checks).padStart(6)} checks  ${b.violations} violations`);
  }
  for (const v of r.violations.slice(0, 50)) {
    const where = [v.host, v.bdf, v.requestId].filter(Boolean).join(" ");
    lines.push(`  VIOLATION ${v.invariant}${where ? ` [${where}]` : ""}: ${v.message}`);
  }
  if (r.violations.length > 50) lines.push(`  … and ${r.violations.length - 50} more violations`);
  const t = r.timings;
  lines.push(
    `  timings: cluster ${ms(t.clusterReadyMs)}, start ${ms(t.startMs)}, run ${ms(t.runMs)}, settle ${ms(t.settleMs)}, checks ${ms(t.checkMs)}, total ${ms(t.totalMs)}`,
  );
  lines.push(`  ${figuresLine(r)}`);
  return lines.join("\n");
}

function ms(n: number): string {
  return n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`;
}
