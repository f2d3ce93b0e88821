// Who may do what, enforced by a real nats-server running the deploy configuration (TLS with client
// certificates bound to their user, the accounts of shared/bus/permissions.ts). Every role does what it must
// (allowed cases, with the real agent and coordinator services, a real reset end to end), and every forbidden
// publish, request or subscription is refused by the server: the test sees the server's permission violation
// and a witness in every account, subscribed to the subject, sees nothing arrive. Readers have no JetStream API
// at all; agents publish only their own host's agent events; controllers only their hosts' requests; the
// coordinator only the JetStream API calls it makes (and it makes all of them here without one violation).

import { createConnection } from "node:net";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
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
import { ACCOUNTS, certDn, TEST_CERT_DN } from "../../shared/bus/permissions.ts";
import { EventsReply, type ResetRequestInput } from "../../shared/bus/requests.ts";
import { BUCKETS, STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { SIMPLE_DEVICE } from "../../shared/sim/index.ts";
import { type Conn, makeTestCa, type SecureBus, startSecureBus, tryConnect, until } from "./env.ts";
import { hardwareLikeHost, simHost, TEST_ROSTER } from "./roster.ts";

const DEV = SIMPLE_DEVICE;
const DEV_TOKEN = DEV.replace(/[:.]/g, "-");

/** JetStream API calls the coordinator never makes: refused by the server (provoked on purpose below). */
const COORDINATOR_FORBIDDEN_API = [
  `$JS.API.STREAM.PURGE.${STREAMS.events.name}`,
  `$JS.API.STREAM.DELETE.${STREAMS.requests.name}`,
  `$JS.API.STREAM.MSG.DELETE.KV_${BUCKETS.images}`,
  `$JS.API.STREAM.SNAPSHOT.${STREAMS.events.name}`,
  "$JS.API.STREAM.CREATE.SOMETHING_ELSE",
  `$JS.API.STREAM.LEADER.STEPDOWN.${STREAMS.events.name}`,
];

let bus: SecureBus;
let coord: Conn;
let agentA: Conn;
let agentB: Conn;
let agentHw: Conn;
let controller: Conn;
let controllerHw: Conn;
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

let nonceSeq = 0;
/** Watch `subject` with every account's witness; counts only messages carrying `nonce`. */
async function watchAll(subject: string, nonce: string): Promise<{ seen: () => number; stop: () => void }> {
  let seen = 0;
  const subs = ACCOUNTS.map((a) =>
    bus.witnesses[a].subscribe(subject, {
      callback: (_e, m) => {
        if (new TextDecoder().decode(m.data).includes(nonce)) seen++;
      },
    }),
  );
  await Promise.all(ACCOUNTS.map((a) => bus.witnesses[a].flush()));
  return {
    seen: () => seen,
    stop: () => {
      for (const s of subs) s.unsubscribe();
    },
  };
}
const flushWitnesses = () => Promise.all(ACCOUNTS.map((a) => bus.witnesses[a].flush()));

/** A forbidden publish: the server reports it and it reaches no one, in any account. */
async function denyPublish(c: Conn, subject: string): Promise<void> {
  const nonce = `forged-${++nonceSeq}`;
  const before = c.violations.length;
  const w = await watchAll(subject, nonce);
  c.nc.publish(subject, encodeJson({ forged: nonce }));
  await c.nc.flush();
  await until(
    () => c.violations.slice(before).some((v) => v.operation === "publish" && v.subject === subject),
    `the server refusing a publish to ${subject}`,
  );
  await flushWitnesses();
  w.stop();
  expect(w.seen(), `${subject} must not be delivered`).toBe(0);
  tally.denied++;
}

/** A forbidden request: rejected with the permission violation; nobody, in any account, receives it. */
async function denyRequest(c: Conn, subject: string, body: Record<string, unknown>): Promise<void> {
  const nonce = `forged-${++nonceSeq}`;
  const w = await watchAll(subject, nonce);
  await expect(c.nc.request(subject, encodeJson({ ...body, nonce }), { timeout: 5000 })).rejects.toThrow(
    /Permissions Violation/,
  );
  await flushWitnesses();
  w.stop();
  expect(w.seen(), `${subject} must not be delivered`).toBe(0);
  tally.denied++;
}

/** A forbidden subscription: the server closes it with a permission violation. */
async function denySubscribe(c: Conn, subject: string): Promise<void> {
  const sub = c.nc.subscribe(subject);
  await c.nc.flush();
  const closed = await sub.closed;
  expect(closed, subject).toBeInstanceOf(natsErrors.PermissionViolationError);
  expect((closed as PermissionViolationError).operation).toBe("subscription");
  tally.denied++;
}

/** An allowed publish: it reaches CXLRC (the coordinators' account) and the server says nothing. */
async function allowPublish(c: Conn, subject: string, body: Record<string, unknown>): Promise<void> {
  const nonce = `allowed-${++nonceSeq}`;
  let seen = 0;
  const before = c.violations.length;
  const w = bus.witness.subscribe(subject, {
    callback: (_e, m) => {
      if (new TextDecoder().decode(m.data).includes(nonce)) seen++;
    },
  });
  await bus.witness.flush();
  c.nc.publish(subject, encodeJson({ ...body, data: { nonce } }));
  await c.nc.flush();
  await until(() => seen > 0, `${subject} delivered`);
  w.unsubscribe();
  expect(seen).toBe(1);
  expect(c.violations.length).toBe(before);
  tally.allowed++;
}

/** Every JetStream and KV API subject a reader might try: none is theirs. */
const JS_API_PROBES = [
  "$JS.API.INFO",
  "$JS.API.STREAM.NAMES",
  "$JS.API.STREAM.LIST",
  `$JS.API.STREAM.INFO.${STREAMS.events.name}`,
  `$JS.API.STREAM.MSG.GET.${STREAMS.events.name}`,
  `$JS.API.DIRECT.GET.${STREAMS.events.name}`,
  `$JS.API.CONSUMER.CREATE.${STREAMS.events.name}`,
  `$JS.API.CONSUMER.CREATE.${STREAMS.events.name}.mine.cxlrc.evt.>`,
  `$JS.API.CONSUMER.DURABLE.CREATE.${STREAMS.events.name}.mine`,
  `$JS.API.CONSUMER.LIST.${STREAMS.events.name}`,
  `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.requests.name}.cxlrc-intake`,
  `$JS.API.CONSUMER.DELETE.${STREAMS.requests.name}.cxlrc-intake`,
  `$JS.API.STREAM.PURGE.${STREAMS.events.name}`,
  `$JS.API.STREAM.DELETE.KV_${BUCKETS.images}`,
  `$JS.ACK.${STREAMS.requests.name}.cxlrc-intake.1.1.1.1.0`,
  `$KV.${BUCKETS.leases}.sim-a.${DEV_TOKEN}`,
];

beforeAll(async () => {
  bus = await startSecureBus(TEST_ROSTER);
  coord = await bus.connectAs("coord-1");
  agentA = await bus.connectAs("agent-sim-a");
  agentB = await bus.connectAs("agent-sim-b");
  agentHw = await bus.connectAs("agent-hw-1");
  controller = await bus.connectAs("controller");
  controllerHw = await bus.connectAs("controller-hw");
  sre = await bus.connectAs("sre");
  operator = await bus.connectAs("operator");
  chaos = await bus.connectAs("chaos");
  // The coordinator creates the streams and buckets (only it has JetStream API rights).
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
    `security: ${tally.allowed} allowed cases done, ${tally.denied} forbidden cases refused by nats-server (deploy config: accounts, TLS identities)`,
  );
  for (const a of agents) await a.stop().catch(() => undefined);
  await coordinator?.stop().catch(() => undefined);
  await bus?.stop();
});

