// The agent's bus contract with fake operations (counters and gates, no hardware timing): discovery,
// heartbeat, events in CXLRC_EVENTS, the opId rule, per-device serialization, bad input, and a NATS
// restart in the middle of an operation.
import { Svcm } from "@nats-io/services";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_SERVICE_NAME } from "../../services/agent/service.ts";
import type { AgentReply } from "../../shared/bus/agent-messages.ts";
import { callAgent, requestJson, waitForConnection } from "../../shared/bus/client.ts";
import { EventEnvelope } from "../../shared/bus/codec.ts";
import { type AgentOp, STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { realClock } from "../../shared/hw/backend.ts";
import {
  DEV_A,
  DEV_B,
  deferred,
  type Env,
  type FakeOps,
  fakeBackend,
  fakeOps,
  readEvents,
  startEnv,
  until,
} from "./fixtures.ts";

const HOST = "h1";
let env: Env;
let ops: FakeOps;

beforeAll(async () => {
  ops = fakeOps();
  env = await startEnv({
    host: HOST,
    backend: fakeBackend(),
    operations: ops,
    heartbeatMs: 50,
    maxPayloadBytes: 4096,
    maxQueuePerDevice: 1,
  });
});
afterAll(async () => {
  await env?.close();
});

/** The raw reply (envelope), for error replies the agent gives instead of acting. */
async function raw(op: string, body: Uint8Array | string): Promise<AgentReply> {
  const m = await env.nc.request(`cxlrc.agent.${HOST}.${op}`, body, { timeout: 5000 });
  return m.json<AgentReply>();
}

const call = <Op extends AgentOp>(op: Op, opId: string, params: object) =>
  callAgent(env.nc, HOST, op, opId, params as never, { timeoutMs: 5000 });

describe("discovery, heartbeat, events", () => {
  it("answers $SRV.PING and INFO with its host and one endpoint per operation", async () => {
    const client = new Svcm(env.nc).client({ strategy: "count", maxMessages: 1, maxWait: 5000 });
    const pings = [];
    for await (const p of await client.ping(AGENT_SERVICE_NAME)) pings.push(p);
    expect(pings.map((p) => p.metadata?.host)).toContain(HOST);
    const infos = [];
    for await (const i of await client.info(AGENT_SERVICE_NAME)) infos.push(i);
    const info = infos.find((i) => i.metadata?.host === HOST);
    expect(info?.endpoints.map((e) => e.subject).sort()).toEqual(
      ["bind", "fault", "inventory", "ping", "probe", "quiesce", "reset", "restore", "save", "verify"]
        .map((op) => `cxlrc.agent.${HOST}.${op}`)
        .sort(),
    );
  });

  it("sends a heartbeat with host, version, devices, inFlight and uptime", async () => {
    const sub = env.nc.subscribe(subjects.agentEvent(HOST, null, "heartbeat"), { max: 1 });
    let got: EventEnvelope | undefined;
    for await (const m of sub) got = EventEnvelope.parse(m.json());
    expect(got?.kind).toBe("heartbeat");
    expect(got?.bdf).toBeNull();
    expect(got?.data).toMatchObject({ host: HOST, devices: 2, inFlight: 0 });
    expect(typeof got?.data.version).toBe("string");
    expect(got?.data.uptimeMs).toBeGreaterThanOrEqual(0);
  });

  it("publishes op.started / op events / op.completed to CXLRC_EVENTS under its own subject space (cxlrc.agt)", async () => {
    const result = await call("probe", "ev-1", { bdf: DEV_A });
    expect(result).toMatchObject({ bdf: DEV_A });
    const mine = (await readEvents(env.jsm)).filter((e) => e.event.opId === "ev-1");
    expect(mine.map((e) => e.subject)).toEqual([
      "cxlrc.agt.h1.0000-01-00-0.op.started",
      "cxlrc.agt.h1.0000-01-00-0.probe.read",
      "cxlrc.agt.h1.0000-01-00-0.op.completed",
    ]);
    expect(mine.map((e) => e.event.kind)).toEqual(["op.started", "probe.read", "op.completed"]);
    const done = mine[2]!.event;
    expect(done).toMatchObject({ v: 1, host: HOST, bdf: DEV_A, source: "agent" });
    expect(done.data).toMatchObject({ op: "probe", result });
    expect(typeof done.data.durationMs).toBe("number");
    expect(new Set(mine.map((e) => e.event.id)).size).toBe(3);
    const started = (await readEvents(env.jsm)).find((e) => e.event.kind === "agent.started");
    expect(started?.subject).toBe("cxlrc.agt.h1.agent.agent.started");
  });

  it("a failing operation gives a typed error reply and an op.failed event", async () => {
    const err = await call("reset", "fail-1", { bdf: DEV_B, method: "sbr", kernelMethod: "fail" }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CxlrcError);
    expect((err as CxlrcError).kind).toBe("internal");
    expect((err as CxlrcError).message).toBe("boom");
    const failed = (await readEvents(env.jsm)).find(
      (e) => e.event.opId === "fail-1" && e.event.kind === "op.failed",
    );
    expect(failed?.event.data).toMatchObject({ op: "reset", error: { kind: "internal", message: "boom" } });
  });
});

describe("operation ids", () => {
  it("a repeated opId returns the first reply and does not act twice", async () => {
    const a = await raw("reset", JSON.stringify({ opId: "dup-1", bdf: DEV_A, method: "flr" }));
    const b = await raw("reset", JSON.stringify({ method: "flr", bdf: DEV_A, opId: "dup-1" }));
    expect(a.ok).toBe(true);
    expect(b).toEqual(a);
    const again = await call("reset", "dup-2", { bdf: DEV_A, method: "flr" });
    // dup-1 ran once: the next distinct reset is the second on this device.
    expect((a as { result: { details: { resets: number } } }).result.details.resets + 1).toBe(
      again.details.resets,
    );
    expect(env.agent.stats().deduplicated).toBeGreaterThanOrEqual(1);
  });

  it("a repeat that arrives while the first is still running waits for it and gets the same reply", async () => {
    const gate = deferred();
    ops.gates.set("dup-flight", gate.promise);
    const before = ops.runs.get(`reset:${DEV_B}`) ?? 0;
    const body = { opId: "dup-3", bdf: DEV_B, method: "cxl", kernelMethod: "gate:dup-flight" };
    const d0 = env.agent.stats().deduplicated;
    const first = raw("reset", JSON.stringify(body));
    await until(() => ops.started.has("dup-flight"), "first reset to start");
    const second = raw("reset", JSON.stringify(body));
    await until(() => env.agent.stats().deduplicated === d0 + 1, "the repeat to be seen");
    gate.resolve();
    const [r1, r2] = await Promise.all([first, second]);
    expect(r1.ok).toBe(true);
    expect(r2).toEqual(r1);
    expect(ops.runs.get(`reset:${DEV_B}`)).toBe(before + 1);
  });

  it("refuses an opId reused with different parameters", async () => {
    await call("probe", "reuse-1", { bdf: DEV_A });
    const r = await raw("probe", JSON.stringify({ opId: "reuse-1", bdf: DEV_B }));
    expect(r).toMatchObject({ ok: false, opId: "reuse-1", error: { kind: "bad-input" } });
    expect(r.ok === false && r.error.message).toMatch(/opId "reuse-1" was already used/);
  });
});

describe("one operation per device", () => {
  it("serializes operations on one device and overlaps operations on different devices", async () => {
    const gate = deferred();
    ops.gates.set("hold-a", gate.promise);
    ops.trace.length = 0;
    const a1 = call("reset", "ser-a1", { bdf: DEV_A, method: "flr", kernelMethod: "gate:hold-a" });
    await until(() => ops.started.has("hold-a"), "a1 to start");
    const a2 = call("reset", "ser-a2", { bdf: DEV_A, method: "flr", kernelMethod: "gate:a2" });
    await until(() => env.agent.stats().queued === 1, "a2 to queue behind a1");
    // Another device is not blocked by DEV_A's running reset.
    await call("reset", "ser-b1", { bdf: DEV_B, method: "flr", kernelMethod: "gate:b1" });
    expect(ops.trace).toEqual([`start ${DEV_A} hold-a`, `start ${DEV_B} b1`, `end ${DEV_B} b1`]);
    // The queue holds one (maxQueuePerDevice: 1): a third op on DEV_A is refused, not queued.
    const refused = await raw("probe", JSON.stringify({ opId: "ser-a3", bdf: DEV_A }));
    expect(refused).toMatchObject({ ok: false, opId: "ser-a3", error: { kind: "in-progress" } });
    gate.resolve();
    await Promise.all([a1, a2]);
    expect(ops.trace).toEqual([
      `start ${DEV_A} hold-a`,
      `start ${DEV_B} b1`,
      `end ${DEV_B} b1`,
      `end ${DEV_A} hold-a`,
      `start ${DEV_A} a2`,
      `end ${DEV_A} a2`,
    ]);
    // A refused opId was not remembered: sending it again now runs it.
    expect(await call("probe", "ser-a3", { bdf: DEV_A })).toMatchObject({ bdf: DEV_A });
  });
});

describe("bad input", () => {
  const cases: Array<[string, string, Uint8Array | string, RegExp]> = [
    ["non-JSON", "probe", "{not json", /is not JSON .*starts "\{not json"/],
    ["empty", "probe", "", /is empty/],
    ["binary", "probe", new Uint8Array([0xff, 0xfe, 0x00]), /not valid UTF-8/],
    ["a JSON array", "probe", "[1,2]", /expected object/i],
    ["wrong type", "reset", JSON.stringify({ opId: "b-1", bdf: DEV_A, method: 3 }), /field "method"/],
    ["bad enum", "reset", JSON.stringify({ opId: "b-2", bdf: DEV_A, method: "warm" }), /field "method"/],
    ["bad BDF", "probe", JSON.stringify({ opId: "b-3", bdf: "01:00.0" }), /field "bdf".*DDDD:BB:DD\.F/],
    [
      "unknown field",
      "probe",
      JSON.stringify({ opId: "b-4", bdf: DEV_A, force: true }),
      /unknown field "force"/,
    ],
    ["missing opId", "probe", JSON.stringify({ bdf: DEV_A }), /field "opId"/],
    [
      "oversized",
      "restore",
      JSON.stringify({ opId: "b-5", bdf: DEV_A, scope: "full", image: "x".repeat(5000) }),
      /exceeds the agent's limit of 4096 bytes/,
    ],
  ];
  for (const [name, op, body, re] of cases) {
    it(`replies bad-input to ${name} and keeps serving`, async () => {
      const r = await raw(op, body);
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.error.kind).toBe("bad-input");
      expect(r.error.message).toMatch(re);
      expect(r.error.message.startsWith(`${op}: `)).toBe(true);
      expect(await call("probe", `after-${name}`, { bdf: DEV_A })).toMatchObject({ bdf: DEV_A });
    });
  }

  it("keeps the opId in the error reply when it could be read", async () => {
    const r = await raw("reset", JSON.stringify({ opId: "keep-1", bdf: DEV_A, method: "warm" }));
    expect(r).toMatchObject({ ok: false, opId: "keep-1" });
    expect(r.ok === false && r.error.details.fields).toEqual(["method"]);
  });

  it("names unknown fields in details.fields, nested ones by their path", async () => {
    const top = await raw("probe", JSON.stringify({ opId: "unk-1", bdf: DEV_A, force: true }));
    expect(top.ok === false && top.error.details.fields).toEqual(["force"]);
    const nested = await raw(
      "reset",
      JSON.stringify({ opId: "unk-2", bdf: DEV_A, method: "flr", quiesce: { scope: "io", hard: true } }),
    );
    expect(nested.ok === false && nested.error.details.fields).toEqual(["quiesce.hard"]);
  });

  it("requestJson turns an error reply into a CxlrcError with the remote kind", async () => {
    const e = await requestJson(
      env.nc,
      subjects.agent(HOST, "probe"),
      { opId: "x" },
      { timeoutMs: 5000 },
    ).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CxlrcError);
    expect(e).toMatchObject({
      kind: "bad-input",
      details: { remote: true, subject: "cxlrc.agent.h1.probe" },
    });
  });
});

