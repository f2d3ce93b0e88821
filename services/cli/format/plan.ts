// A plan or a refusal (the coordinator's answer to a reset or plan request) as a few readable lines. The
// decisions of the submit and plan replies are read by the client (client/decisions.ts).

import type { Decision } from "../../../client/decisions.ts";
import type { GateResult, Plan, Refusal } from "../../../machines/policy/types.ts";
import type { Colours } from "./colour.ts";
import { formatMs } from "./duration.ts";

export { type Decision, decisionsOf, isPlan, isRefusal } from "../../../client/decisions.ts";

function gateLines(gates: GateResult[] | undefined, c: Colours, onlyFailed: boolean): string[] {
  return (gates ?? [])
    .filter((g) => !onlyFailed || !g.passed)
    .map((g) => `    ${g.passed ? c.green("pass") : c.red("FAIL")}  ${g.gate.padEnd(18)} ${g.message}`);
}

export function formatPlan(p: Plan, c: Colours): string {
  const lines: string[] = [];
  const head = p.dryRun ? "plan (dry run, nothing touched)" : "plan";
  lines.push(`${c.bold(head)} ${p.requestId}: ${p.host} ${p.bdf}`);
  const scope =
    p.scope === p.requestedScope
      ? p.scope
      : `${p.scope} (escalated from ${p.requestedScope}${p.escalationReason ? ": see the note" : ""})`;
  lines.push(`  scope       ${scope}`);
  lines.push(
    `  method      ${p.method}${p.bridge ? ` at bridge ${p.bridge}${p.unmaskSbr ? " (Unmask SBR set for it, then put back)" : ""}` : ""}`,
  );
  lines.push(`  targets     ${p.targets.join(", ")}`);
  if (p.siblings.length > 0) lines.push(`  siblings    ${p.siblings.join(", ")}`);
  const extras = [
    p.cacheFlush ? "cache write-back + invalidate first" : null,
    p.memClear ? "memory clear" : null,
    p.configLock !== "not-set" ? `CONFIG_LOCK ${p.configLock}` : null,
    p.committedDecoders.length > 0 ? `decoders ${p.committedDecoders.join(", ")} re-committed` : null,
    p.retainedDecoders.length > 0 ? `decoders ${p.retainedDecoders.join(", ")} kept by the device` : null,
  ].filter((x): x is string => x !== null);
  if (extras.length > 0) lines.push(`  restore     ${extras.join("; ")}`);
  lines.push(`  steps       ${p.steps.join(" → ")}`);
  const d = p.deadlines;
  lines.push(
    `  deadlines   reset wait ${formatMs(d.resetWaitMs)}, commit ${formatMs(d.commitPerDecoderMs)} per decoder, agent call ${formatMs(d.agentCallMs)}`,
  );
  for (const n of p.notes) lines.push(`  ${c.yellow("note")}        ${n}`);
  return lines.join("\n");
}

export function formatRefusal(r: Refusal, c: Colours): string {
  const retry = r.retryAfterMs !== undefined ? ` (retry after ${formatMs(r.retryAfterMs)})` : "";
  const lines = [
    `${c.yellow("refused")} ${r.requestId}: ${r.host} ${r.bdf}: ${r.reason}: ${r.message}${retry}`,
  ];
  lines.push(
    ...gateLines(
      (r.gates ?? []).filter((g) => g.message !== r.message),
      c,
      true,
    ),
  );
  return lines.join("\n");
}

export function formatDecision(d: Decision, c: Colours): string {
  switch (d.kind) {
    case "plan":
      return formatPlan(d.plan, c);
    case "refused":
      return formatRefusal(d.refusal, c);
    case "rejected":
      return `${c.red("rejected")} ${d.requestId}: ${d.bdf}: ${d.message}`;
    default:
      return `${d.kind} ${d.requestId}: ${d.bdf}: ${d.message}`;
  }
}

/** Every gate of a plan or refusal (the dry run shows them all). */
export function formatGates(gates: GateResult[], c: Colours): string {
  return ["  gates", ...gateLines(gates, c, false)].join("\n");
}