describe("allowed: each role does what it must", () => {
  it("coordinator: its streams and KV buckets, agent commands across accounts, events", async () => {
    const jsm = await jetstream(coord.nc).jetstreamManager(false);
    for (const s of [STREAMS.events.name, STREAMS.requests.name]) {
      expect((await jsm.streams.info(s)).config.name).toBe(s);
      tally.allowed++;
    }
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
    )) as { bdf: string };
    expect(probe.bdf).toBe(DEV);
    tally.allowed++;
    await allowPublish(
      coord,
      subjects.event("sim-a", DEV, "verified"),
      makeEvent({ host: "sim-a", bdf: DEV, kind: "verified" }),
    );
  });

  it("agent: serves its host's commands, stores its events through CXLRC (PubAck back), answers discovery", async () => {
    // The inventory call above made the agent publish op events through JetStream (across the import).
    const jsm = await jetstream(coord.nc).jetstreamManager(false);
    await until(
      async () =>
        (await jsm.streams
          .getMessage(STREAMS.events.name, {
            last_by_subj: subjects.agentEvent("sim-a", null, "op.completed"),
          })
          .catch(() => null)) !== null,
      "the agent's op.completed stored",
    );
    const m = await jsm.streams.getMessage(STREAMS.events.name, {
      last_by_subj: subjects.agentEvent("sim-a", null, "op.completed"),
    });
    expect(m?.json<{ host: string; opId: string }>()).toMatchObject({ host: "sim-a", opId: "sec-inv-1" });
    tally.allowed++;
    await allowPublish(
      agentA,
      subjects.agentEvent("sim-a", DEV, "probe.read"),
      makeEvent({ host: "sim-a", bdf: DEV, kind: "probe.read", source: "agent" }),
    );
    const found: string[] = [];
    for await (const s of await new Svcm(sre.nc).client().ping("cxlrc-agent")) {
      found.push(String(s.metadata?.host));
      if (found.length === 3) break;
    }
    expect(found.sort()).toEqual(["hw-1", "sim-a", "sim-b"]);
    tally.allowed++;
  });

  it("controller: requests into the stream (PubAck across the import), plan and submit for its hosts, replay", async () => {
    const js = jetstream(controller.nc);
    const r = request();
    const ack = await js.publish(subjects.request("sim-a"), encodeJson(r), { msgID: r.requestId });
    expect(ack.stream).toBe(STREAMS.requests.name);
    tally.allowed++;
    const plan = (await requestJson(controller.nc, subjects.plan("sim-a"), request(), {
      timeoutMs: 10_000,
    })) as { ok: boolean; result: { decisions: unknown[] } };
    expect(plan.ok).toBe(true);
    expect(plan.result.decisions).toHaveLength(1);
    tally.allowed++;
    const sub = (await requestJson(controller.nc, subjects.submit("sim-b"), request({ host: "sim-b" }), {
      timeoutMs: 15_000,
    })) as { ok: boolean };
    expect(sub.ok).toBe(true);
    tally.allowed++;
    const hw = (await requestJson(controllerHw.nc, subjects.plan("hw-1"), request({ host: "hw-1" }), {
      timeoutMs: 10_000,
    })) as { ok: boolean };
    expect(hw.ok).toBe(true);
    tally.allowed++;
    const replay = (await requestJson(
      controller.nc,
      subjects.events,
      { host: "sim-a", startSeq: 1, max: 50 },
      { timeoutMs: 10_000 },
    )) as { ok: boolean; result: unknown };
    const batch = EventsReply.parse(replay.result);
    expect(batch.events.length).toBeGreaterThan(0);
    expect(batch.events.every((e) => e.event.host === "sim-a")).toBe(true);
    tally.allowed++;
  });

  it("the server names the caller from its certificate (Nats-Request-Info), whatever header the client set", async () => {
    const seen: string[] = [];
    const w = bus.witness.subscribe(subjects.plan("sim-a"), {
      callback: (_e, m) => {
        seen.push(m.headers?.get("Nats-Request-Info") ?? "");
      },
    });
    await bus.witness.flush();
    const { headers } = await import("@nats-io/transport-node");
    const h = headers();
    h.set("Nats-Request-Info", JSON.stringify({ acc: "OPERATORS", user: "someone-else" }));
    await controller.nc.request(subjects.plan("sim-a"), encodeJson(request()), {
      timeout: 10_000,
      headers: h,
    });
    w.unsubscribe();
    expect(seen).toHaveLength(1);
    expect(JSON.parse(seen[0] as string)).toMatchObject({
      acc: "CONTROLLERS",
      user: certDn(TEST_CERT_DN, "controller"),
    });
    tally.allowed++;
  });

  it("a real reset: submitted by the controller, driven by the coordinator, followed live by every reader", async () => {
    const live = new Map<string, string[]>();
    const subs = [controller, sre, operator].map((c, i) => {
      const got: string[] = [];
      live.set(String(i), got);
      return c.nc.subscribe(subjects.eventsOfHost("sim-a"), {
        callback: (_e, m) => void got.push(m.subject),
      });
    });
    const agentLive: string[] = [];
    subs.push(
      sre.nc.subscribe(subjects.agentEventsOfHost("sim-a"), {
        callback: (_e, m) => void agentLive.push(m.subject),
      }),
    );
    await Promise.all([controller, sre, operator].map((c) => c.nc.flush()));
    const r = request({ dryRun: false, scope: "full" });
    const reply = (await requestJson(controller.nc, subjects.submit("sim-a"), r, { timeoutMs: 15_000 })) as {
      ok: boolean;
    };
    expect(reply.ok).toBe(true);
    const outcome = await coordinator.waitForOutcome(r.requestId, 60_000);
    expect(outcome.outcome).toBe("verified");
    const verified = subjects.event("sim-a", DEV, "verified");
    for (const got of live.values()) {
      await until(() => got.includes(verified), "the verdict seen live through the stream import");
    }
    expect(agentLive.some((s) => s.startsWith("cxlrc.agt.sim-a."))).toBe(true);
    for (const s of subs) s.unsubscribe();
    tally.allowed += 4;
    // The image was saved in KV (by the coordinator) and an operator reads it through the import.
    const img = (await requestJson(
      operator.nc,
      subjects.image,
      { host: "sim-a", bdf: DEV },
      {
        timeoutMs: 5000,
      },
    )) as { ok: boolean };
    expect(img.ok).toBe(true);
    tally.allowed++;
  });

  it("SRE: status, images, replay, service discovery", async () => {
    const status = (await requestJson(sre.nc, subjects.status, {}, { timeoutMs: 5000 })) as { ok: boolean };
    expect(status.ok).toBe(true);
    tally.allowed++;
    await expect(
      requestJson(sre.nc, subjects.image, { host: "sim-b", bdf: DEV }, { timeoutMs: 5000 }),
    ).rejects.toThrow(/no image stored/);
    tally.allowed++; // the request reached the coordinator and its answer came back
    const replay = (await requestJson(
      sre.nc,
      subjects.events,
      { source: "agent", startSeq: 1, max: 20 },
      { timeoutMs: 10_000 },
    )) as { result: unknown };
    const batch = EventsReply.parse(replay.result);
    expect(batch.events.length).toBeGreaterThan(0);
    expect(batch.events.every((e) => e.subject.startsWith("cxlrc.agt."))).toBe(true);
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
    )) as { ok: boolean };
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
    )) as { faults: unknown[] };
    expect(r.faults).toEqual([]);
    tally.allowed++;
  });
});

