// Who may do what on the bus, as nats-server accounts and per-user allow-lists, derived from
// shared/bus/subjects.ts. deploy/nats/gen-users.ts renders this into the server's accounts file (one user per
// principal, keyed by its TLS client certificate's subject DN), so the server configuration cannot drift from
// the subjects the services use.
//
// Accounts (each a subject space of its own; traffic crosses only through the exports and imports below):
// - CXLRC       JetStream (streams CXLRC_EVENTS, CXLRC_REQUESTS, the KV buckets) and the coordinators.
//               Exports the reset request subjects and the control endpoints as services to the roles that
//               use them, the agents' event subjects (cxlrc.agt.>) as a service to AGENTS (JetStream stores the
//               event and its PubAck goes back), and the event subjects as streams to the readers.
// - AGENTS      every host agent. Exports its operations to CXLRC (never "fault"), each simulated host's
//               "fault" to CHAOS, service discovery to SRE.
// - CONTROLLERS, SRE, OPERATORS, CHAOS: the people and tools, importing exactly what their role uses.
// Every service import is `share: true`: the server stamps the caller into the Nats-Request-Info header (which
// a client cannot forge across the import) and rewrites the reply subject to `_R_.…`, so a reply subject a
// sender chose can never aim an answer or a JetStream PubAck at `$JS.API` or `$KV` subjects of CXLRC.
//
// Users (allow-lists, anything else denied by the server):
// - coordinator (CXLRC)  the JetStream API calls it makes on its own streams (no purge, no delete, no message
//                        delete), its KV buckets, agent commands (not "fault"), events (cxlrc.evt.>), request
//                        stream writes (submit); serves cxlrc.ctl.>, reads events.
// - agent of H (AGENTS)  publishes cxlrc.agt.H.> only; serves cxlrc.agent.H.> (real hardware: not .fault)
//                        and its discovery subjects.
// - controller           cxlrc.req.reset|ctl.plan|ctl.submit .<h> for the hosts the roster gives it (exact names,
//                        "*" or glob patterns expanded against the roster's agent hosts), replay; live events.
// - sre                  status, image, replay, service discovery; live events.
// - operator             release, breaker, status, image, replay; live events.
// - chaos                cxlrc.agent.<simulated host>.fault only.
// Readers have no JetStream API at all: live events come through the stream imports, the past through
// cxlrc.ctl.events. Every principal receives replies only on its own inbox prefix (_INBOX.<name>.>).
import { z } from "zod";
import { AGENT_OPS, BUCKETS, checkHost, HOST_RE, PREFIX, STREAMS, subjects } from "./subjects.ts";

export const ROLES = ["controller", "coordinator", "agent", "sre", "operator", "chaos"] as const;
export type Role = (typeof ROLES)[number];

/** The account of each role. */
export const ACCOUNT_OF = {
  coordinator: "CXLRC",
  agent: "AGENTS",
  controller: "CONTROLLERS",
  sre: "SRE",
  operator: "OPERATORS",
  chaos: "CHAOS",
} as const satisfies Record<Role, string>;
export type AccountName = (typeof ACCOUNT_OF)[Role];
export const ACCOUNTS: readonly AccountName[] = [
  "CXLRC",
  "AGENTS",
  "CONTROLLERS",
  "SRE",
  "OPERATORS",
  "CHAOS",
];

/** Principal names become one subject token (the inbox prefix) and file names. */
export const PRINCIPAL_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** A controller's host: an exact host name, "*" (every host) or a glob such as "rack1-*". */
export const HOST_PATTERN_RE = /^[A-Za-z0-9_*-]{1,64}$/;

