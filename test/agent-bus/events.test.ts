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

it("drops events (counted) when the outbox bound is exceeded, keeping the newest", async () => {
  const nc = await connectBus({ servers: server.url, name: "bounded", log: silentLogger });
  const pub = new EventPublisher(nc, silentLogger, { publishTimeoutMs: 100, maxQueue: 3 });
  await server.pause();
  const subject = subjects.agentEvent("o2", DEV_A, "test.step");
  for (let n = 1; n <= 6; n++)
    pub.publish(subject, makeEvent({ host: "o2", bdf: DEV_A, kind: "test.step", data: { n } }));
  expect(pub.stats().dropped).toBe(3);
  server.resume();
  await until(() => pub.stats().pending === 0, "outbox to drain");
  const jsm = await getJsm(nc);
  const stored = (await readEvents(jsm)).filter((e) => e.event.host === "o2");
  // The head (in flight when the bound hit) and the two newest survive.
  expect(stored.map((e) => e.event.data.n)).toEqual([1, 5, 6]);
  await nc.close();
});