describe("reply subjects", () => {
  const PURGE = "$JS.API.STREAM.PURGE.CXLRC_EVENTS";

  /** Send `body` to `subject` with a chosen reply subject; resolves once the agent has refused it. */
  async function sendWithReply(subject: string, body: string, reply: string | undefined) {
    const before = env.agent.stats().refusedReplySubjects;
    env.nc.publish(subject, body, reply === undefined ? {} : { reply });
    await until(() => env.agent.stats().refusedReplySubjects === before + 1, `refusal of ${subject}`);
    // Whatever the agent would have sent has reached the server by now.
    await env.agentNc.flush();
    await env.nc.flush();
  }

  it("does not answer (nor run) a request whose reply is a JetStream API subject: nothing purged", async () => {
    await call("probe", "rs-before", { bdf: DEV_A });
    const stream = await env.jsm.streams.info(STREAMS.events.name);
    expect(stream.state.messages).toBeGreaterThan(0);
    const probes = ops.runs.get(`probe:${DEV_A}`) ?? 0;
    await sendWithReply(
      subjects.agent(HOST, "probe"),
      JSON.stringify({ opId: "purge-1", bdf: DEV_A }),
      PURGE,
    );
    const after = await env.jsm.streams.info(STREAMS.events.name);
    expect(after.state.first_seq).toBe(stream.state.first_seq);
    expect(after.state.messages).toBeGreaterThanOrEqual(stream.state.messages);
    expect(ops.runs.get(`probe:${DEV_A}`) ?? 0).toBe(probes);
    // The opId was not remembered either: sent properly, it runs.
    expect(await call("probe", "purge-1", { bdf: DEV_A })).toMatchObject({ bdf: DEV_A });
    expect(ops.runs.get(`probe:${DEV_A}`)).toBe(probes + 1);
  });

  it("refuses a KV subject, another service's subject and a missing reply the same way", async () => {
    const resets = ops.runs.get(`reset:${DEV_B}`) ?? 0;
    const body = (opId: string) => JSON.stringify({ opId, bdf: DEV_B, method: "flr" });
    await sendWithReply(subjects.agent(HOST, "reset"), body("kv-1"), "$KV.cxlrc-leases.h1.0000-02-00-0");
    await sendWithReply(subjects.agent(HOST, "reset"), body("svc-1"), subjects.agent(HOST, "reset"));
    await sendWithReply(subjects.agent(HOST, "reset"), body("none-1"), undefined);
    await sendWithReply(subjects.agent(HOST, "reset"), body("wild-1"), "_INBOX.>");
    expect(ops.runs.get(`reset:${DEV_B}`) ?? 0).toBe(resets);
  });

  it("discovery ($SRV PING) answers only an inbox too, and the agent keeps serving", async () => {
    const stream = await env.jsm.streams.info(STREAMS.events.name);
    await sendWithReply("$SRV.PING", "", PURGE);
    await sendWithReply(`$SRV.INFO.${AGENT_SERVICE_NAME}`, "", PURGE);
    expect((await env.jsm.streams.info(STREAMS.events.name)).state.first_seq).toBe(stream.state.first_seq);
    const client = new Svcm(env.nc).client({ strategy: "count", maxMessages: 1, maxWait: 5000 });
    const pings = [];
    for await (const p of await client.ping(AGENT_SERVICE_NAME)) pings.push(p);
    expect(pings.map((p) => p.metadata?.host)).toContain(HOST);
    expect(await call("probe", "rs-after", { bdf: DEV_A })).toMatchObject({ bdf: DEV_A });
  });
});