/** One identity on the bus: a role, a unique name; agents name their host and backend, controllers their hosts. */
export const Principal = z
  .strictObject({
    name: z.string().regex(PRINCIPAL_NAME_RE, "1-64 letters, digits, '-' or '_'"),
    role: z.enum(ROLES),
    /** agent only: the host whose subjects it serves. */
    host: z.string().regex(HOST_RE, "1-64 letters, digits, '-' or '_'").optional(),
    /** agent only: "sim" backends serve fault injection (chaos role); "sysfs" (real hardware) never does. */
    backend: z.enum(["sysfs", "sim"]).optional(),
    /**
     * controller only: the hosts it may send requests for (exact names, "*" = every host, or globs such as
     * "rack1-*" expanded against the roster's agent hosts when the file is generated). Default ["*"]; a
     * production roster should name them.
     */
    hosts: z
      .array(
        z.string().regex(HOST_PATTERN_RE, "a host name, '*', or a glob of letters, digits, '-', '_', '*'"),
      )
      .min(1)
      .optional(),
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
    if (p.role !== "controller" && p.hosts !== undefined) {
      ctx.addIssue({ code: "custom", path: ["hosts"], message: "only for role controller" });
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
  // A controller's host or pattern must name at least one agent host of the roster: a typo would otherwise
  // silently give it nothing (or, worse, look like it scoped something).
  r.principals.forEach((p, i) => {
    for (const [j, h] of (p.hosts ?? []).entries()) {
      if (h === "*") continue;
      if (![...hosts].some((x) => globMatches(h, x))) {
        ctx.addIssue({
          code: "custom",
          path: ["principals", i, "hosts", j],
          message: `${JSON.stringify(h)} matches no agent host of the roster`,
        });
      }
    }
  });
});
export type Roster = z.infer<typeof Roster>;

/** Does host `h` match a glob pattern ('*' = any run of characters)? */
export function globMatches(pattern: string, h: string): boolean {
  const re = new RegExp(`^${pattern.split("*").map(escapeRe).join(".*")}$`);
  return re.test(h);
}
function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\-]/g, "\\$&");
}

/**
 * The hosts a controller may act on: ["*"] (a subject wildcard: every host), or the roster's agent hosts its
 * names and patterns match, sorted.
 */
export function controllerHosts(p: Principal, roster: Roster): string[] {
  const patterns = p.hosts ?? ["*"];
  if (patterns.includes("*")) return ["*"];
  const agentHosts = roster.principals.flatMap((q) => (q.role === "agent" && q.host ? [q.host] : []));
  return [...new Set(agentHosts.filter((h) => patterns.some((g) => globMatches(g, h))))].sort();
}

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

/** The JetStream streams of CXLRC: the event and request streams and the KV buckets' streams. */
export function ownedStreams(): string[] {
  return [STREAMS.events.name, STREAMS.requests.name, ...Object.values(BUCKETS).map((b) => `KV_${b}`)];
}

/**
 * The JetStream API subjects the coordinator calls on one of its streams (shared/bus/client.ts ensureStreams,
 * services/coordinator store/leases/intake/event-replay/events through @nats-io/jetstream and @nats-io/kv):
 * create/update/info, message get (direct and by the API), consumers (create, update, info, delete, pull),
 * acks. Never STREAM.PURGE, STREAM.DELETE, STREAM.MSG.DELETE, snapshots or leader changes.
 */
export function streamApiSubjects(stream: string): string[] {
  return [
    `${JS_API}.STREAM.CREATE.${stream}`,
    `${JS_API}.STREAM.UPDATE.${stream}`,
    `${JS_API}.STREAM.INFO.${stream}`,
    `${JS_API}.STREAM.MSG.GET.${stream}`,
    `${JS_API}.DIRECT.GET.${stream}`,
    `${JS_API}.DIRECT.GET.${stream}.>`,
    `${JS_API}.CONSUMER.CREATE.${stream}`,
    `${JS_API}.CONSUMER.CREATE.${stream}.>`,
    `${JS_API}.CONSUMER.DURABLE.CREATE.${stream}.*`,
    `${JS_API}.CONSUMER.INFO.${stream}.*`,
    `${JS_API}.CONSUMER.DELETE.${stream}.*`,
    `${JS_API}.CONSUMER.MSG.NEXT.${stream}.*`,
    `$JS.ACK.${stream}.>`,
  ];
}

/** JetStream API operations nobody is given (a test checks none of the allow-lists reaches one). */
export const FORBIDDEN_JS_API = [
  "STREAM.DELETE",
  "STREAM.PURGE",
  "STREAM.MSG.DELETE",
  "STREAM.SNAPSHOT",
  "STREAM.RESTORE",
  "STREAM.LEADER.STEPDOWN",
  "STREAM.PEER.REMOVE",
  "CONSUMER.LEADER.STEPDOWN",
  "META.LEADER.STEPDOWN",
  "SERVER.REMOVE",
  "ACCOUNT.PURGE",
] as const;

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
/** What AGENTS exports of discovery (to SRE). */
export const DISCOVERY_ALL = "$SRV.>";

/** What a micro-service named `service` subscribes to for discovery (its own name only). */
export function discoveryServing(service: string): string[] {
  return ["$SRV.*", `$SRV.*.${service}`, `$SRV.*.${service}.*`];
}

/** The agent's fault-injection subject of one host (served by simulated backends only). */
export function faultSubject(host: string): string {
  return subjects.agent(host, "fault");
}

