// The pieces behind the bus security, without a server: the permission lists (derived from subjects.ts,
// consistent with the services), the users file, credential loading (files, environment, file modes, no
// secret in messages or logs), and the per-requester rate limiter (property-based, virtual clock).
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { nkeys } from "@nats-io/transport-node";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { envFile, loadRoster } from "../../deploy/nats/gen-users.ts";
import { AGENT_SERVICE_NAME } from "../../services/agent/service.ts";
import { EVENT } from "../../services/coordinator/events.ts";
import {
  connectionOptions,
  credentialsFromEnv,
  describeCredentials,
  loadCredentialsFile,
} from "../../shared/bus/credentials.ts";
import {
  AGENT_SERVICE,
  COORDINATOR_ONLY_KINDS,
  checkAgentEvent,
  coordinatorKindDenies,
  permissionsFor,
  ROLES,
  Roster,
  renderUsersConf,
} from "../../shared/bus/permissions.ts";
import { RateLimiter, requesterOf } from "../../shared/bus/rate-limit.ts";
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

describe("permissions.ts", () => {
  const r = Roster.parse(TEST_ROSTER);
  const of = (name: string) => permissionsFor(r.principals.find((p) => p.name === name)!, r);

  it("names the same service, streams, buckets and subjects as the services", () => {
    expect(AGENT_SERVICE).toBe(AGENT_SERVICE_NAME);
    const coord = of("coord-1");
    for (const b of Object.values(BUCKETS)) expect(allowed(coord.publish, `$KV.${b}.sim-a.x`)).toBe(true);
    expect(allowed(coord.publish, `$JS.API.STREAM.CREATE.${STREAMS.events.name}`)).toBe(true);
    for (const op of AGENT_OPS)
      expect(allowed(coord.publish, subjects.agent("sim-a", op))).toBe(op !== "fault");
    for (const s of [
      subjects.plan,
      subjects.submit,
      subjects.status,
      subjects.release,
      subjects.image,
      subjects.breaker,
    ]) {
      expect(allowed(coord.subscribe, s)).toBe(true);
    }
  });

  it("coordinator-only kinds are the coordinator's: in its EVENT list or published by its intake, never by an agent", () => {
    const coordinatorKinds = new Set<string>([...Object.values(EVENT), "request.waiting", "breaker.closed"]);
    for (const k of COORDINATOR_ONLY_KINDS) expect(coordinatorKinds.has(k), k).toBe(true);
    // Every kind an agent emits (grep of services/agent) stays publishable by the agent.
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
      expect(allowed(agent.publish, subjects.event("sim-a", "0000:01:00.0", k)), k).toBe(true);
      expect(COORDINATOR_ONLY_KINDS as readonly string[]).not.toContain(k);
    }
    for (const k of COORDINATOR_ONLY_KINDS) {
      expect(allowed(agent.publish, subjects.event("sim-a", "0000:01:00.0", k)), k).toBe(false);
      expect(allowed(agent.publish, subjects.hostEvent("sim-a", k)), k).toBe(false);
    }
    expect(coordinatorKindDenies("sim-a").every((d) => d.startsWith("cxlrc.evt.sim-a.*."))).toBe(true);
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
        expect(allowed(pa!.publish, `cxlrc.evt.${h}.0000-01-00-0.op.started`)).toBe(true);
        expect(allowed(pa!.publish, `cxlrc.evt.${other}.0000-01-00-0.op.started`)).toBe(false);
        expect(allowed(pa!.subscribe, subjects.agent(h, op))).toBe(true);
        expect(allowed(pa!.subscribe, subjects.agent(other, op))).toBe(false);
        expect(allowed(pb!.subscribe, subjects.agent(other, op))).toBe(op !== "fault");
        expect(allowed(pc!.publish, subjects.agent(h, op))).toBe(op === "fault");
        expect(allowed(pc!.publish, subjects.agent(other, op))).toBe(false);
      }),
      { seed: 7, numRuns: 200 },
    );
  });

  it("only the controller requests resets; only the operator releases; nobody but the coordinator writes KV", () => {
    for (const role of ROLES) {
      const p = r.principals.find((x) => x.role === role)!;
      const perms = permissionsFor(p, r);
      expect(allowed(perms.publish, subjects.request), role).toBe(
        role === "controller" || role === "coordinator",
      );
      expect(allowed(perms.publish, subjects.submit), role).toBe(role === "controller");
      expect(allowed(perms.publish, subjects.release), role).toBe(role === "operator");
      expect(allowed(perms.publish, subjects.breaker), role).toBe(role === "operator");
      expect(allowed(perms.publish, `$KV.${BUCKETS.leases}.x`), role).toBe(role === "coordinator");
      expect(allowed(perms.subscribe, "_INBOX.someone-else.x.y"), role).toBe(false);
      expect(allowed(perms.subscribe, `_INBOX.${p.name}.abc.1`), role).toBe(true);
    }
  });

  it("renders a users file with one nkey user per principal and no default user", () => {
    const keys = Object.fromEntries(r.principals.map((p) => [p.name, nkeys.createUser().getPublicKey()]));
    const text = renderUsersConf(r, keys);
    expect(text.match(/nkey: "U[A-Z2-7]{55}"/g)).toHaveLength(r.principals.length);
    expect(text).not.toMatch(/password|no_auth_user|"SU[A-Z2-7]{56}"/);
    expect(() => renderUsersConf(r, { ...keys, "coord-1": "SUAAAA" })).toThrow(/not a user public nkey/);
  });

  it("checkAgentEvent believes an event only from its own host's subject and an issued operation", () => {
    const issued = (h: string, id: string) => h === "sim-a" && id === "op-1";
    const env = { host: "sim-a", bdf: "0000:01:00.0", kind: "op.completed", opId: "op-1" };
    expect(checkAgentEvent("cxlrc.evt.sim-a.0000-01-00-0.op.completed", env, issued)).toBeNull();
    expect(checkAgentEvent("cxlrc.evt.sim-b.0000-01-00-0.op.completed", env, issued)).toMatch(/host/);
    expect(checkAgentEvent("cxlrc.evt.sim-a.0000-02-00-0.op.completed", env, issued)).toMatch(/device/);
    expect(
      checkAgentEvent("cxlrc.evt.sim-a.0000-01-00-0.op.completed", { ...env, opId: "op-2" }, issued),
    ).toMatch(/not issued/);
    expect(checkAgentEvent("cxlrc.ctl.plan", env, issued)).toMatch(/not an event subject/);
  });

  it("the example rosters parse and the env files name the principal's seed, certificate and inbox", () => {
    const compose = loadRoster(join(DEPLOY, "compose/roster.json"));
    const p = compose.principals.find((x) => x.role === "agent")!;
    const env = envFile(p, { seedDir: "/s", tlsDir: "/t" });
    expect(env).toContain(`CXLRC_NATS_NKEY_SEED_FILE=/s/${p.name}.nk`);
    expect(env).toContain(`CXLRC_NATS_INBOX_PREFIX=_INBOX.${p.name}`);
    expect(env).toContain(`CXLRC_NATS_TLS_CERT_FILE=/t/${p.name}.pem`);
    expect(env).not.toMatch(/SU[A-Z2-7]{20}/);
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

  it("takes the requester from the reply inbox", () => {
    expect(requesterOf("_INBOX.controller.AbC123.7")).toBe("controller");
    expect(requesterOf("_INBOX.AbC123")).toBe("anonymous");
    expect(requesterOf(undefined)).toBe("anonymous");
  });
});