describe("fault endpoint", () => {
  it("sets, lists and clears faults on a backend that has them", async () => {
    const set = await call("fault", "f-1", { bdf: DEV_A, action: "set", fault: { name: "gone" } });
    expect(set).toEqual({ bdf: DEV_A, faults: [{ name: "gone" }] });
    const cleared = await call("fault", "f-2", { bdf: DEV_A, action: "clear" });
    expect(cleared).toEqual({ bdf: DEV_A, faults: [] });
    const bad = await call("fault", "f-3", { bdf: DEV_A, action: "set" }).catch((e: unknown) => e);
    expect(bad).toMatchObject({ kind: "bad-input" });
  });

  it("has no fault endpoint when the backend cannot inject faults", async () => {
    const backend = {
      ...fakeBackend(),
      capabilities: { kernelReset: false, vfioReset: false, bind: false, faults: false },
    };
    const other = await startEnv({ host: "nofault", backend, operations: fakeOps() }, { streams: false });
    try {
      const e = await callAgent(
        other.nc,
        "nofault",
        "fault",
        "nf-1",
        { bdf: DEV_A, action: "list" },
        { timeoutMs: 2000 },
      ).catch((x: unknown) => x);
      expect(e).toMatchObject({ kind: "backend", details: { reason: "no-responders" } });
      expect(
        await callAgent(other.nc, "nofault", "probe", "nf-2", { bdf: DEV_A }, { timeoutMs: 2000 }),
      ).toMatchObject({
        bdf: DEV_A,
      });
    } finally {
      await other.close();
    }
  });
});

