// The coordinator's status reply (services/coordinator/service.ts CoordinatorStatus) as tables: devices per
// state per host, leases, requests running or waiting, the breaker; and the device list of `cxlrc devices`.
import type { Colours } from "./colour.ts";
import { outcomeColour } from "./colour.ts";
import { table } from "./table.ts";

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const text = (v: unknown): string =>
  v === undefined || v === null ? "-" : typeof v === "string" ? v : JSON.stringify(v);

export interface DeviceRow extends Json {
  host: string;
  bdf: string;
  state: string;
}

/** Order states as a device goes through them: resting states first, the trouble last. */
const STATE_ORDER = ["ready", "unavailable", "failed", "quarantined"];
function stateRank(s: string): number {
  const i = STATE_ORDER.indexOf(s);
  return i < 0 ? 1.5 : i; // every in-progress phase between ready and the failures
}

export function devicesOf(reply: unknown): DeviceRow[] {
  return arr(obj(reply).devices)
    .map(obj)
    .filter((d) => typeof d.host === "string" && typeof d.bdf === "string")
    .map((d) => ({ ...d, host: d.host as string, bdf: d.bdf as string, state: text(d.state) }))
    .sort((a, b) => a.host.localeCompare(b.host) || a.bdf.localeCompare(b.bdf));
}

function stateColour(c: Colours, state: string): (s: string) => string {
  if (state === "ready") return c.green;
  if (state === "quarantined" || state.startsWith("failed")) return c.red;
  if (state === "unavailable") return c.yellow;
  return outcomeColour(c, state) === undefined ? (s) => s : c.cyan;
}

export function formatDevices(devices: DeviceRow[], c: Colours): string {
  if (devices.length === 0) return "no devices known yet (are the agents running?)";
  // Devices driven by other coordinators (from the stored actors) get an OWNER column.
  const owners = devices.some((d) => d.local === false);
  const rows = devices.map((d) => [
    d.host,
    d.bdf,
    stateColour(c, d.state)(d.state),
    d.leaseHeld === true ? "held" : "-",
    ...(owners ? [`${text(d.owner)}${d.local === false ? "" : " (here)"}`] : []),
    text(d.requestId),
    d.scopeViolations ? String(d.scopeViolations) : "0",
    d.quarantineReason ? text(d.quarantineReason) : "",
  ]);
  return table(
    [
      "HOST",
      "DEVICE",
      "STATE",
      "LEASE",
      ...(owners ? ["OWNER"] : []),
      "REQUEST",
      "SCOPE VIOLATIONS",
      "QUARANTINED BECAUSE",
    ],
    rows,
  );
}

export function formatStatus(reply: unknown, c: Colours, host?: string): string {
  const r = obj(reply);
  const devices = devicesOf(reply).filter((d) => host === undefined || d.host === host);
  const out: string[] = [];
  out.push(`${c.bold("coordinator")} ${text(r.id)}`);
  out.push("");
  if (devices.length === 0) out.push("no devices known yet (are the agents running?)");
  else {
    const states = [...new Set(devices.map((d) => d.state))].sort(
      (a, b) => stateRank(a) - stateRank(b) || a.localeCompare(b),
    );
    const hosts = [...new Set(devices.map((d) => d.host))];
    const rows = hosts.map((h) => {
      const mine = devices.filter((d) => d.host === h);
      return [
        h,
        String(mine.length),
        ...states.map((s) => {
          const n = mine.filter((d) => d.state === s).length;
          return n === 0 ? c.dim("0") : stateColour(c, s)(String(n));
        }),
      ];
    });
    out.push(
      table(["HOST", "DEVICES", ...states.map((s) => s.toUpperCase())], rows, [
        "left",
        "right",
        ...states.map(() => "right" as const),
      ]),
    );
  }
  const trouble = devices.filter((d) => d.state === "quarantined" || d.state.startsWith("failed"));
  for (const d of trouble) {
    out.push(
      `  ${c.red(d.state)} ${d.host} ${d.bdf}: ${text(d.quarantineReason)}  (cxlrc release ${d.host} ${d.bdf})`,
    );
  }

  const elsewhere = devices.filter((d) => d.local === false);
  if (elsewhere.length > 0) {
    const by = new Map<string, number>();
    for (const d of elsewhere) by.set(text(d.owner), (by.get(text(d.owner)) ?? 0) + 1);
    out.push(
      `  ${elsewhere.length} device(s) driven by other coordinators (state as they stored it): ${[...by]
        .map(([o, n]) => `${o} ${n}`)
        .join(", ")}`,
    );
  }

  const leases = arr(r.leasesHeld).map(text);
  out.push("");
  out.push(leases.length === 0 ? "leases: none held" : `leases: ${leases.length} held by this coordinator`);
  for (const d of devices.filter((x) => x.leaseHeld === true)) {
    out.push(`  ${d.host} ${d.bdf}  ${d.state}  request ${text(d.requestId)}`);
  }
  const running = obj(r.running);
  const runningCount = Object.values(running).reduce((n: number, v) => n + arr(v).length, 0);
  const waiting = typeof r.waiting === "number" ? r.waiting : 0;
  if (runningCount > 0 || waiting > 0)
    out.push(`requests: ${runningCount} running, ${waiting} waiting for a host slot`);

  const breaker = obj(r.breaker);
  const open = breaker.status === "open";
  const outcomes = arr(breaker.outcomes).length;
  out.push("");
  if (open) {
    const since =
      typeof breaker.openedAtMs === "number" ? ` since ${new Date(breaker.openedAtMs).toISOString()}` : "";
    out.push(
      `breaker: ${c.red("open")}${since}: ${text(breaker.reason)} (new resets are refused until an operator closes it)`,
    );
  } else {
    out.push(`breaker: ${c.green("closed")} (${outcomes} outcome(s) in its window)`);
  }
  return out.join("\n");
}