/** Agent operations the coordinator commands (every one but fault injection). */
export const COMMAND_OPS = AGENT_OPS.filter((op) => op !== "fault");
/** Every host's command subject of one operation (what AGENTS exports to CXLRC). */
export function commandsOfAnyHost(op: string): string {
  return `${PREFIX}.agent.*.${op}`;
}

/** KV bucket API subjects of the coordinator's buckets ($KV.<bucket>.>). */
export function kvSubjects(): string[] {
  return Object.values(BUCKETS).map((b) => `$KV.${b}.>`);
}

/** The simulated hosts of a roster (fault injection is served there only). */
export function simHosts(roster: Roster | undefined): string[] {
  return (roster?.principals ?? [])
    .filter((q) => q.role === "agent" && q.backend === "sim" && q.host !== undefined)
    .map((q) => q.host as string);
}

const uniq = (xs: string[]) => [...new Set(xs)];

/** Live events, as the readers' stream imports deliver them. */
const LIVE_EVENTS = [subjects.eventsAll, subjects.agentEventsAll];

/**
 * The permissions of one principal inside its account. `roster` is needed for chaos (which hosts are
 * simulated) and controllers (their host patterns); it may be omitted for every other role.
 */
export function permissionsFor(p: Principal, roster?: Roster): RolePermissions {
  const inbox = `${inboxPrefix(p)}.>`;
  switch (p.role) {
    case "controller": {
      if (roster === undefined && p.hosts?.some((h) => h !== "*")) {
        throw new TypeError(`controller ${p.name}: host patterns need the roster (its agent hosts)`);
      }
      const hosts = controllerHosts(p, roster ?? { principals: [p] });
      const scoped = (h: string) =>
        h === "*"
          ? [subjects.requestsOfAnyHost, subjects.planAll, subjects.submitAll]
          : [subjects.request(h), subjects.plan(h), subjects.submit(h)];
      return {
        publish: { allow: uniq([...hosts.flatMap(scoped), subjects.events]), deny: [] },
        subscribe: { allow: [inbox, ...LIVE_EVENTS], deny: [] },
        responses: null,
      };
    }
    case "coordinator":
      return {
        publish: {
          allow: uniq([
            `${JS_API}.INFO`,
            ...ownedStreams().flatMap(streamApiSubjects),
            "$JS.FC.>",
            ...kvSubjects(),
            ...COMMAND_OPS.map(commandsOfAnyHost),
            subjects.eventsAll,
            subjects.requestsAll,
          ]),
          deny: [],
        },
        subscribe: { allow: uniq([inbox, `${PREFIX}.ctl.>`, ...LIVE_EVENTS]), deny: [] },
        responses: { max: 1, expires: "2m" },
      };
    case "agent": {
      const host = checkHost(p.host ?? "");
      const serveFaults = p.backend === "sim";
      return {
        publish: { allow: [subjects.agentEventsOfHost(host)], deny: [] },
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
          allow: uniq([subjects.status, subjects.image, subjects.events, ...DISCOVERY_REQUESTS]),
          deny: [],
        },
        subscribe: { allow: [inbox, ...LIVE_EVENTS], deny: [] },
        responses: null,
      };
    case "operator":
      return {
        publish: {
          allow: uniq([subjects.release, subjects.breaker, subjects.status, subjects.image, subjects.events]),
          deny: [],
        },
        subscribe: { allow: [inbox, ...LIVE_EVENTS], deny: [] },
        responses: null,
      };
    case "chaos":
      return {
        publish: { allow: simHosts(roster).map(faultSubject), deny: [] },
        subscribe: { allow: [inbox], deny: [] },
        responses: null,
      };
  }
}

// ---------------------------------------------------------------------------------------------------
// Accounts: exports and imports

export interface Export {
  kind: "service" | "stream";
  subject: string;
  /** The only accounts that may import it. */
  to: AccountName[];
  /** service: several responses per request (discovery pings). */
  responseType?: "stream";
  /** service: how long the server keeps the reply route open (agent operations take minutes). */
  responseThreshold?: string;
  /** Why: a comment in the generated file. */
  why: string;
}

export interface Import {
  kind: "service" | "stream";
  from: AccountName;
  subject: string;
}

export interface AccountSpec {
  name: AccountName;
  jetstream: boolean;
  exports: Export[];
  /** Derived from the other accounts' exports that name this one: an import for each. */
  imports: Import[];
}

const READERS: AccountName[] = ["CONTROLLERS", "SRE", "OPERATORS"];

