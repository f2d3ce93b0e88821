// How a followed request ended (`reset --wait`, `watch --request`): one line for humans (outcome, device,
// scope/method, total time, time per phase) or one JSON object.
import { groupTimes, PHASE_GROUPS, type TrackedRequest, totalMs } from "../../../client/track.ts";
import type { Colours } from "./colour.ts";
import { formatMs } from "./duration.ts";

export function resultObject(t: TrackedRequest) {
  return {
    requestId: t.requestId,
    host: t.host,
    bdf: t.bdf,
    scope: t.scope,
    method: t.method,
    outcome: t.outcome,
    reason: t.reason,
    repaired: t.repaired,
    scopeViolations: t.violations,
    totalMs: totalMs(t),
    phasesMs: groupTimes(t),
  };
}

export function resultLine(t: TrackedRequest, c: Colours): string {
  const times = groupTimes(t);
  const phases = PHASE_GROUPS.filter((g) => times[g] !== null)
    .map((g) => `${g} ${formatMs(times[g]!)}`)
    .join(", ");
  const outcome = t.outcome === "verified" ? c.green("verified") : c.red(t.outcome ?? "?");
  const extra = [
    t.repaired ? `repaired a scope violation (${t.violations.join(", ")})` : null,
    t.outcome !== "verified" && t.reason ? t.reason : null,
  ].filter((x) => x !== null);
  return `${outcome} ${t.host} ${t.bdf} ${t.scope ?? "?"}/${t.method ?? "?"} in ${formatMs(totalMs(t) ?? 0)}${
    extra.length ? `: ${extra.join("; ")}` : ""
  }${phases ? ` (${phases})` : ""}`;
}
