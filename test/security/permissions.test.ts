// Who may do what, enforced by a real nats-server running the deploy configuration (TLS with client
// certificates, one nkey per principal, users generated from shared/bus/permissions.ts). Every role does what
// it must (allowed cases, with the real agent and coordinator services), and every forbidden publish,
// request or subscription is refused by the server: the test sees the server's permission violation and a
// witness subscribed to the subject sees nothing arrive.

import { readFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Svcm } from "@nats-io/services";
import {
  errors as natsErrors,
  nkeyAuthenticator,
  nkeys,
  type PermissionViolationError,
} from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentHandle, startAgent } from "../../services/agent/service.ts";
import { type CoordinatorHandle, startCoordinator } from "../../services/coordinator/service.ts";
import { callAgent, requestJson } from "../../shared/bus/client.ts";
import { encodeJson, makeEvent } from "../../shared/bus/codec.ts";
import type { ResetRequestInput } from "../../shared/bus/requests.ts";
import { BUCKETS, STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { SIMPLE_DEVICE } from "../../shared/sim/index.ts";
import { type Conn, makeTestCa, type SecureBus, startSecureBus, tryConnect, until } from "./env.ts";
import { hardwareLikeHost, simHost, TEST_ROSTER } from "./roster.ts";

const DEV = SIMPLE_DEVICE;
const DEV_TOKEN = DEV.replace(/[:.]/g, "-");

let bus: SecureBus;
let coord: Conn;
let agentA: Conn;
let agentHw: Conn;
let controller: Conn;
let sre: Conn;
let operator: Conn;
let chaos: Conn;
let coordinator: CoordinatorHandle;
const agents: AgentHandle[] = [];
const tally = { allowed: 0, denied: 0 };

function request(over: Partial<ResetRequestInput> = {}): ResetRequestInput {
  return {
    requestId: `sec-${Math.random().toString(36).slice(2)}`,
    host: "sim-a",
    bdf: DEV,
    scope: "io",
    reason: "security test",
    dryRun: true,
    ...over,
  };
}

/** A forbidden publish: the server reports it and it reaches no one. */
async function denyPublish(c: Conn, subject: string): Promise<void> {
  let seen = 0;
  const before = c.violations.length;
  const w = bus.witness.subscribe(subject, { callback: () => void seen++ });
  await bus.witness.flush();
  c.nc.publish(subject, encodeJson({ forged: true }));
  await c.nc.flush();
  await until(
    () => c.violations.slice(before).some((v) => v.operation === "publish" && v.subject === subject),
    `the server refusing a publish to ${subject}`,
  );
  await bus.witness.flush();
  w.unsubscribe();
  expect(seen, `${subject} must not be delivered`).toBe(0);
  tally.denied++;
}

/** A forbidden request: rejected with the permission violation; nobody answers. */
async function denyRequest(c: Conn, subject: string, body: unknown): Promise<void> {
  let seen = 0;
  const w = bus.witness.subscribe(subject, { callback: () => void seen++ });
  await bus.witness.flush();
  await expect(c.nc.request(subject, encodeJson(body), { timeout: 5000 })).rejects.toThrow(
    /Permissions Violation/,
  );
  await bus.witness.flush();
  w.unsubscribe();
  expect(seen).toBe(0);
  tally.denied++;
}

/** A forbidden subscription: the server closes it with a permission violation. */
async function denySubscribe(c: Conn, subject: string): Promise<void> {
  const sub = c.nc.subscribe(subject);
  await c.nc.flush();
  const closed = await sub.closed;
  expect(closed).toBeInstanceOf(natsErrors.PermissionViolationError);
  expect((closed as PermissionViolationError).operation).toBe("subscription");
  tally.denied++;
}

/** An allowed publish: it reaches the witness and the server says nothing. */
async function allowPublish(c: Conn, subject: string, body: unknown): Promise<void> {
  let seen = 0;
  const before = c.violations.length;
  const w = bus.witness.subscribe(subject, { callback: () => void seen++ });
  await bus.witness.flush();
  c.nc.publish(subject, encodeJson(body));
  await c.nc.flush();
  await bus.witness.flush();
  w.unsubscribe();
  expect(seen).toBe(1);
  expect(c.violations.length).toBe(before);
  tally.allowed++;
}

beforeAll(async () => {
  bus = await startSecureBus(TEST_ROSTER);
  coord = await bus.connectAs("coord-1");
  agentA = await bus.connectAs("agent-sim-a");
  const agentB = await bus.connectAs("agent-sim-b");
  agentHw = await bus.connectAs("agent-hw-1");
  controller = await bus.connectAs("controller");
  sre = await bus.connectAs("sre");
  operator = await bus.connectAs("operator");
  chaos = await bus.connectAs("chaos");
  // The coordinator creates the streams and buckets (only it has the JetStream admin API).
  coordinator = await startCoordinator({ nc: coord.nc, id: "coord-1", metricsPort: null, leaseTtlMs: 5000 });
  agents.push(
    await startAgent({ nc: agentA.nc, host: "sim-a", backend: simHost("sim-a"), heartbeatMs: 60_000 }),
  );
  agents.push(
    await startAgent({ nc: agentB.nc, host: "sim-b", backend: simHost("sim-b"), heartbeatMs: 60_000 }),
  );
  agents.push(
    await startAgent({
      nc: agentHw.nc,
      host: "hw-1",
      backend: hardwareLikeHost("hw-1"),
      heartbeatMs: 60_000,
    }),
  );
});

afterAll(async () => {
  console.log(
    `security: ${tally.allowed} allowed cases done, ${tally.denied} forbidden cases refused by nats-server (deploy config, TLS on)`,
  );
  for (const a of agents) await a.stop().catch(() => undefined);
  await coordinator?.stop().catch(() => undefined);
  await bus?.stop();
});

describe("allowed: each role does what it must", () => {
  it("coordinator: JetStream admin, its KV buckets, agent commands, events, request intake", async () => {
    const jsm = await jetstream(coord.nc).jetstreamManager();
    const names = await jsm.streams.names().next();
    expect(names).toEqual(expect.arrayContaining([STREAMS.events.name, STREAMS.requests.name]));
    tally.allowed++;
    const kv = await new Kvm(coord.nc).open(BUCKETS.leases);
    await kv.put("sec.probe", "x");
    expect((await kv.get("sec.probe"))?.string()).toBe("x");
    await kv.delete("sec.probe");
    tally.allowed++;
    const inv = (await callAgent(coord.nc, "sim-a", "inventory", "sec-inv-1", {}, { timeoutMs: 5000 })) as {
      host: string;
    };
    expect(inv.host).toBe("sim-a");
    tally.allowed++;
    const probe = (await callAgent(
      coord.nc,
      "hw-1",
      "probe",
      "sec-probe-1",
      { bdf: DEV },
      { timeoutMs: 5000 },
    )) as {
      bdf: string;
    };
    expect(probe.bdf).toBe(DEV);
    tally.allowed++;
    await allowPublish(
      coord,
      subjects.event("sim-a", DEV, "verified"),
      makeEvent({ host: "sim-a", bdf: DEV, kind: "verified" }),
    );
  });

  it("agent: serves its host's commands, stores events under its host only, answers discovery", async () => {
    // The inventory call above made the agent publish op events through JetStream (acks on its inbox).
    const jsm = await jetstream(coord.nc).jetstreamManager();
    const m = await jsm.streams.getMessage(STREAMS.events.name, {
      last_by_subj: subjects.hostEvent("sim-a", "op.completed"),
    });
    expect(m?.json<{ host: string; opId: string }>()).toMatchObject({ host: "sim-a", opId: "sec-inv-1" });
    tally.allowed++;
    await allowPublish(
      agentA,
      subjects.event("sim-a", DEV, "probe.read"),
      makeEvent({ host: "sim-a", bdf: DEV, kind: "probe.read" }),
    );
    const found: string[] = [];
    for await (const s of await new Svcm(sre.nc).client().ping("cxlrc-agent")) {
      found.push(String(s.metadata?.host));
      if (found.length === 3) break;
    }
    expect(found.sort()).toEqual(["hw-1", "sim-a", "sim-b"]);
    tally.allowed++;
  });

  it("controller: reset requests into the stream, plan and submit by request/reply, events through a consumer", async () => {
    const js = jetstream(controller.nc);
    const r = request();
    const ack = await js.publish(subjects.request, encodeJson(r), { msgID: r.requestId });
    expect(ack.stream).toBe(STREAMS.requests.name);
    tally.allowed++;
    const plan = (await requestJson(controller.nc, subjects.plan, request(), { timeoutMs: 10_000 })) as {
      ok: boolean;
      result: { decisions: unknown[] };
    };
    expect(plan.ok).toBe(true);
    expect(plan.result.decisions).toHaveLength(1);
    tally.allowed++;
    const sub = (await requestJson(controller.nc, subjects.submit, request(), { timeoutMs: 15_000 })) as {
      ok: boolean;
    };
    expect(sub.ok).toBe(true);
    tally.allowed++;
    const consumer = await js.consumers.get(STREAMS.events.name, {
      filter_subjects: subjects.eventsOfHost("sim-a"),
      deliver_policy: DeliverPolicy.All,
    });
    const first = await consumer.next({ expires: 5000 });
    expect(first?.subject.startsWith("cxlrc.evt.sim-a.")).toBe(true);
    tally.allowed++;
  });

  it("SRE: status and images, events live and from the stream, service discovery", async () => {
    const status = (await requestJson(sre.nc, subjects.status, {}, { timeoutMs: 5000 })) as { ok: boolean };
    expect(status.ok).toBe(true);
    tally.allowed++;
    await expect(
      requestJson(sre.nc, subjects.image, { host: "sim-b", bdf: DEV }, { timeoutMs: 5000 }),
    ).rejects.toThrow(/no image stored/);
    tally.allowed++; // the request reached the coordinator and its answer came back
    const got: string[] = [];
    const live = sre.nc.subscribe(subjects.eventsAll, {
      callback: (_e, m) => {
        got.push(m.subject);
      },
    });
    await sre.nc.flush();
    await callAgent(coord.nc, "sim-b", "inventory", "sec-inv-2", {}, { timeoutMs: 5000 });
    await until(() => got.some((s) => s.startsWith("cxlrc.evt.sim-b.agent.op.")), "live events");
    live.unsubscribe();
    tally.allowed++;
    const consumer = await jetstream(sre.nc).consumers.get(STREAMS.events.name, {
      deliver_policy: DeliverPolicy.All,
    });
    expect(await consumer.next({ expires: 5000 })).not.toBeNull();
    tally.allowed++;
    const info = await jetstream(sre.nc).jetstreamManager(false);
    expect((await info.streams.info(STREAMS.events.name)).config.name).toBe(STREAMS.events.name);
    tally.allowed++;
  });

  it("operator: release and breaker reach the coordinator", async () => {
    // The coordinator answers (no device of sim-a is quarantined, so it says what it has): the request got through.
    await expect(
      requestJson(
        operator.nc,
        subjects.release,
        { host: "sim-a", bdf: DEV, operator: "op", reason: "test" },
        { timeoutMs: 10_000 },
      ),
    ).rejects.toMatchObject({ kind: "bad-input", details: { remote: true, subject: subjects.release } });
    tally.allowed++;
    const b = (await requestJson(
      operator.nc,
      subjects.breaker,
      { operator: "op", reason: "test" },
      { timeoutMs: 10_000 },
    )) as {
      ok: boolean;
    };
    expect(b.ok).toBe(true);
    tally.allowed++;
  });

  it("chaos: fault injection on a simulated host", async () => {
    const r = (await callAgent(
      chaos.nc,
      "sim-a",
      "fault",
      "sec-fault-1",
      { bdf: DEV, action: "list" },
      { timeoutMs: 5000 },
    )) as {
      faults: unknown[];
    };
    expect(r.faults).toEqual([]);
    tally.allowed++;
  });
});

describe("denied: every forbidden publish, request and subscription", () => {
  it("an agent cannot forge another host's events, nor the coordinator's verdicts on its own host", async () => {
    await denyPublish(agentA, subjects.event("sim-b", DEV, "op.completed"));
    await denyPublish(agentA, subjects.hostEvent("sim-b", "heartbeat"));
    for (const kind of [
      "verified",
      "plan",
      "refused",
      "released",
      "quarantined",
      "request.rejected",
      "breaker.closed",
    ]) {
      await denyPublish(agentA, subjects.event("sim-a", DEV, kind));
    }
    await denyPublish(agentA, subjects.hostEvent("sim-a", "state.entered"));
    // Through JetStream too: the publish never reaches the stream.
    const forged = makeEvent({ host: "sim-b", bdf: DEV, kind: "op.completed" });
    await expect(
      jetstream(agentA.nc).publish(subjects.event("sim-b", DEV, "op.completed"), encodeJson(forged), {
        timeout: 5000,
      }),
    ).rejects.toThrow(/Permissions Violation/);
    tally.denied++;
    const jsm = await jetstream(coord.nc).jetstreamManager();
    await expect(
      jsm.streams.getMessage(STREAMS.events.name, {
        last_by_subj: subjects.event("sim-b", DEV, "op.completed"),
      }),
    ).resolves.toBeNull();
  });

  it("an agent cannot command agents, request resets, touch JetStream or KV", async () => {
    await denyRequest(agentA, subjects.agent("sim-b", "reset"), { opId: "x", bdf: DEV, method: "flr" });
    await denyPublish(agentA, subjects.request);
    await denyPublish(agentA, subjects.release);
    await denyPublish(agentA, subjects.submit);
    await denyPublish(agentA, `$JS.API.STREAM.DELETE.${STREAMS.events.name}`);
    await denyPublish(agentA, `$JS.API.STREAM.PURGE.${STREAMS.events.name}`);
    await denyPublish(agentA, `$KV.${BUCKETS.leases}.sim-b.${DEV_TOKEN}`);
    await denyPublish(agentA, `$KV.${BUCKETS.images}.sim-a.${DEV_TOKEN}`);
  });

  it("an agent cannot subscribe to another host's commands, all events, or anyone else's inbox", async () => {
    for (const s of [
      subjects.agentAll("sim-b"),
      subjects.agent("sim-b", "reset"),
      "cxlrc.agent.*.reset",
      "cxlrc.agent.>",
      ">",
      "_INBOX.>",
      "_INBOX.coord-1.>",
      "cxlrc.ctl.>",
      subjects.eventsAll,
      "$SRV.PING.cxlrc-coordinator",
    ]) {
      await denySubscribe(agentA, s);
    }
  });

  it("a real-hardware agent cannot serve fault injection; chaos cannot reach it", async () => {
    await denySubscribe(agentHw, subjects.agent("hw-1", "fault"));
    await denyRequest(chaos, subjects.agent("hw-1", "fault"), { opId: "c1", bdf: DEV, action: "list" });
  });

  it("chaos reaches fault endpoints only", async () => {
    await denyRequest(chaos, subjects.agent("sim-a", "reset"), { opId: "c2", bdf: DEV, method: "flr" });
    await denyPublish(chaos, subjects.release);
    await denyPublish(chaos, subjects.request);
    await denyPublish(chaos, subjects.event("sim-a", DEV, "verified"));
    await denySubscribe(chaos, subjects.agentAll("sim-a"));
  });

  it("the controller cannot talk to agents, release, close the breaker, forge events or read requests", async () => {
    const sim = agents[0]?.stats().received ?? -1;
    await denyRequest(controller, subjects.agent("sim-a", "reset"), { opId: "x1", bdf: DEV, method: "flr" });
    await denyRequest(controller, subjects.agent("sim-a", "fault"), { opId: "x2", bdf: DEV, action: "list" });
    expect(agents[0]?.stats().received).toBe(sim);
    await denyPublish(controller, subjects.release);
    await denyPublish(controller, subjects.breaker);
    await denyPublish(controller, subjects.event("sim-a", DEV, "verified"));
    await denyPublish(controller, `$KV.${BUCKETS.leases}.sim-a.${DEV_TOKEN}`);
    await denyPublish(controller, `$JS.API.STREAM.DELETE.${STREAMS.events.name}`);
    await denyPublish(controller, `$JS.API.STREAM.PURGE.${STREAMS.requests.name}`);
    await denyPublish(controller, `$JS.API.CONSUMER.CREATE.${STREAMS.requests.name}`);
    await denyPublish(controller, `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.requests.name}.cxlrc-coordinator`);
    for (const s of [
      "cxlrc.ctl.>",
      subjects.plan,
      "cxlrc.agent.>",
      "_INBOX.>",
      "_INBOX.sre.>",
      subjects.eventsAll,
      subjects.requestsAll,
    ]) {
      await denySubscribe(controller, s);
    }
  });

  it("SRE changes nothing: no requests, releases, breaker, agent commands, stream or KV writes", async () => {
    await denyPublish(sre, subjects.request);
    await expect(
      jetstream(sre.nc).publish(subjects.request, encodeJson(request({ dryRun: false })), { timeout: 5000 }),
    ).rejects.toThrow(/Permissions Violation/);
    tally.denied++;
    await denyRequest(sre, subjects.submit, request({ dryRun: false }));
    await denyRequest(sre, subjects.plan, request());
    await denyRequest(sre, subjects.release, { host: "sim-a", bdf: DEV, operator: "sre", reason: "x" });
    await denyRequest(sre, subjects.breaker, { operator: "sre", reason: "x" });
    await denyRequest(sre, subjects.agent("sim-a", "inventory"), { opId: "s1" });
    await denyPublish(sre, `$KV.${BUCKETS.actors}.sim-a.${DEV_TOKEN}`);
    const jsm = await jetstream(sre.nc).jetstreamManager(false);
    await expect(jsm.streams.delete(STREAMS.events.name)).rejects.toThrow(/Permissions Violation/);
    tally.denied++;
    await expect(jsm.streams.purge(STREAMS.requests.name)).rejects.toThrow(/Permissions Violation/);
    tally.denied++;
    // Both streams are still there, untouched.
    const admin = await jetstream(coord.nc).jetstreamManager();
    expect((await admin.streams.info(STREAMS.requests.name)).state.messages).toBeGreaterThan(0);
    for (const s of ["cxlrc.ctl.>", "cxlrc.agent.>", "_INBOX.>"]) await denySubscribe(sre, s);
  });

  it("the operator releases but requests nothing and commands no agent", async () => {
    await denyPublish(operator, subjects.request);
    await denyRequest(operator, subjects.submit, request({ dryRun: false }));
    await denyRequest(operator, subjects.agent("sim-a", "restore"), {
      opId: "o1",
      bdf: DEV,
      scope: "io",
      image: {},
    });
    await denySubscribe(operator, "cxlrc.ctl.>");
  });

  it("the coordinator cannot inject faults or impersonate an agent", async () => {
    await denyRequest(coord, subjects.agent("sim-a", "fault"), { opId: "f1", bdf: DEV, action: "list" });
    await denySubscribe(coord, subjects.agentAll("sim-a"));
    await denySubscribe(coord, "_INBOX.controller.>");
  });
});

describe("denied: connections without TLS, a client certificate or a known nkey", () => {
  it("refuses plaintext, missing or foreign certificates, and unknown or missing credentials", async () => {
    const c = bus.credentials("controller");
    const tls = c.tls ?? {};
    const seed = new TextEncoder().encode(
      readFileSync((c.auth as { seedFile: string }).seedFile, "utf8").trim(),
    );
    const cases: Array<[string, Parameters<typeof tryConnect>[0], RegExp]> = [
      [
        "plaintext with a valid nkey",
        { servers: bus.url, tls: null, authenticator: nkeyAuthenticator(seed) },
        /TLS|tls|secure/,
      ],
      [
        "TLS without a client certificate",
        { servers: bus.url, tls: { caFile: tls.caFile as string }, authenticator: nkeyAuthenticator(seed) },
        /certificate|alert|socket|closed|ECONNRESET/i,
      ],
      ["TLS + certificate, no credentials", { servers: bus.url, tls: { ...tls } }, /Authorization Violation/],
      [
        "TLS + certificate, unknown nkey",
        { servers: bus.url, tls: { ...tls }, authenticator: nkeyAuthenticator(nkeys.createUser().getSeed()) },
        /Authorization Violation/,
      ],
      [
        "TLS + certificate, user/password",
        { servers: bus.url, tls: { ...tls }, user: "admin", pass: "admin" },
        /Authorization Violation/,
      ],
    ];
    // A certificate from another CA, with a valid nkey.
    const other = join(bus.dir, "other-ca");
    makeTestCa(other, ["intruder"]);
    cases.push([
      "certificate of a foreign CA",
      {
        servers: bus.url,
        tls: {
          caFile: tls.caFile as string,
          certFile: join(other, "intruder.pem"),
          keyFile: join(other, "intruder-key.pem"),
        },
        authenticator: nkeyAuthenticator(seed),
      },
      /certificate|alert|socket|closed|ECONNRESET/i,
    ]);
    for (const [what, opts, re] of cases) {
      const err = await tryConnect(opts);
      expect(err, what).not.toBeNull();
      expect(String(err?.message), what).toMatch(re);
      tally.denied++;
    }
    // The same controller with everything in order connects (the refusals above are not an accident).
    expect(
      await tryConnect({ servers: bus.url, tls: { ...tls }, authenticator: nkeyAuthenticator(seed) }),
    ).toBeNull();
    tally.allowed++;
  });

  it("a raw plaintext CONNECT gets no PONG", async () => {
    const port = Number(new URL(bus.url).port);
    const answer = await new Promise<string>((resolve) => {
      let buf = "";
      const sock = createConnection({ host: "127.0.0.1", port });
      sock.setEncoding("utf8");
      sock.on("data", (d: string) => {
        buf += d;
        if (buf.startsWith("INFO ") && buf.includes("\r\n") && !buf.includes("sent")) {
          buf += "sent";
          sock.write('CONNECT {"verbose":false,"pedantic":false,"tls_required":false}\r\nPING\r\n');
        }
      });
      sock.on("close", () => resolve(buf));
      sock.on("error", () => resolve(buf));
    });
    expect(answer).toMatch(/tls_required":true/);
    expect(answer).not.toMatch(/PONG/);
    tally.denied++;
  });
});