/** The exports of each account. Imports follow from them (every account imports what is exported to it). */
export function accountExports(roster: Roster): Record<AccountName, Export[]> {
  const svc = (subject: string, to: AccountName[], why: string, more: Partial<Export> = {}): Export => ({
    kind: "service",
    subject,
    to,
    why,
    ...more,
  });
  const stream = (subject: string, to: AccountName[], why: string): Export => ({
    kind: "stream",
    subject,
    to,
    why,
  });
  return {
    CXLRC: [
      svc(subjects.requestsOfAnyHost, ["CONTROLLERS"], "reset requests into CXLRC_REQUESTS (PubAck back)"),
      svc(subjects.planAll, ["CONTROLLERS"], "dry-run plans"),
      svc(subjects.submitAll, ["CONTROLLERS"], "reset requests by request/reply"),
      svc(subjects.status, ["SRE", "OPERATORS"], "fleet status"),
      svc(subjects.image, ["SRE", "OPERATORS"], "saved images"),
      svc(subjects.events, READERS, "replay of stored events (readers have no JetStream API)"),
      svc(subjects.release, ["OPERATORS"], "release from quarantine"),
      svc(subjects.breaker, ["OPERATORS"], "close the fleet breaker"),
      svc(subjects.agentEventsAll, ["AGENTS"], "agent events into CXLRC_EVENTS (PubAck back)"),
      stream(subjects.eventsAll, READERS, "the coordinator's events, live"),
    ],
    AGENTS: [
      ...COMMAND_OPS.map((op) =>
        svc(commandsOfAnyHost(op), ["CXLRC"], `agent operation ${op}`, { responseThreshold: "10m" }),
      ),
      ...simHosts(roster).map((h) =>
        svc(faultSubject(h), ["CHAOS"], `fault injection on simulated host ${h}`),
      ),
      svc(DISCOVERY_ALL, ["SRE"], "service discovery (every agent answers a ping)", {
        responseType: "stream",
      }),
      // From here, not from CXLRC: nats-server 2.9 does not pass a message that arrived through a service
      // import (the agents' events into CXLRC) on to CXLRC's stream exports.
      stream(subjects.agentEventsAll, READERS, "the agents' events, live"),
    ],
    CONTROLLERS: [],
    SRE: [],
    OPERATORS: [],
    CHAOS: [],
  };
}

/** Every account with its exports and the imports derived from the others' exports. */
export function accountsModel(roster: Roster): AccountSpec[] {
  const exports = accountExports(roster);
  return ACCOUNTS.map((name) => ({
    name,
    jetstream: name === "CXLRC",
    exports: exports[name],
    imports: ACCOUNTS.flatMap((from) =>
      exports[from]
        .filter((e) => e.to.includes(name))
        .map((e): Import => ({ kind: e.kind, from, subject: e.subject })),
    ),
  }));
}

// ---------------------------------------------------------------------------------------------------
// nats-server accounts file

/** The certificate subject DN of the test CA (deploy/tls/make-test-ca.sh), as the server renders it (RFC 2253). */
export const TEST_CERT_DN = "CN={name},O=cxlrc TEST ONLY";