describe("without a stream", () => {
  it("sends events as core NATS when no stream captures them", async () => {
    const other = await startEnv(
      { host: "nostream", backend: fakeBackend(), operations: fakeOps() },
      { streams: false },
    );
    try {
      const sub = other.nc.subscribe(subjects.agentEventsOfHost("nostream"));
      const seen: string[] = [];
      void (async () => {
        for await (const m of sub) seen.push(m.subject);
      })();
      await other.nc.flush();
      await callAgent(other.nc, "nostream", "probe", "ns-1", { bdf: DEV_A }, { timeoutMs: 5000 });
      await until(() => seen.includes("cxlrc.agt.nostream.0000-01-00-0.op.completed"), "core event");
      // Sent straight away as core NATS: no publish waited for an ack that no stream would give (a core
      // subscriber on the subject makes a JetStream publish time out rather than fail fast).
      await until(() => other.agent.stats().events.pending === 0, "outbox to drain");
      expect(other.agent.stats().events).toMatchObject({ stored: 0, retries: 0 });
      expect(other.agent.stats().events.core).toBeGreaterThanOrEqual(3);
      sub.unsubscribe();
    } finally {
      await other.close();
    }
  });
});

describe("stop", () => {
  it("stops serving, lets the running operation finish and answer, and says so in an event", async () => {
    const o = fakeOps();
    const st = await startEnv({ host: "stopper", backend: fakeBackend(), operations: o });
    try {
      const gate = deferred();
      o.gates.set("stop", gate.promise);
      const running = callAgent(
        st.nc,
        "stopper",
        "reset",
        "st-1",
        { bdf: DEV_A, method: "flr", kernelMethod: "gate:stop" },
        { timeoutMs: 5000 },
      );
      await until(() => o.started.has("stop"), "reset to start");
      const stopped = st.agent.stop();
      await until(() => st.agent.service.isStopped, "service to stop");
      gate.resolve();
      expect(await running).toMatchObject({ bdf: DEV_A, method: "flr", details: { resets: 1 } });
      await stopped;
      const after = await callAgent(
        st.nc,
        "stopper",
        "probe",
        "st-2",
        { bdf: DEV_A },
        { timeoutMs: 2000 },
      ).catch((e: unknown) => e);
      expect(after).toMatchObject({ kind: "backend", details: { reason: "no-responders" } });
      const kinds = (await readEvents(st.jsm))
        .filter((e) => e.event.host === "stopper")
        .map((e) => e.event.kind);
      expect(kinds.at(-1)).toBe("agent.stopped");
      expect(kinds).toContain("op.completed");
    } finally {
      await st.close();
    }
  });
});

