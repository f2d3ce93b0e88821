// The agent's event outbox against a real server: acks lost while the server is frozen lead to retries
// with the same msgID, and the stream keeps exactly one copy of each event, in order.
import { afterAll, beforeAll, expect, it } from "vitest";
import { EventPublisher } from "../../services/agent/events.ts";
import { connectBus, ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { EventEnvelope, makeEvent } from "../../shared/bus/codec.ts";
import { STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { DEV_A, readEvents, until } from "./fixtures.ts";

let server: NatsServerHandle;
beforeAll(async () => {
  server = await startNats();
});
afterAll(async () => {
  await server.stop();
});

it("re-sends an unacknowledged event with the same msgID: one copy in the stream", async () => {
  const nc = await connectBus({
    servers: server.url,
    name: "outbox",
    log: silentLogger,
    pingIntervalMs: 60_000,
  });
  const jsm = await getJsm(nc);
  await ensureStreams(jsm);
  const pub = new EventPublisher(nc, silentLogger, { publishTimeoutMs: 100 });
  const ev = (n: number) => makeEvent({ host: "o1", bdf: DEV_A, kind: "test.step", data: { n } });
  const subject = subjects.agentEvent("o1", DEV_A, "test.step");
  pub.publish(subject, ev(1));
  expect(await pub.waitFor(1, 5000)).toBe(true);

  await server.pause();
  const seq2 = pub.publish(subject, ev(2));
  pub.publish(subject, ev(3));
  // The frozen server acknowledges nothing: the head event is retried (its earlier attempts sit unread in
  // the server's socket buffer and will be processed on resume).
  await until(() => pub.stats().retries >= 2, "retries while the server is frozen");
  expect(await pub.waitFor(seq2, 0)).toBe(false);
  server.resume();
  await until(() => pub.stats().pending === 0, "outbox to drain");

  const stored = (await readEvents(jsm)).filter((e) => e.event.host === "o1");
  expect(stored.map((e) => e.event.data.n)).toEqual([1, 2, 3]);
  expect(stored.every((e) => EventEnvelope.safeParse(e.event).success)).toBe(true);
  const info = await jsm.streams.info(STREAMS.events.name);
  expect(info.state.messages).toBe(3);
  await pub.close(1000);
  await nc.close();
});

it("sends a later turn's events while earlier ones still wait for their PubAcks", async () => {
  const nc = await connectBus({ servers: server.url, name: "pipelined", log: silentLogger });
  const jsm = await getJsm(nc);
  await ensureStreams(jsm);
  const pub = new EventPublisher(nc, silentLogger, { publishTimeoutMs: 5000 });
  const subject = subjects.agentEvent("o3", DEV_A, "test.step");
  const send = (n: number) =>
    pub.publish(subject, makeEvent({ host: "o3", bdf: DEV_A, kind: "test.step", data: { n } }));
  const nextTurn = () => new Promise<void>((r) => setImmediate(r));
  await server.pause();
  send(1);
  await nextTurn();
  expect(pub.stats().inFlight).toBe(1);
  // An operation's op.completed does not wait for the acknowledgement of its op.started.
  const last = send(2);
  await nextTurn();
  expect(pub.stats().inFlight).toBe(2);
  server.resume();
  expect(await pub.waitFor(last, 5000)).toBe(true);
  const stored = (await readEvents(jsm)).filter((e) => e.event.host === "o3");
  expect(stored.map((e) => e.event.data.n)).toEqual([1, 2]);
  expect(pub.stats()).toMatchObject({ inFlight: 0, pending: 0, retries: 0 });
  await pub.close(1000);
  await nc.close();
});

it("drops events (counted) when the outbox bound is exceeded, keeping the newest", async () => {
  const nc = await connectBus({ servers: server.url, name: "bounded", log: silentLogger });
  const pub = new EventPublisher(nc, silentLogger, { publishTimeoutMs: 100, maxQueue: 3 });
  await server.pause();
  const subject = subjects.agentEvent("o2", DEV_A, "test.step");
  const send = (n: number) =>
    pub.publish(subject, makeEvent({ host: "o2", bdf: DEV_A, kind: "test.step", data: { n } }));
  send(1);
  // One turn: event 1 goes out and waits for its PubAck (the server is paused).
  await new Promise<void>((r) => setImmediate(r));
  for (let n = 2; n <= 6; n++) send(n);
  expect(pub.stats().dropped).toBe(3);
  server.resume();
  await until(() => pub.stats().pending === 0, "outbox to drain");
  const jsm = await getJsm(nc);
  const stored = (await readEvents(jsm)).filter((e) => e.event.host === "o2");
  // The one in flight when the bound hit and the two newest survive.
  expect(stored.map((e) => e.event.data.n)).toEqual([1, 5, 6]);
  await nc.close();
});

it("a stream seen lately is waited for, not given up for core NATS: a stream briefly gone loses no event", async () => {
  const nc = await connectBus({ servers: server.url, name: "outbox-grace", log: silentLogger });
  const jsm = await getJsm(nc);
  await ensureStreams(jsm);
  const pub = new EventPublisher(nc, silentLogger, { publishTimeoutMs: 200, streamCheckMs: 0 });
  const ev = (n: number) => makeEvent({ host: "o3", bdf: DEV_A, kind: "test.step", data: { n } });
  const subject = subjects.agentEvent("o3", DEV_A, "test.step");
  expect(await pub.waitFor(pub.publish(subject, ev(1)), 5000)).toBe(true);
  // What a restarted server looks like until JetStream has recovered its streams: nothing captures events.
  await jsm.streams.delete(STREAMS.events.name);
  const seq2 = pub.publish(subject, ev(2));
  await until(() => pub.stats().retries >= 2, "retries while no stream answers");
  expect(pub.stats()).toMatchObject({ core: 0, pending: 1 });
  expect(await pub.waitFor(seq2, 0)).toBe(false);
  await ensureStreams(jsm);
  expect(await pub.waitFor(seq2, 5000)).toBe(true);
  const stored = (await readEvents(jsm)).filter((e) => e.event.host === "o3");
  expect(stored.map((e) => e.event.data.n)).toEqual([2]);
  expect(pub.stats().core).toBe(0);
  await pub.close(1000);
  await nc.close();
});