describe("denied: every forbidden publish, request and subscription", () => {
  it("an agent publishes nothing under cxlrc.evt.> (any kind, any host) and no other host's agent events", async () => {
    for (const kind of [
      "verified",
      "plan",
      "planned",
      "refused",
      "release.failed",
      "step.failed",
      "op.completed",
    ]) {
      await denyPublish(agentA, subjects.event("sim-a", DEV, kind));
    }
    await denyPublish(agentA, subjects.hostEvent("sim-a", "heartbeat"));
    await denyPublish(agentA, subjects.event("sim-b", DEV, "op.completed"));
    await denyPublish(agentA, subjects.agentEvent("sim-b", DEV, "op.completed"));
    await denyPublish(agentA, subjects.agentEvent("sim-b", null, "heartbeat"));
    await denyPublish(agentB, subjects.agentEvent("sim-a", null, "heartbeat"));
    // Through JetStream too: the publish never reaches the stream.
    const forged = makeEvent({ host: "sim-b", bdf: DEV, kind: "op.completed", source: "agent" });
    const jsm = await jetstream(coord.nc).jetstreamManager(false);
    for (const s of [
      subjects.agentEvent("sim-b", DEV, "op.completed"),
      subjects.event("sim-a", DEV, "verified"),
    ]) {
      await expect(jetstream(agentA.nc).publish(s, encodeJson(forged), { timeout: 5000 })).rejects.toThrow(
        /Permissions Violation/,
      );
      tally.denied++;
      const last = await jsm.streams.getMessage(STREAMS.events.name, { last_by_subj: s }).catch(() => null);
      expect(last?.json<{ id: string }>().id).not.toBe(forged.id);
    }
  });

  it("an agent cannot command agents, request resets, talk to the coordinator, touch JetStream or KV", async () => {
    await denyRequest(agentA, subjects.agent("sim-b", "reset"), { opId: "x", bdf: DEV, method: "flr" });
    await denyRequest(agentA, subjects.agent("sim-a", "reset"), { opId: "x", bdf: DEV, method: "flr" });
    await denyPublish(agentA, subjects.request("sim-a"));
    await denyPublish(agentA, subjects.release);
    await denyPublish(agentA, subjects.submit("sim-a"));
    await denyPublish(agentA, subjects.events);
    for (const s of JS_API_PROBES) await denyPublish(agentA, s);
  });

  it("an agent cannot subscribe to another host's commands, any events, or anyone else's inbox", async () => {
    for (const s of [
      subjects.agentAll("sim-b"),
      subjects.agent("sim-b", "reset"),
      "cxlrc.agent.*.reset",
      "cxlrc.agent.>",
      ">",
      "_INBOX.>",
      "_R_.>",
      "_INBOX.coord-1.>",
      "cxlrc.ctl.>",
      subjects.eventsAll,
      subjects.agentEventsAll,
      subjects.agentEventsOfHost("sim-b"),
      "$SRV.PING.cxlrc-coordinator",
      "$JS.API.>",
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
    await denyPublish(chaos, subjects.request("sim-a"));
    await denyPublish(chaos, subjects.event("sim-a", DEV, "verified"));
    await denyPublish(chaos, subjects.agentEvent("sim-a", DEV, "op.completed"));
    await denySubscribe(chaos, subjects.agentAll("sim-a"));
    await denySubscribe(chaos, subjects.eventsAll);
    for (const s of JS_API_PROBES) await denyPublish(chaos, s);
  });

  it("a controller is held to its hosts by the server", async () => {
    // controller: sim-* only.
    await denyPublish(controller, subjects.request("hw-1"));
    await denyRequest(controller, subjects.plan("hw-1"), request({ host: "hw-1" }));
    await denyRequest(controller, subjects.submit("hw-1"), request({ host: "hw-1", dryRun: false }));
    await expect(
      jetstream(controller.nc).publish(subjects.request("hw-1"), encodeJson(request({ host: "hw-1" })), {
        timeout: 5000,
      }),
    ).rejects.toThrow(/Permissions Violation/);
    tally.denied++;
    // controller-hw: hw-1 only.
    await denyPublish(controllerHw, subjects.request("sim-a"));
    await denyRequest(controllerHw, subjects.plan("sim-b"), request({ host: "sim-b" }));
    await denyRequest(controllerHw, subjects.submit("sim-a"), request({ dryRun: false }));
    // A body naming a host outside the subject's is refused by the coordinator (the subject is the scope).
    await expect(
      requestJson(controller.nc, subjects.plan("sim-a"), request({ host: "hw-1" }), { timeoutMs: 10_000 }),
    ).rejects.toMatchObject({ kind: "bad-input" });
    tally.denied++;
  });

  it("the controller cannot talk to agents, release, close the breaker, forge events, read requests or use JetStream", async () => {
    const sim = agents[0]?.stats().received ?? -1;
    await denyRequest(controller, subjects.agent("sim-a", "reset"), { opId: "x1", bdf: DEV, method: "flr" });
    await denyRequest(controller, subjects.agent("sim-a", "fault"), { opId: "x2", bdf: DEV, action: "list" });
    expect(agents[0]?.stats().received).toBe(sim);
    await denyPublish(controller, subjects.release);
    await denyPublish(controller, subjects.breaker);
    await denyPublish(controller, subjects.status);
    await denyPublish(controller, subjects.event("sim-a", DEV, "verified"));
    await denyPublish(controller, subjects.agentEvent("sim-a", DEV, "op.completed"));
    for (const s of JS_API_PROBES) await denyPublish(controller, s);
    for (const s of [
      "cxlrc.ctl.>",
      subjects.plan("sim-a"),
      "cxlrc.agent.>",
      ">",
      "_INBOX.>",
      "_R_.>",
      "_INBOX.sre.>",
      subjects.requestsAll,
      "$JS.API.>",
    ]) {
      await denySubscribe(controller, s);
    }
  });

  it("SRE changes nothing: no requests, releases, breaker, agent commands, JetStream or KV", async () => {
    await denyPublish(sre, subjects.request("sim-a"));
    await expect(
      jetstream(sre.nc).publish(subjects.request("sim-a"), encodeJson(request({ dryRun: false })), {
        timeout: 5000,
      }),
    ).rejects.toThrow(/Permissions Violation/);
    tally.denied++;
    await denyRequest(sre, subjects.submit("sim-a"), request({ dryRun: false }));
    await denyRequest(sre, subjects.plan("sim-a"), request());
    await denyRequest(sre, subjects.release, { host: "sim-a", bdf: DEV, operator: "sre", reason: "x" });
    await denyRequest(sre, subjects.breaker, { operator: "sre", reason: "x" });
    await denyRequest(sre, subjects.agent("sim-a", "inventory"), { opId: "s1" });
    for (const s of JS_API_PROBES) await denyPublish(sre, s);
    const jsm = await jetstream(sre.nc).jetstreamManager(false);
    await expect(jsm.streams.delete(STREAMS.events.name)).rejects.toThrow(/Permissions Violation/);
    tally.denied++;
    await expect(jsm.streams.purge(STREAMS.requests.name)).rejects.toThrow(/Permissions Violation/);
    tally.denied++;
    await expect(
      jsm.consumers.add(STREAMS.events.name, { deliver_subject: "cxlrc.agent.sim-a.reset" }),
    ).rejects.toThrow(/Permissions Violation/);
    tally.denied++;
    // Both streams are still there, untouched.
    const admin = await jetstream(coord.nc).jetstreamManager(false);
    expect((await admin.streams.info(STREAMS.requests.name)).state.messages).toBeGreaterThan(0);
    for (const s of ["cxlrc.ctl.>", "cxlrc.agent.>", "_INBOX.>", "$JS.API.>", "$KV.>"])
      await denySubscribe(sre, s);
  });

  it("the operator releases but requests nothing and commands no agent", async () => {
    await denyPublish(operator, subjects.request("sim-a"));
    await denyRequest(operator, subjects.submit("sim-a"), request({ dryRun: false }));
    await denyRequest(operator, subjects.agent("sim-a", "restore"), {
      opId: "o1",
      bdf: DEV,
      scope: "io",
      image: {},
    });
    for (const s of JS_API_PROBES) await denyPublish(operator, s);
    await denySubscribe(operator, "cxlrc.ctl.>");
  });

  it("the coordinator cannot inject faults, speak as an agent, purge or delete its streams", async () => {
    await denyRequest(coord, subjects.agent("sim-a", "fault"), { opId: "f1", bdf: DEV, action: "list" });
    await denyPublish(coord, subjects.agentEvent("sim-a", DEV, "op.completed"));
    for (const s of COORDINATOR_FORBIDDEN_API) await denyPublish(coord, s);
    const jsm = await jetstream(coord.nc).jetstreamManager(false);
    const before = (await jsm.streams.info(STREAMS.events.name)).state.messages;
    await expect(jsm.streams.purge(STREAMS.events.name)).rejects.toThrow(/Permissions Violation/);
    tally.denied++;
    expect((await jsm.streams.info(STREAMS.events.name)).state.messages).toBeGreaterThanOrEqual(before);
    await denySubscribe(coord, subjects.agentAll("sim-a"));
    await denySubscribe(coord, "_INBOX.controller.>");
    await denySubscribe(coord, ">");
  });
});

describe("the coordinator and agents did everything above within their rights", () => {
  it("no permission violation on the coordinator's connection; the agents only probed for a JetStream API", () => {
    // Every denial above was counted; what the services did on their own must have raised none (the coordinator
    // violations below are the ones this file provoked on purpose, by subject).
    const provoked = new Set([
      subjects.agent("sim-a", "fault"),
      subjects.agentEvent("sim-a", DEV, "op.completed"),
      ...COORDINATOR_FORBIDDEN_API,
      subjects.agentAll("sim-a"),
      "_INBOX.controller.>",
      ">",
    ]);
    expect(
      coord.violations.filter((v) => !provoked.has(v.subject)).map((v) => `${v.operation} ${v.subject}`),
    ).toEqual([]);
    // agent-hw-1 was only made to try serving its fault endpoint; anything else would be its own doing.
    expect(
      agentHw.violations
        .filter((v) => v.subject !== "$JS.API.STREAM.NAMES" && v.subject !== subjects.agent("hw-1", "fault"))
        .map((v) => `${v.operation} ${v.subject}`),
    ).toEqual([]);
  });
});

describe("denied: connections without TLS, without a client certificate, or with a certificate of no user", () => {
  it("refuses plaintext, missing, foreign or unmapped certificates and passwords", async () => {
    const c = bus.credentials("controller");
    const tls = c.tls ?? {};
    // A certificate of the bus CA for a name that is no user, and one of another CA.
    makeTestCa(bus.tlsDir, ["stranger"]);
    const other = join(bus.dir, "other-ca");
    makeTestCa(other, ["controller"]);
    const cases: Array<[string, Parameters<typeof tryConnect>[0], RegExp]> = [
      ["plaintext", { servers: bus.url, tls: null }, /TLS|tls|secure/],
      [
        "TLS without a client certificate",
        { servers: bus.url, tls: { caFile: tls.caFile as string } },
        /certificate|alert|socket|closed|ECONNRESET/i,
      ],
      [
        "a certificate of the bus CA whose subject is no user",
        {
          servers: bus.url,
          tls: {
            caFile: tls.caFile as string,
            certFile: join(bus.tlsDir, "stranger.pem"),
            keyFile: join(bus.tlsDir, "stranger-key.pem"),
          },
        },
        /Authorization Violation/,
      ],
      [
        "a certificate of a foreign CA with a principal's name",
        {
          servers: bus.url,
          tls: {
            caFile: tls.caFile as string,
            certFile: join(other, "controller.pem"),
            keyFile: join(other, "controller-key.pem"),
          },
        },
        /certificate|alert|socket|closed|ECONNRESET/i,
      ],
      [
        "a valid certificate with a user and password",
        { servers: bus.url, tls: { ...tls }, user: "admin", pass: "admin" },
        /Authorization Violation/,
      ],
      [
        "a valid certificate with another principal's DN and a password",
        { servers: bus.url, tls: { ...tls }, user: certDn(TEST_CERT_DN, "coord-1"), pass: "x" },
        /Authorization Violation/,
      ],
    ];
    for (const [what, opts, re] of cases) {
      const err = await tryConnect(opts);
      expect(err, what).not.toBeNull();
      expect(String(err?.message), what).toMatch(re);
      tally.denied++;
    }
    // The same controller with its certificate connects (the refusals above are not an accident).
    expect(await tryConnect({ servers: bus.url, tls: { ...tls } })).toBeNull();
    tally.allowed++;
  });

  it("the certificate decides who a client is: an extra nkey is refused, another principal's name ignored", async () => {
    const tls = bus.credentials("controller").tls ?? {};
    // An nkey next to the certificate: checked by the server (accounts.conf has an nkey user nobody can sign
    // for), so an unknown one is refused instead of being named as the caller.
    const withNkey = await tryConnect({
      servers: bus.url,
      tls: { ...tls },
      authenticator: nkeyAuthenticator(nkeys.createUser().getSeed()),
    });
    expect(String(withNkey?.message)).toMatch(/Authorization Violation/);
    tally.denied++;
    const { connect } = await import("@nats-io/transport-node");
    for (const extra of [{ user: certDn(TEST_CERT_DN, "coord-1") }, { token: "coordinator" }]) {
      const nc = await connect({
        servers: bus.url,
        tls: { ...tls },
        inboxPrefix: "_INBOX.controller",
        reconnect: false,
        ...extra,
      });
      try {
        const seen: string[] = [];
        const w = bus.witness.subscribe(subjects.plan("sim-a"), {
          callback: (_e, m) => void seen.push(m.headers?.get("Nats-Request-Info") ?? ""),
        });
        await bus.witness.flush();
        nc.publish(subjects.plan("sim-a"), encodeJson({ probe: true }));
        await nc.flush();
        await until(() => seen.length === 1, "the request seen in CXLRC");
        w.unsubscribe();
        expect(JSON.parse(seen[0] as string)).toMatchObject({
          acc: "CONTROLLERS",
          user: certDn(TEST_CERT_DN, "controller"),
        });
        // And it has the controller's rights only: the coordinator's are refused.
        const sub = nc.subscribe("cxlrc.ctl.>");
        await nc.flush();
        expect(await sub.closed).toBeInstanceOf(natsErrors.PermissionViolationError);
        tally.denied++;
      } finally {
        await nc.close();
      }
    }
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
