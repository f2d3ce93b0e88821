// The pieces behind the bus security, without a server: the accounts and permission lists (derived from
// subjects.ts, consistent with the services), the accounts file, credential loading (files, environment, file
// modes, no secret in messages or logs), and the per-requester rate limiter (property-based, virtual clock).
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { nkeys } from "@nats-io/transport-node";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { credentialsFile, envFile, loadRoster } from "../../deploy/nats/gen-users.ts";
import { AGENT_SERVICE_NAME } from "../../services/agent/service.ts";
import { EVENT } from "../../services/coordinator/events.ts";
import {
  connectionOptions,
  credentialsFromEnv,
  describeCredentials,
  loadCredentialsFile,
} from "../../shared/bus/credentials.ts";
import {
  ACCOUNT_OF,
  ACCOUNTS,
  AGENT_SERVICE,
  accountsModel,
  certDn,
  controllerHosts,
  FORBIDDEN_JS_API,
  LOCKED_NKEY,
  ownedStreams,
  permissionsFor,
  ROLES,
  Roster,
  renderAccountsConf,
  TEST_CERT_DN,
} from "../../shared/bus/permissions.ts";
import { RateLimiter } from "../../shared/bus/rate-limit.ts";
import { AGENT_OPS, BUCKETS, STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { createLogger } from "../../shared/log.ts";
import { DEPLOY, REPO } from "./env.ts";
import { TEST_ROSTER } from "./roster.ts";

const dir = mkdtempSync(join(tmpdir(), "cxlrc-sec-units-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** NATS subject matching (pattern may hold * and >). */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== "*" && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}
const allowed = (l: { allow: string[]; deny: string[] }, subject: string) =>
  l.allow.some((a) => matches(a, subject)) && !l.deny.some((d) => matches(d, subject));

const DEV = "0000:01:00.0";

describe("permissions.ts: users", () => {
  const r = Roster.parse(TEST_ROSTER);
  const of = (name: string) => permissionsFor(r.principals.find((p) => p.name === name)!, r);

  it("names the same service, streams, buckets and subjects as the services", () => {
    expect(AGENT_SERVICE).toBe(AGENT_SERVICE_NAME);
    const coord = of("coord-1");
    for (const b of Object.values(BUCKETS)) expect(allowed(coord.publish, `$KV.${b}.sim-a.x`)).toBe(true);
    for (const s of ownedStreams()) {
      for (const api of ["STREAM.CREATE", "STREAM.UPDATE", "STREAM.INFO", "STREAM.MSG.GET"]) {
        expect(allowed(coord.publish, `$JS.API.${api}.${s}`), `${api} ${s}`).toBe(true);
      }
      expect(allowed(coord.publish, `$JS.API.DIRECT.GET.${s}.$KV.x.y`)).toBe(true);
      expect(allowed(coord.publish, `$JS.API.CONSUMER.CREATE.${s}.c1.cxlrc.req.reset.*`)).toBe(true);
      expect(allowed(coord.publish, `$JS.API.CONSUMER.MSG.NEXT.${s}.c1`)).toBe(true);
      expect(allowed(coord.publish, `$JS.ACK.${s}.c1.1.2.3.4.0`)).toBe(true);
    }
    expect(ownedStreams()).toEqual(
      expect.arrayContaining([STREAMS.events.name, STREAMS.requests.name, `KV_${BUCKETS.images}`]),
    );
    for (const op of AGENT_OPS)
      expect(allowed(coord.publish, subjects.agent("sim-a", op))).toBe(op !== "fault");
    for (const s of [
      subjects.plan("sim-a"),
      subjects.submit("hw-1"),
      subjects.status,
      subjects.release,
      subjects.image,
      subjects.breaker,
      subjects.events,
      subjects.agentEvent("sim-a", DEV, "op.completed"),
      subjects.event("sim-a", DEV, "verified"),
    ]) {
      expect(allowed(coord.subscribe, s), s).toBe(true);
    }
  });

  it("nobody may purge, delete or snapshot a stream, nor touch a stream the coordinator does not own", () => {
    for (const p of r.principals) {
      const perms = permissionsFor(p, r);
      for (const s of [...ownedStreams(), "OTHER"]) {
        for (const api of FORBIDDEN_JS_API) {
          expect(allowed(perms.publish, `$JS.API.${api}.${s}`), `${p.name} ${api} ${s}`).toBe(false);
        }
      }
      for (const api of ["STREAM.CREATE", "STREAM.INFO", "CONSUMER.CREATE"]) {
        expect(allowed(perms.publish, `$JS.API.${api}.OTHER`), `${p.name} ${api} OTHER`).toBe(false);
      }
    }
  });

  it("readers, agents and chaos have no JetStream or KV API at all", () => {
    for (const p of r.principals.filter((x) => x.role !== "coordinator")) {
      const perms = permissionsFor(p, r);
      for (const a of [...perms.publish.allow, ...perms.subscribe.allow]) {
        expect(a.startsWith("$JS") || a.startsWith("$KV") || a === ">", `${p.name}: ${a}`).toBe(false);
      }
    }
  });

  it("an agent publishes only its own host's agent events: every kind it emits there, nothing under cxlrc.evt.>", () => {
    // Every kind an agent emits (grep of services/agent) stays publishable by the agent on its own subject.
    const src = ["ops", "."]
      .flatMap((d) => {
        const base = join(REPO, "services/agent", d);
        return readdirSync(base)
          .filter((f) => f.endsWith(".ts"))
          .map((f) => readFileSync(join(base, f), "utf8"));
      })
      .join("\n");
    const agentKinds = [...src.matchAll(/emit(?:Event)?\([^,()]+,\s*"([A-Za-z0-9_.-]+)"/g)].map(
      (m) => m[1] as string,
    );
    expect(agentKinds.length).toBeGreaterThan(10);
    const agent = of("agent-sim-a");
    for (const k of new Set(agentKinds)) {
      expect(allowed(agent.publish, subjects.agentEvent("sim-a", DEV, k)), k).toBe(true);
      expect(allowed(agent.publish, subjects.agentEvent("sim-a", null, k)), k).toBe(true);
    }
    // The coordinator's subject space is closed to it: every kind, listed or not.
    for (const k of [...Object.values(EVENT), ...agentKinds, "planned", "step.failed", "anything.at.all"]) {
      expect(allowed(agent.publish, subjects.event("sim-a", DEV, k)), k).toBe(false);
      expect(allowed(agent.publish, subjects.hostEvent("sim-a", k)), k).toBe(false);
    }
    expect(agent.publish).toEqual({ allow: [subjects.agentEventsOfHost("sim-a")], deny: [] });
  });

  it("property: an agent publishes only under its own host, subscribes only to its own commands", () => {
    const host = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
    fc.assert(
      fc.property(host, host, fc.constantFrom(...AGENT_OPS), (h, other, op) => {
        fc.pre(h !== other);
        const ros = Roster.parse({
          principals: [
            { name: "a", role: "agent", host: h, backend: "sim" },
            { name: "b", role: "agent", host: other, backend: "sysfs" },
            { name: "c", role: "chaos" },
          ],
        });
        const [pa, pb, pc] = ros.principals.map((p) => permissionsFor(p, ros));
        expect(allowed(pa!.publish, `cxlrc.agt.${h}.0000-01-00-0.op.started`)).toBe(true);
        expect(allowed(pa!.publish, `cxlrc.agt.${other}.0000-01-00-0.op.started`)).toBe(false);
        expect(allowed(pa!.publish, `cxlrc.evt.${h}.0000-01-00-0.op.started`)).toBe(false);
        expect(allowed(pa!.subscribe, subjects.agent(h, op))).toBe(true);
        expect(allowed(pa!.subscribe, subjects.agent(other, op))).toBe(false);
        expect(allowed(pb!.subscribe, subjects.agent(other, op))).toBe(op !== "fault");
        expect(allowed(pc!.publish, subjects.agent(h, op))).toBe(op === "fault");
        expect(allowed(pc!.publish, subjects.agent(other, op))).toBe(false);
      }),
      { seed: 7, numRuns: 200 },
    );
  });

  it("only controllers request resets (their hosts); only the operator releases; nobody but the coordinator writes KV", () => {
    for (const role of ROLES) {
      const p = r.principals.find((x) => x.role === role)!;
      const perms = permissionsFor(p, r);
      const requester = role === "controller" || role === "coordinator";
      expect(allowed(perms.publish, subjects.request("sim-a")), role).toBe(requester);
      expect(allowed(perms.publish, subjects.submit("sim-a")), role).toBe(role === "controller");
      expect(allowed(perms.publish, subjects.plan("sim-b")), role).toBe(role === "controller");
      expect(allowed(perms.publish, subjects.release), role).toBe(role === "operator");
      expect(allowed(perms.publish, subjects.breaker), role).toBe(role === "operator");
      expect(allowed(perms.publish, subjects.events), role).toBe(
        ["controller", "sre", "operator"].includes(role),
      );
      expect(allowed(perms.publish, `$KV.${BUCKETS.leases}.x`), role).toBe(role === "coordinator");
      expect(allowed(perms.subscribe, "_INBOX.someone-else.x.y"), role).toBe(false);
      expect(allowed(perms.subscribe, `_INBOX.${p.name}.abc.1`), role).toBe(true);
    }
  });

  it("a controller's hosts: exact names, '*', globs expanded against the roster's agent hosts", () => {
    const ctl = of("controller"); // sim-*
    const hw = of("controller-hw"); // hw-1
    for (const [h, a, b] of [
      ["sim-a", true, false],
      ["sim-b", true, false],
      ["hw-1", false, true],
    ] as const) {
      for (const s of [subjects.request(h), subjects.plan(h), subjects.submit(h)]) {
        expect(allowed(ctl.publish, s), `controller ${s}`).toBe(a);
        expect(allowed(hw.publish, s), `controller-hw ${s}`).toBe(b);
      }
    }
    // The expansion is at generation time: a later host "sim-c" is not covered until the file is regenerated.
    expect(allowed(ctl.publish, subjects.request("sim-c"))).toBe(false);
    expect(ctl.publish.allow).not.toContain(subjects.requestsOfAnyHost);
    const all = Roster.parse({
      principals: [
        { name: "agent-x", role: "agent", host: "rack1-x", backend: "sysfs" },
        { name: "agent-y", role: "agent", host: "rack2-y", backend: "sysfs" },
        { name: "c-all", role: "controller" },
        { name: "c-rack1", role: "controller", hosts: ["rack1-*"] },
        { name: "c-star", role: "controller", hosts: ["*", "rack1-*"] },
      ],
    });
    const [, , cAll, cRack1, cStar] = all.principals;
    expect(controllerHosts(cAll!, all)).toEqual(["*"]);
    expect(controllerHosts(cRack1!, all)).toEqual(["rack1-x"]);
    expect(controllerHosts(cStar!, all)).toEqual(["*"]);
    const pAll = permissionsFor(cAll!, all);
    expect(allowed(pAll.publish, subjects.request("any-host"))).toBe(true);
    expect(allowed(pAll.publish, subjects.plan("rack2-y"))).toBe(true);
    expect(allowed(permissionsFor(cRack1!, all).publish, subjects.plan("rack2-y"))).toBe(false);
    // A pattern that names no agent host of the roster is an error naming it; hosts are for controllers only.
    const bad = Roster.safeParse({
      principals: [...all.principals, { name: "c-typo", role: "controller", hosts: ["rakc1-*"] }],
    });
    expect(bad.success).toBe(false);
    expect(JSON.stringify(bad.error?.issues)).toMatch(/rakc1-\*.*matches no agent host/);
    expect(
      Roster.safeParse({ principals: [{ name: "s", role: "sre", hosts: ["*"] }] }).error?.issues[0]?.message,
    ).toMatch(/only for role controller/);
    expect(
      Roster.safeParse({ principals: [{ name: "c", role: "controller", hosts: ["a.b"] }] }).success,
    ).toBe(false);
  });
});

describe("permissions.ts: accounts", () => {
  const r = Roster.parse(TEST_ROSTER);
  const model = accountsModel(r);
  const acc = (n: string) => model.find((a) => a.name === n)!;

  it("each role lives in its account; JetStream only in CXLRC", () => {
    expect(ACCOUNT_OF.coordinator).toBe("CXLRC");
    expect(new Set(Object.values(ACCOUNT_OF))).toEqual(new Set(ACCOUNTS));
    expect(model.filter((a) => a.jetstream).map((a) => a.name)).toEqual(["CXLRC"]);
  });

  it("every import matches an export that names the importer; services cross, events are streams", () => {
    for (const a of model) {
      for (const i of a.imports) {
        const e = acc(i.from).exports.find((x) => x.subject === i.subject && x.kind === i.kind);
        expect(e, `${a.name} imports ${i.subject} from ${i.from}`).toBeDefined();
        expect(e?.to).toContain(a.name);
      }
    }
    const imports = (n: string) =>
      acc(n)
        .imports.map((i) => `${i.kind} ${i.from} ${i.subject}`)
        .sort();
    expect(imports("CONTROLLERS")).toEqual(
      [
        `service CXLRC ${subjects.requestsOfAnyHost}`,
        `service CXLRC ${subjects.planAll}`,
        `service CXLRC ${subjects.submitAll}`,
        `service CXLRC ${subjects.events}`,
        `stream CXLRC ${subjects.eventsAll}`,
        `stream AGENTS ${subjects.agentEventsAll}`,
      ].sort(),
    );
    expect(imports("CHAOS")).toEqual([
      "service AGENTS cxlrc.agent.sim-a.fault",
      "service AGENTS cxlrc.agent.sim-b.fault",
    ]);
    expect(imports("AGENTS")).toEqual([`service CXLRC ${subjects.agentEventsAll}`]);
    // CXLRC imports every agent operation but fault injection.
    expect(imports("CXLRC")).toEqual(
      AGENT_OPS.filter((o) => o !== "fault")
        .map((o) => `service AGENTS cxlrc.agent.*.${o}`)
        .sort(),
    );
    for (const n of ["SRE", "OPERATORS"]) {
      expect(imports(n).filter((i) => i.startsWith("stream"))).toEqual(
        [`stream AGENTS ${subjects.agentEventsAll}`, `stream CXLRC ${subjects.eventsAll}`].sort(),
      );
      expect(imports(n).some((i) => i.includes("$JS") || i.includes("$KV"))).toBe(false);
    }
  });

  it("each user's allow-list stays inside what its account imports or owns", () => {
    // A reader's publish subjects are all service imports of its account (else they would go nowhere).
    for (const p of r.principals.filter((x) => ["controller", "sre", "operator", "chaos"].includes(x.role))) {
      const a = acc(ACCOUNT_OF[p.role]);
      for (const s of permissionsFor(p, r).publish.allow) {
        const concrete = s.replace(/\*/g, "sim-a");
        expect(
          a.imports.some((i) => i.kind === "service" && matches(i.subject, concrete)),
          `${p.name}: ${s}`,
        ).toBe(true);
      }
    }
  });

  it("renders one user per principal keyed by its certificate DN; no password, no usable nkey, no default user", () => {
    const text = renderAccountsConf(r);
    for (const p of r.principals) expect(text).toContain(`user: "${certDn(TEST_CERT_DN, p.name)}"`);
    expect(text.match(/user: "CN=/g)).toHaveLength(r.principals.length);
    expect(text.match(/nkey: "U[A-Z2-7]{55}"/g)).toEqual([`nkey: "${LOCKED_NKEY}"`]);
    expect(text).not.toMatch(/password|no_auth_user|"SU[A-Z2-7]{56}"/);
    expect(text.match(/jetstream: enabled/g)).toHaveLength(1);
    // Every service import shares the caller (Nats-Request-Info; reply subjects rewritten).
    const serviceImports = text.split("\n").filter((l) => /\{ service: \{ account:/.test(l));
    expect(serviceImports.length).toBeGreaterThan(10);
    for (const l of serviceImports) expect(l).toMatch(/share: true \}$/);
    // Exports name their importers.
    for (const l of text.split("\n").filter((x) => /^\s+\{ (service|stream): "/.test(x))) {
      expect(l).toMatch(/accounts: \[[A-Z, ]+\]/);
    }
    const custom = renderAccountsConf(r, { certDn: "CN={name},OU=bus,O=Example" });
    expect(custom).toContain('user: "CN=coord-1,OU=bus,O=Example"');
    expect(() => renderAccountsConf(r, { certDn: "CN=fixed" })).toThrow(/has no \{name\}/);
    expect(() => renderAccountsConf(r, { certDn: 'CN={name}",x' })).toThrow(/no quotes/);
    const dup = { principals: [...r.principals] };
    expect(() =>
      renderAccountsConf(dup, {
        extraUsers: [
          {
            comment: "x",
            account: "SRE",
            dn: certDn(TEST_CERT_DN, "sre"),
            permissions: permissionsFor(r.principals.find((p) => p.name === "sre")!, r),
          },
        ],
      }),
    ).toThrow(/two users with the certificate DN/);
  });

  it("the example rosters parse; env and credentials files name the certificate and inbox, no secret", () => {
    for (const f of ["compose/roster.json", "k8s/roster.example.json"]) {
      const ros = loadRoster(join(DEPLOY, f));
      expect(renderAccountsConf(ros)).toMatch(/accounts \{/);
    }
    const compose = loadRoster(join(DEPLOY, "compose/roster.json"));
    const p = compose.principals.find((x) => x.role === "agent")!;
    const env = envFile(p, { tlsDir: "/t" });
    expect(env).toContain(`CXLRC_NATS_INBOX_PREFIX=_INBOX.${p.name}`);
    expect(env).toContain(`CXLRC_NATS_TLS_CERT_FILE=/t/${p.name}.pem`);
    expect(env).toContain(`CXLRC_NATS_TLS_KEY_FILE=/t/${p.name}-key.pem`);
    expect(env).not.toMatch(/NKEY|SEED|PASSWORD|CREDS/);
    expect(envFile(p, { tlsDir: "/t", systemdCredentials: true })).not.toMatch(/TLS_KEY_FILE=/);
    expect(credentialsFile(p, { tlsDir: "/t" })).toEqual({
      tls: { caFile: "/t/ca.pem", certFile: `/t/${p.name}.pem`, keyFile: `/t/${p.name}-key.pem` },
      inboxPrefix: `_INBOX.${p.name}`,
    });
  });
});

describe("credentials.ts", () => {
  const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
  const seedFile = join(dir, "user.nk");
  writeFileSync(seedFile, `${seed}\n`, { mode: 0o600 });
  const keyFile = join(dir, "client-key.pem");
  writeFileSync(keyFile, "-----BEGIN PRIVATE KEY-----\n", { mode: 0o600 });

  it("loads an nkey seed file, TLS files and the inbox prefix from the environment", () => {
    const c = credentialsFromEnv({
      CXLRC_NATS_NKEY_SEED_FILE: seedFile,
      CXLRC_NATS_TLS_CA_FILE: "/ca.pem",
      CXLRC_NATS_TLS_CERT_FILE: "/c.pem",
      CXLRC_NATS_TLS_KEY_FILE: keyFile,
      CXLRC_NATS_INBOX_PREFIX: "_INBOX.agent-a",
    });
    expect(c?.auth).toEqual({ kind: "nkey", seedFile });
    const o = connectionOptions(c);
    expect(typeof o.authenticator).toBe("function");
    expect(o.tls).toEqual({ caFile: "/ca.pem", certFile: "/c.pem", keyFile });
    expect(o.inboxPrefix).toBe("_INBOX.agent-a");
    const d = JSON.stringify(describeCredentials(c));
    expect(d).not.toContain(seed);
    expect(d).toContain(nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey());
    expect(credentialsFromEnv({})).toBeUndefined();
  });

  it("loads the same from a JSON credentials file", () => {
    const f = join(dir, "creds.json");
    writeFileSync(
      f,
      JSON.stringify({ nkeySeedFile: seedFile, tls: { caFile: "/ca.pem" }, inboxPrefix: "_INBOX.sre" }),
    );
    const c = loadCredentialsFile(f);
    expect(c.auth?.kind).toBe("nkey");
    expect(c.inboxPrefix).toBe("_INBOX.sre");
    expect(credentialsFromEnv({ CXLRC_NATS_CREDENTIALS_FILE: f })?.tls).toEqual({ caFile: "/ca.pem" });
    writeFileSync(f, JSON.stringify({ nkeySeedFile: seedFile, seed: "x" }));
    expect(() => loadCredentialsFile(f)).toThrow(/seed/);
  });

  it("loads a TLS-only credentials file (what gen-users writes): the certificate is the identity", () => {
    const f = join(dir, "tls-only.json");
    writeFileSync(
      f,
      JSON.stringify({ tls: { caFile: "/ca.pem", certFile: "/c.pem", keyFile }, inboxPrefix: "_INBOX.sre" }),
    );
    const c = loadCredentialsFile(f);
    expect(c.auth).toBeUndefined();
    const o = connectionOptions(c);
    expect(o.authenticator).toBeUndefined();
    expect(o.user).toBeUndefined();
    expect(o.tls).toEqual({ caFile: "/ca.pem", certFile: "/c.pem", keyFile });
    expect(describeCredentials(c)).toMatchObject({ auth: "none", tls: { cert: "/c.pem" } });
  });

  it("refuses secrets readable by others, bad seeds, two auth methods, half a certificate", () => {
    const open = join(dir, "open.nk");
    writeFileSync(open, seed, { mode: 0o644 });
    chmodSync(open, 0o644);
    expect(() => credentialsFromEnv({ CXLRC_NATS_NKEY_SEED_FILE: open })).toThrow(
      /accessible to other users/,
    );
    const notSeed = join(dir, "bad.nk");
    writeFileSync(notSeed, "SUNOTASEED", { mode: 0o600 });
    let msg = "";
    try {
      credentialsFromEnv({ CXLRC_NATS_NKEY_SEED_FILE: notSeed });
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/not a user nkey seed/);
    expect(msg).not.toContain("SUNOTASEED");
    expect(() => credentialsFromEnv({ CXLRC_NATS_NKEY_SEED: seed, CXLRC_NATS_USER: "u" })).toThrow(
      /more than one/,
    );
    expect(() => credentialsFromEnv({ CXLRC_NATS_TLS_CERT_FILE: "/c.pem" })).toThrow(
      /both the certificate and the key/,
    );
    expect(() => credentialsFromEnv({ CXLRC_NATS_INBOX_PREFIX: "_INBOX.>" })).toThrow(/inbox prefix/);
    expect(() => credentialsFromEnv({ CXLRC_NATS_PASSWORD: "p" })).toThrow(/without a user/);
  });

  it("pino redacts secret-looking keys in log objects", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(c, _e, done) {
        lines.push(String(c));
        done();
      },
    });
    const log = createLogger("t", { destination: sink });
    log.info(
      {
        nats: { servers: "x", pass: "hunter2", token: "tok-secret-42" },
        seed,
        config: { nats: { password: "pw" } },
      },
      "config",
    );
    const out = lines.join("");
    for (const secret of ["hunter2", "tok-secret-42", seed, '"pw"']) expect(out).not.toContain(secret);
    expect(out).toContain("[redacted]");
  });
});

describe("rate-limit.ts", () => {
  it("property: a requester never gets more than burst + rate × time; others are not affected", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.tuple(fc.constantFrom("a", "b"), fc.integer({ min: 0, max: 200 })), {
          minLength: 1,
          maxLength: 300,
        }),
        (burst, rate, steps) => {
          let t = 0;
          const lim = new RateLimiter({ perRequesterPerSec: rate, perRequesterBurst: burst, now: () => t });
          const got = { a: 0, b: 0 };
          for (const [who, dt] of steps) {
            t += dt;
            if (lim.take(who).ok) got[who as "a" | "b"]++;
          }
          for (const n of Object.values(got))
            expect(n).toBeLessThanOrEqual(burst + Math.ceil((rate * t) / 1000) + 1);
          // "b" starting now still has its whole burst, whatever "a" did.
          const fresh = new RateLimiter({ perRequesterPerSec: rate, perRequesterBurst: burst, now: () => 0 });
          for (let i = 0; i < burst * 3; i++) fresh.take("a");
          for (let i = 0; i < burst; i++) expect(fresh.take("b").ok).toBe(true);
        },
      ),
      { seed: 11, numRuns: 200 },
    );
  });

  it("a global limit caps everyone together and says when to retry", () => {
    let t = 0;
    const lim = new RateLimiter({
      perRequesterPerSec: 100,
      perRequesterBurst: 10,
      globalPerSec: 5,
      globalBurst: 5,
      now: () => t,
    });
    const ok = ["a", "b", "c", "d", "e", "f", "g"].map((w) => lim.take(w));
    expect(ok.filter((d) => d.ok)).toHaveLength(5);
    const refused = ok.find((d) => !d.ok);
    expect(refused).toMatchObject({ ok: false, scope: "global" });
    t += (refused as { retryAfterMs: number }).retryAfterMs;
    expect(lim.take("h").ok).toBe(true);
  });
});