/** A principal's certificate DN from a template holding "{name}". */
export function certDn(template: string, name: string): string {
  if (!template.includes("{name}")) {
    throw new TypeError(`certificate DN template ${JSON.stringify(template)} has no {name}`);
  }
  if (/[\n\r"\\]/.test(template)) {
    throw new TypeError(
      `certificate DN template ${JSON.stringify(template)}: no quotes, backslashes or new lines`,
    );
  }
  if (!/^[A-Za-z][A-Za-z0-9.]*=/.test(template)) {
    throw new TypeError(
      `certificate DN template ${JSON.stringify(template)} must start with an attribute (CN=...)`,
    );
  }
  return template.split("{name}").join(name);
}

/**
 * The public key of an nkey user whose seed nobody holds (it was thrown away when this line was written), alone
 * in an account with no rights and no imports. Its only job: with at least one nkey user configured, nats-server
 * checks every nkey a client presents (unknown: refused; known: it must sign the nonce). With none, 2.9 takes a
 * certificate-mapped client's unverified CONNECT nkey as is and names it, instead of the certificate's DN, as
 * the `user` of Nats-Request-Info, the caller a responder sees.
 */
export const LOCKED_NKEY = "UAD3WNAXW2CNWNSRPDYMBFHL6XMCPQ2ZZTZHIJUPPUN2E2GT5ML5VJAW";
export const LOCKED_ACCOUNT = "LOCKED";

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

/** One user entry: keyed by its certificate DN (verify_and_map), no password, no nkey. */
function renderUser(comment: string, dn: string, perms: RolePermissions): string {
  return [
    `      # ${comment}`,
    "      {",
    `        user: ${q(dn)}`,
    "        permissions: {",
    subjectBlock("publish", perms.publish, "          "),
    subjectBlock("subscribe", perms.subscribe, "          "),
    ...(perms.responses
      ? [`          allow_responses: { max: ${perms.responses.max}, expires: ${q(perms.responses.expires)} }`]
      : []),
    "        }",
    "      }",
  ].join("\n");
}

function renderExport(e: Export): string {
  const fields = [
    `${e.kind}: ${q(e.subject)}`,
    `accounts: [${e.to.join(", ")}]`,
    ...(e.responseType ? [`response_type: ${e.responseType}`] : []),
    ...(e.responseThreshold ? [`response_threshold: ${q(e.responseThreshold)}`] : []),
  ];
  return `      # ${e.why}\n      { ${fields.join(", ")} }`;
}

function renderImport(i: Import): string {
  return i.kind === "service"
    ? `      { service: { account: ${i.from}, subject: ${q(i.subject)} }, share: true }`
    : `      { stream: { account: ${i.from}, subject: ${q(i.subject)} } }`;
}

export interface ExtraUser {
  comment: string;
  account: AccountName;
  /** The user's certificate DN. */
  dn: string;
  permissions: RolePermissions;
}

export interface RenderAccountsOptions {
  /** Comment lines put first. */
  header?: string;
  /** The certificate subject DN of a principal, "{name}" replaced by its name. Default TEST_CERT_DN. */
  certDn?: string;
  /** Users outside the roster's roles (tests: a witness that subscribes to everything in CXLRC). */
  extraUsers?: ExtraUser[];
}

/**
 * The `accounts { ... }` block for nats-server: one user per principal in its role's account, keyed by its
 * client certificate's subject DN (the server config must set `verify_and_map: true`), with the exports and
 * imports of accountsModel(). No password, no nkey, no default user.
 */
export function renderAccountsConf(roster: Roster, opts: RenderAccountsOptions = {}): string {
  const r = Roster.parse(roster);
  const template = opts.certDn ?? TEST_CERT_DN;
  const dns = new Map<string, string>();
  const users = new Map<AccountName, string[]>(ACCOUNTS.map((a) => [a, []]));
  const addUser = (account: AccountName, dn: string, text: string) => {
    const other = dns.get(dn);
    if (other !== undefined) throw new TypeError(`two users with the certificate DN ${dn}`);
    dns.set(dn, account);
    users.get(account)?.push(text);
  };
  for (const p of r.principals) {
    const dn = certDn(template, p.name);
    const what =
      p.role === "agent"
        ? `agent of host ${p.host} (${p.backend})`
        : p.role === "controller"
          ? `controller of hosts ${controllerHosts(p, r).join(", ")}`
          : p.role;
    addUser(
      ACCOUNT_OF[p.role],
      dn,
      renderUser(`${p.name}: ${what}; replies on ${inboxPrefix(p)}.>`, dn, permissionsFor(p, r)),
    );
  }
  for (const x of opts.extraUsers ?? []) addUser(x.account, x.dn, renderUser(x.comment, x.dn, x.permissions));
  const globs = r.principals.filter((p) => p.role === "controller" && p.hosts?.some((h) => h !== "*"));
  const blocks = accountsModel(r).map((a) => {
    const lines = [`  ${a.name}: {`];
    if (a.jetstream) lines.push("    jetstream: enabled");
    const us = users.get(a.name) ?? [];
    lines.push(us.length > 0 ? `    users: [\n${us.join("\n")}\n    ]` : "    users: []");
    if (a.exports.length > 0) lines.push(`    exports: [\n${a.exports.map(renderExport).join("\n")}\n    ]`);
    if (a.imports.length > 0) lines.push(`    imports: [\n${a.imports.map(renderImport).join("\n")}\n    ]`);
    lines.push("  }");
    return lines.join("\n");
  });
  blocks.push(
    [
      `  # No one: an nkey user nobody can sign for, so that the server verifies (and refuses) any nkey a client`,
      `  # presents next to its certificate. No rights, no imports.`,
      `  ${LOCKED_ACCOUNT}: {`,
      `    users: [`,
      `      { nkey: ${q(LOCKED_NKEY)}, permissions: { publish: { deny: [">"] }, subscribe: { deny: [">"] } } }`,
      "    ]",
      "  }",
    ].join("\n"),
  );
  const note = globs.length
    ? "# Controller host patterns were expanded against the roster's agent hosts when this file was made:\n" +
      "# regenerate it when the roster's hosts change.\n"
    : "";
  return `${opts.header ?? ""}${note}accounts {\n${blocks.join("\n")}\n}\n`;
}
