// Every subject, stream and bucket name cxlrc uses, in one place. Services, tests and deploy/ permission
// files all derive from here, so a name exists once.
import { parseBdf } from "../hw/backend.ts";

export const PREFIX = "cxlrc";

/** Host names become one subject token: letters, digits, '-' and '_' only. */
export const HOST_RE = /^[A-Za-z0-9_-]{1,64}$/;
export function checkHost(host: string): string {
  if (!HOST_RE.test(host)) {
    throw new TypeError(`host name ${JSON.stringify(host)} must be 1-64 letters, digits, '-' or '_'`);
  }
  return host;
}

/** A BDF as one subject token ("0000:0d:00.0" → "0000-0d-00-0"): NATS uses '.' as the token separator. */
export function bdfToken(bdf: string): string {
  parseBdf(bdf);
  return bdf.replace(/[:.]/g, "-");
}
export function bdfFromToken(token: string): string {
  const m = /^([0-9a-f]{4})-([0-9a-f]{2})-([0-9a-f]{2})-([0-7])$/.exec(token);
  if (!m) throw new TypeError(`not a BDF subject token: ${JSON.stringify(token)}`);
  return `${m[1]}:${m[2]}:${m[3]}.${m[4]}`;
}

/** Agent operations, one service endpoint each under cxlrc.agent.<host>.<op>. */
export const AGENT_OPS = [
  "inventory",
  "bind",
  "probe",
  "save",
  "quiesce",
  "reset",
  "restore",
  "verify",
  "fault",
] as const;
export type AgentOp = (typeof AGENT_OPS)[number];

export const subjects = {
  agent: (host: string, op: AgentOp) => `${PREFIX}.agent.${checkHost(host)}.${op}`,
  agentAll: (host: string) => `${PREFIX}.agent.${checkHost(host)}.>`,
  /** Device events: cxlrc.evt.<host>.<bdf-token>.<kind>. */
  event: (host: string, bdf: string, kind: string) =>
    `${PREFIX}.evt.${checkHost(host)}.${bdfToken(bdf)}.${kind}`,
  /** Host-level events (heartbeat, agent start/stop) use the token "agent" in the device slot. */
  hostEvent: (host: string, kind: string) => `${PREFIX}.evt.${checkHost(host)}.agent.${kind}`,
  eventsOfHost: (host: string) => `${PREFIX}.evt.${checkHost(host)}.>`,
  eventsAll: `${PREFIX}.evt.>`,
  /** Fleet controllers publish reset requests here (JetStream, dedup on requestId). */
  request: `${PREFIX}.req.reset`,
  requestsAll: `${PREFIX}.req.>`,
  /** Request/reply control endpoints of the coordinator. */
  plan: `${PREFIX}.ctl.plan`,
  status: `${PREFIX}.ctl.status`,
  release: `${PREFIX}.ctl.release`,
  image: `${PREFIX}.ctl.image`,
  /** A reset request by request/reply: written to the request stream, answered with the plan or refusal. */
  submit: `${PREFIX}.ctl.submit`,
  /** Operator: close the fleet circuit breaker. */
  breaker: `${PREFIX}.ctl.breaker`,
} as const;

export const STREAMS = {
  events: { name: "CXLRC_EVENTS", subjects: [subjects.eventsAll] },
  requests: { name: "CXLRC_REQUESTS", subjects: [subjects.requestsAll] },
} as const;

export const BUCKETS = {
  images: "cxlrc-images",
  actors: "cxlrc-actors",
  leases: "cxlrc-leases",
  /** Decisions taken outside a device actor (refusals while a peer drives the device): one per request id. */
  decisions: "cxlrc-decisions",
} as const;

/** KV keys cannot hold ':'... use the BDF token. */
export function deviceKey(host: string, bdf: string): string {
  return `${checkHost(host)}.${bdfToken(bdf)}`;
}