describe("NATS restart", () => {
  it("an operation that finishes during an outage: events stored once after restart, the retry gets the first result", async () => {
    const o = fakeOps();
    const r = await startEnv({
      host: "restart",
      backend: { ...fakeBackend(), clock: realClock },
      operations: o,
    });
    try {
      const gate = deferred();
      o.gates.set("outage", gate.promise);
      const first = callAgent(
        r.nc,
        "restart",
        "reset",
        "rs-1",
        { bdf: DEV_A, method: "cxl", kernelMethod: "gate:outage" },
        { timeoutMs: 2000 },
      ).catch((e: unknown) => e);
      await until(() => o.started.has("outage"), "reset to start");
      await r.server.restart({
        whileDown: async () => {
          gate.resolve();
          // The op finished while NATS was down: its op.completed event waits in the outbox.
          await until(
            () => r.agent.stats().events.pending > 0 && r.agent.stats().completed === 1,
            "queued event",
          );
        },
      });
      await waitForConnection(r.nc);
      await waitForConnection(r.agentNc);
      const firstResult = await first;
      // The first reply may arrive (sent after reconnect) or be lost with the old connection; either way
      // a retry with the same opId returns the one result and the reset ran once.
      let retry: unknown;
      for (let i = 0; i < 50 && retry === undefined; i++) {
        retry = await callAgent(
          r.nc,
          "restart",
          "reset",
          "rs-1",
          { bdf: DEV_A, method: "cxl", kernelMethod: "gate:outage" },
          { timeoutMs: 1000 },
        ).catch(() => undefined);
      }
      expect(retry).toMatchObject({ bdf: DEV_A, method: "cxl", details: { resets: 1 } });
      if (!(firstResult instanceof Error)) expect(firstResult).toEqual(retry);
      expect(o.runs.get(`reset:${DEV_A}`)).toBe(1);
      await until(() => r.agent.stats().events.pending === 0, "outbox to drain");
      const events = (await readEvents(r.jsm))
        .filter((e) => e.event.opId === "rs-1")
        .map((e) => e.event.kind);
      expect(events).toEqual(["op.started", "reset.initiated", "op.completed"]);
      // And a new operation after the restart works.
      expect(
        await callAgent(r.nc, "restart", "probe", "rs-2", { bdf: DEV_B }, { timeoutMs: 5000 }),
      ).toMatchObject({
        bdf: DEV_B,
      });
    } finally {
      await r.close();
    }
  });
});
