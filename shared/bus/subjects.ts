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

/** Tokens of addresses checked already: a coordinator names the same devices in every subject it builds. */
const tokens = new Map<string, string>();
const TOKENS_KEPT = 16_384;

/** A BDF as one subject token ("0000:0d:00.0" → "0000-0d-00-0"): NATS uses '.' as the token separator. */
export function bdfToken(bdf: string): string {
  const known = tokens.get(bdf);
  if (known !== undefined) return known;
  parseBdf(bdf);
  const token = bdf.replace(/[:.]/g, "-");
  if (tokens.size >= TOKENS_KEPT) tokens.clear();
  tokens.set(bdf, token);
  return token;
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
  "ping",
] as const;
export type AgentOp = (typeof AGENT_OPS)[number];

export const subjects = {
  agent: (host: string, op: AgentOp) => `${PREFIX}.agent.${checkHost(host)}.${op}`,
  agentAll: (host: string) => `${PREFIX}.agent.${checkHost(host)}.>`,
  /**
   * The coordinator's device events: cxlrc.evt.<host>.<bdf-token>.<kind>. Only coordinators may publish under
   * cxlrc.evt.> (outcomes, plans, refusals, verdicts): a consumer believes an outcome from this subject only.
   */
  event: (host: string, bdf: string, kind: string) =>
    `${PREFIX}.evt.${checkHost(host)}.${bdfToken(bdf)}.${kind}`,
  /** The coordinator's host-level events use the token "agent" in the device slot. */
  hostEvent: (host: string, kind: string) => `${PREFIX}.evt.${checkHost(host)}.agent.${kind}`,
  eventsOfHost: (host: string) => `${PREFIX}.evt.${checkHost(host)}.>`,
  eventsAll: `${PREFIX}.evt.>`,
  /**
   * An agent's events (operation steps, heartbeats): cxlrc.agt.<host>.<bdf-token|agent>.<kind>. A subject space
   * of their own, so the server's allow-list gives agent H exactly cxlrc.agt.H.> and nothing a coordinator says.
   */
  agentEvent: (host: string, bdf: string | null, kind: string) =>
    `${PREFIX}.agt.${checkHost(host)}.${bdf === null ? "agent" : bdfToken(bdf)}.${kind}`,
  agentEventsOfHost: (host: string) => `${PREFIX}.agt.${checkHost(host)}.>`,
  agentEventsAll: `${PREFIX}.agt.>`,
  /**
   * Fleet controllers publish reset requests here (JetStream, dedup on requestId). The host is in the subject
   * so that the server can scope a controller to its hosts; the coordinator checks the body names the same host.
   */
  request: (host: string) => `${PREFIX}.req.reset.${checkHost(host)}`,
  /** Every host's reset requests (the intake consumer's filter). */
  requestsOfAnyHost: `${PREFIX}.req.reset.*`,
  requestsAll: `${PREFIX}.req.>`,
  /** Request/reply control endpoints of the coordinator. plan and submit name the host (scoped controllers). */
  plan: (host: string) => `${PREFIX}.ctl.plan.${checkHost(host)}`,
  planAll: `${PREFIX}.ctl.plan.*`,
  /** A reset request by request/reply: written to the request stream, answered with the plan or refusal. */
  submit: (host: string) => `${PREFIX}.ctl.submit.${checkHost(host)}`,
  submitAll: `${PREFIX}.ctl.submit.*`,
  status: `${PREFIX}.ctl.status`,
  release: `${PREFIX}.ctl.release`,
  image: `${PREFIX}.ctl.image`,
  /** Operator: close the fleet circuit breaker. */
  breaker: `${PREFIX}.ctl.breaker`,
  /**
   * Readers replay stored events through the coordinator (a batch per request, filter checked by the
   * coordinator): they get no JetStream API of their own, so they can neither pick a delivery subject nor touch
   * another reader's consumer.
   */
  events: `${PREFIX}.ctl.events`,
} as const;

/** The host token of a host-scoped subject (cxlrc.req.reset.<host>, cxlrc.ctl.plan|submit.<host>), or null. */
export function hostOfSubject(subject: string): string | null {
  const host = subject.split(".")[3];
  return host !== undefined && HOST_RE.test(host) && subject.split(".").length === 4 ? host : null;
}

export const STREAMS = {
  events: { name: "CXLRC_EVENTS", subjects: [subjects.eventsAll, subjects.agentEventsAll] },
  requests: { name: "CXLRC_REQUESTS", subjects: [subjects.requestsAll] },
} as const;

export const BUCKETS = {
  images: "cxlrc-images",
  actors: "cxlrc-actors",
  leases: "cxlrc-leases",
  /** Decisions taken outside a device actor (refusals while a peer drives the device): one per request id. */
  decisions: "cxlrc-decisions",
  /** Coordinator-only secrets (the outcome event id key): readable by no other role. */
  meta: "cxlrc-meta",
  /**
   * Admission, one small key each: `budget.<device key>` (a device's attempt budget) and `breaker` (open or
   * closed, and who closed it). Nothing here grows with the fleet. Host and switch slots are not stored: the
   * host's owner (its partition lease) keeps them.
   */
  admission: "cxlrc-admission",
} as const;

/** KV keys cannot hold ':'... use the BDF token. */
export function deviceKey(host: string, bdf: string): string {
  return `${checkHost(host)}.${bdfToken(bdf)}`;
}

/** The host of a device key: everything before its first dot (the key's partition). */
export function hostOfKey(key: string): string {
  const dot = key.indexOf(".");
  return dot < 0 ? key : key.slice(0, dot);
}

/** deviceKey's inverse: the host, and the BDF (null when the rest of the key is not a BDF token). */
export function keyParts(key: string): { host: string; bdf: string | null } {
  const host = hostOfKey(key);
  if (host.length === key.length) return { host, bdf: null };
  try {
    return { host, bdf: bdfFromToken(key.slice(host.length + 1)) };
  } catch {
    return { host, bdf: null };
  }
}
