// Who may do what on the bus: one allow list per role, derived from shared/bus/subjects.ts, enforced by
// nats-server. deploy/nats/gen-users.ts renders these into the server's users file (one nkey user per
// principal), so the server configuration cannot drift from the subjects the services use.
//
// Principle: every role gets exactly the subjects it needs; anything not allowed is denied by the server.
// - controller  publish reset requests (cxlrc.req.reset), plan/submit requests; read events (consumer API)
// - coordinator consume requests, its KV buckets and streams ($JS.API.>), command agents (not "fault"),
//               publish events, serve the control subjects
// - agent (H)   serve cxlrc.agent.H.> (a real-hardware agent: not cxlrc.agent.H.fault), publish events only
//               under cxlrc.evt.H.> and never the coordinator's decision kinds (plan, verified, released...),
//               answer service discovery for its own service
// - sre         read events, status and images; change nothing
// - operator    release from quarantine, close the breaker; read events and status
// - chaos       fault injection on simulated hosts only (cxlrc.agent.<sim host>.fault)
// Every principal receives replies only on its own inbox prefix (_INBOX.<name>.>), so no one reads
// another principal's replies; services answer requests through allow_responses (reply subjects only).
import { z } from "zod";
import { BUCKETS, checkHost, HOST_RE, PREFIX, STREAMS, subjects } from "./subjects.ts";

export const ROLES = ["controller", "coordinator", "agent", "sre", "operator", "chaos"] as const;
export type Role = (typeof ROLES)[number];

/** Principal names become one subject token (the inbox prefix) and file names. */
export const PRINCIPAL_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** One identity on the bus: a role, a unique name, and for agents the host it serves and its backend. */
export const Principal = z
  .strictObject({
    name: z.string().regex(PRINCIPAL_NAME_RE, "1-64 letters, digits, '-' or '_'"),
    role: z.enum(ROLES),
    /** agent only: the host whose subjects it serves. */
    host: z.string().regex(HOST_RE, "1-64 letters, digits, '-' or '_'").optional(),
    /** agent only: "sim" backends serve fault injection (chaos role); "sysfs" (real hardware) never does. */
    backend: z.enum(["sysfs", "sim"]).optional(),
  })
  .superRefine((p, ctx) => {
    if (p.role === "agent") {
      if (p.host === undefined)
        ctx.addIssue({ code: "custom", path: ["host"], message: "an agent needs a host" });
      if (p.backend === undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["backend"],
          message: 'an agent needs a backend ("sysfs" or "sim")',
        });
      }
    } else {
      for (const k of ["host", "backend"] as const) {
        if (p[k] !== undefined) ctx.addIssue({ code: "custom", path: [k], message: "only for role agent" });
      }
    }
  });
export type Principal = z.infer<typeof Principal>;

/** The deployment's principals (deploy/nats/gen-users.ts input). Names and agent hosts are unique. */
export const Roster = z.strictObject({ principals: z.array(Principal).min(1) }).superRefine((r, ctx) => {
  const names = new Set<string>();
  const hosts = new Set<string>();
  r.principals.forEach((p, i) => {
    if (names.has(p.name))
      ctx.addIssue({ code: "custom", path: ["principals", i, "name"], message: "duplicate" });
    names.add(p.name);
    if (p.host !== undefined) {
      if (hosts.has(p.host)) {
        ctx.addIssue({ code: "custom", path: ["principals", i, "host"], message: "one agent per host" });
      }
      hosts.add(p.host);
    }
  });
});
export type Roster = z.infer<typeof Roster>;

export interface SubjectList {
  allow: string[];
  deny: string[];
}

export interface RolePermissions {
  publish: SubjectList;
  subscribe: SubjectList;
  /** Publish to the reply subject of a received request: null = not allowed. */
  responses: { max: number; expires: string } | null;
}

/** Replies come back here: `_INBOX.<name>`. Pass it as the connection's inboxPrefix. */
export function inboxPrefix(p: Pick<Principal, "name">): string {
  if (!PRINCIPAL_NAME_RE.test(p.name)) throw new TypeError(`bad principal name ${JSON.stringify(p.name)}`);
  return `_INBOX.${p.name}`;
}

const JS_API = "$JS.API";

/** Read-only access to one stream through the JetStream API: info, message get, ephemeral/ordered consumers. */
export function streamReadSubjects(stream: string): string[] {
  return [
    `${JS_API}.INFO`,
    `${JS_API}.STREAM.NAMES`,
    `${JS_API}.STREAM.INFO.${stream}`,
    `${JS_API}.STREAM.MSG.GET.${stream}`,
    `${JS_API}.DIRECT.GET.${stream}`,
    `${JS_API}.DIRECT.GET.${stream}.>`,
    `${JS_API}.CONSUMER.CREATE.${stream}`,
    `${JS_API}.CONSUMER.CREATE.${stream}.>`,
    `${JS_API}.CONSUMER.INFO.${stream}.*`,
    `${JS_API}.CONSUMER.DELETE.${stream}.*`,
    `${JS_API}.CONSUMER.MSG.NEXT.${stream}.*`,
    `$JS.ACK.${stream}.>`,
    `$JS.FC.${stream}.>`,
  ];
}

/** The agent's micro-service name (services/agent/service.ts AGENT_SERVICE_NAME; a test keeps them equal). */
export const AGENT_SERVICE = "cxlrc-agent";

/** Service discovery requests (read-only: ping, info, stats of any service). */
export const DISCOVERY_REQUESTS = [
  "$SRV.PING",
  "$SRV.PING.>",
  "$SRV.INFO",
  "$SRV.INFO.>",
  "$SRV.STATS",
  "$SRV.STATS.>",
];

/** What a micro-service named `service` subscribes to for discovery (its own name only). */
export function discoveryServing(service: string): string[] {
  return ["$SRV.*", `$SRV.*.${service}`, `$SRV.*.${service}.*`];
}

/** The agent's fault-injection subject of one host (served by simulated backends only). */
export function faultSubject(host: string): string {
  return subjects.agent(host, "fault");
}

/**
 * Event kinds only the coordinator publishes: decisions and verdicts (services/coordinator/events.ts EVENT,
 * intake's request.waiting and breaker.closed). Agents share the event subject space of their host
 * (cxlrc.evt.<host>.<device>.<kind>), so the server denies agents these kinds there: an agent cannot forge a
 * plan, a refusal, a verdict or a release that a controller or the submit endpoint would believe. Kinds that
 * both publish (reset.started, reset.completed, decoder.committed) stay allowed and are informational.
 * Multi-token kinds are denied by their first token where every kind under it is the coordinator's.
 */
export const COORDINATOR_ONLY_KINDS = [
  "plan",
  "refused",
  "request.rejected",
  "request.duplicate",
  "request.waiting",
  "state.entered",
  "image.persisted",
  "verify.passed",
  "verify.failed",
  "scope.violation",
  "quarantined",
  "released",
  "failed",
  "verified",
  "lease.lost",
  "recovered",
  "breaker.closed",
] as const;

/** First tokens under which every kind is the coordinator's (denied as `<token>.>`). */
const COORDINATOR_KIND_FAMILIES = ["request", "state", "scope", "lease", "breaker"];

/** The deny patterns for agent H: the coordinator-only kinds on H's event subjects. */
export function coordinatorKindDenies(host: string): string[] {
  const base = `${PREFIX}.evt.${checkHost(host)}.*`;
  const out: string[] = COORDINATOR_KIND_FAMILIES.map((f) => `${base}.${f}.>`);
  for (const k of COORDINATOR_ONLY_KINDS) {
    if (!COORDINATOR_KIND_FAMILIES.includes(k.split(".")[0] as string)) out.push(`${base}.${k}`);
  }
  return out;
}

/** Every agent command of every host: the coordinator's publish pattern. */
export const AGENT_COMMANDS_ALL = `${PREFIX}.agent.*.>`;
/** Fault injection of any host: denied to everyone but chaos (who gets the sim hosts one by one). */
export const AGENT_FAULT_ALL = `${PREFIX}.agent.*.fault`;

/** KV bucket API subjects of the coordinator's buckets ($KV.<bucket>.>). */
export function kvSubjects(): string[] {
  return Object.values(BUCKETS).map((b) => `$KV.${b}.>`);
}

const uniq = (xs: string[]) => [...new Set(xs)];

/**
 * The permissions of one principal. `roster` is needed for chaos (which hosts are simulated); it may be
 * omitted for every other role.
 */
export function permissionsFor(p: Principal, roster?: Roster): RolePermissions {
  const inbox = `${inboxPrefix(p)}.>`;
  const events = STREAMS.events.name;
  const readEvents = streamReadSubjects(events);
  switch (p.role) {
    case "controller":
      return {
        publish: { allow: uniq([subjects.request, subjects.plan, subjects.submit, ...readEvents]), deny: [] },
        subscribe: { allow: [inbox], deny: [] },
        responses: null,
      };
    case "coordinator":
      return {
        publish: {
          allow: uniq([
            `${JS_API}.>`,
            `$JS.ACK.${STREAMS.requests.name}.>`,
            `$JS.ACK.${events}.>`,
            "$JS.FC.>",
            ...kvSubjects(),
            AGENT_COMMANDS_ALL,
            subjects.eventsAll,
            subjects.requestsAll,
            ...DISCOVERY_REQUESTS,
          ]),
          deny: [AGENT_FAULT_ALL],
        },
        subscribe: {
          allow: uniq([
            inbox,
            `${PREFIX}.ctl.>`,
            subjects.eventsAll,
            "$JS.EVENT.ADVISORY.>",
            // Serves its own discovery endpoints (if it runs as a micro-service) and sees other services'.
            "$SRV.>",
          ]),
          deny: [],
        },
        responses: { max: 1, expires: "2m" },
      };
    case "agent": {
      const host = checkHost(p.host ?? "");
      const serveFaults = p.backend === "sim";
      return {
        publish: { allow: [subjects.eventsOfHost(host)], deny: coordinatorKindDenies(host) },
        subscribe: {
          allow: uniq([inbox, subjects.agentAll(host), ...discoveryServing(AGENT_SERVICE)]),
          deny: serveFaults ? [] : [faultSubject(host)],
        },
        // An agent operation (CXL Reset up to 100 s, then restore) may take minutes before its reply.
        responses: { max: 1, expires: "10m" },
      };
    }
    case "sre":
      return {
        publish: {
          allow: uniq([subjects.status, subjects.image, ...readEvents, ...DISCOVERY_REQUESTS]),
          deny: [],
        },
        subscribe: { allow: [inbox, subjects.eventsAll], deny: [] },
        responses: null,
      };
    case "operator":
      return {
        publish: {
          allow: uniq([subjects.release, subjects.breaker, subjects.status, subjects.image, ...readEvents]),
          deny: [],
        },
        subscribe: { allow: [inbox, subjects.eventsAll], deny: [] },
        responses: null,
      };
    case "chaos": {
      const simHosts = (roster?.principals ?? [])
        .filter((q) => q.role === "agent" && q.backend === "sim" && q.host !== undefined)
        .map((q) => q.host as string);
      return {
        publish: { allow: simHosts.map(faultSubject), deny: [] },
        subscribe: { allow: [inbox], deny: [] },
        responses: null,
      };
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// nats-server users file

/** A NATS config string literal (JSON escaping is accepted by the server's parser). */
function q(s: string): string {
  return JSON.stringify(s);
}

function list(xs: string[]): string {
  return `[${xs.map(q).join(", ")}]`;
}

function subjectBlock(name: string, l: SubjectList, indent: string): string {
  const parts = [`${indent}  allow: ${list(l.allow)}`];
  if (l.deny.length > 0) parts.push(`${indent}  deny: ${list(l.deny)}`);
  return `${indent}${name}: {\n${parts.join("\n")}\n${indent}}`;
}

/** nkey public key of a user: "U" + 55 base32 characters. */
export const USER_NKEY_RE = /^U[A-Z2-7]{55}$/;

/** One user entry of the authorization block. */
function renderUser(comment: string, key: string, perms: RolePermissions): string {
  return [
    `    # ${comment}`,
    "    {",
    `      nkey: ${q(key)}`,
    "      permissions: {",
    subjectBlock("publish", perms.publish, "        "),
    subjectBlock("subscribe", perms.subscribe, "        "),
    ...(perms.responses
      ? [`        allow_responses: { max: ${perms.responses.max}, expires: ${q(perms.responses.expires)} }`]
      : []),
    "      }",
    "    }",
  ].join("\n");
}

export interface RenderUsersOptions {
  /** Comment lines put first. */
  header?: string;
  /** Users outside the roster's roles (tests: a witness that subscribes to everything). */
  extraUsers?: Array<{ comment: string; nkey: string; permissions: RolePermissions }>;
}

/**
 * The `authorization { users = [...] }` block for nats-server, one nkey user per principal. `keys` maps a
 * principal name to its public nkey (never the seed). No user without an nkey, no default user.
 */
export function renderUsersConf(
  roster: Roster,
  keys: Record<string, string>,
  opts: RenderUsersOptions = {},
): string {
  const r = Roster.parse(roster);
  const users = r.principals.map((p) => {
    const key = keys[p.name];
    if (key === undefined) throw new TypeError(`no public nkey for principal ${p.name}`);
    if (!USER_NKEY_RE.test(key)) {
      throw new TypeError(`principal ${p.name}: ${JSON.stringify(key)} is not a user public nkey`);
    }
    const what = `${p.role}${p.host ? ` of host ${p.host} (${p.backend})` : ""}`;
    return renderUser(`${p.name}: ${what}; replies on ${inboxPrefix(p)}.>`, key, permissionsFor(p, r));
  });
  for (const x of opts.extraUsers ?? []) users.push(renderUser(x.comment, x.nkey, x.permissions));
  return `${opts.header ?? ""}authorization {\n  timeout: 2\n  users = [\n${users.join("\n")}\n  ]\n}\n`;
}

// ---------------------------------------------------------------------------------------------------
// Defence in depth on the receiving side

/**
 * Where an agent event came from, judged by its subject: cxlrc.evt.<host>.<device>.<kind...>. The server only
 * lets agent H publish under cxlrc.evt.H.>, so the subject's host token is the publisher's host (or the
 * coordinator's). A consumer must check that the envelope names the same host (and, for a device event, the
 * same device) before believing it, and that its opId is one it issued.
 */
export function eventOrigin(subject: string): { host: string; device: string; kind: string } | null {
  const parts = subject.split(".");
  if (parts.length < 5 || parts[0] !== PREFIX || parts[1] !== "evt") return null;
  const [, , host, device, ...kind] = parts as [string, string, string, string, ...string[]];
  if (!HOST_RE.test(host)) return null;
  return { host, device, kind: kind.join(".") };
}

/**
 * Accept an agent's event only when its subject, its envelope and the operation agree: the envelope's host
 * is the subject's host, its device token matches, and its opId (if any) is one this coordinator issued to
 * that host. Returns the reason for refusing, or null when the event may be believed.
 */
export function checkAgentEvent(
  subject: string,
  env: { host: string; bdf: string | null; kind: string; opId?: string | undefined },
  issued: (host: string, opId: string) => boolean,
): string | null {
  const o = eventOrigin(subject);
  if (!o) return `subject ${JSON.stringify(subject)} is not an event subject`;
  if (env.host !== o.host)
    return `event names host ${JSON.stringify(env.host)} but came on ${o.host}'s subject`;
  const device = env.bdf === null ? "agent" : env.bdf.replace(/[:.]/g, "-");
  if (device !== o.device) return `event names device ${String(env.bdf)} but came on ${o.device}'s subject`;
  if (o.kind !== env.kind)
    return `event kind ${JSON.stringify(env.kind)} differs from the subject's ${o.kind}`;
  if (env.opId !== undefined && !issued(o.host, env.opId)) {
    return `operation ${JSON.stringify(env.opId)} was not issued to host ${o.host}`;
  }
  return null;
}
