// The events an operation emits while it works on registers go out together on the next turn of the event
// loop (services/agent/events.ts): nothing is sent in the middle of the operation, order is kept, and
// waitFor still means "sent". A stand-in connection records core publishes (mode "core").
import type { NatsConnection } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { EventPublisher } from "../../services/agent/events.ts";
import { makeEvent } from "../../shared/bus/codec.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { DEV } from "./fixtures.ts";

function recordingConnection() {
  const sent: Array<{ subject: string; n: number }> = [];
  const nc = {
    options: {},
    isClosed: () => false,
    async *status() {},
    publish(subject: string, data: Uint8Array) {
      const ev = JSON.parse(new TextDecoder().decode(data)) as { data: { n: number } };
      sent.push({ subject, n: ev.data.n });
    },
  };
  return { nc: nc as unknown as NatsConnection, sent };
}

const nextTurn = () => new Promise<void>((r) => setImmediate(r));
const event = (n: number) => makeEvent({ host: "h1", bdf: DEV, kind: "test.step", data: { n } });
const subject = subjects.agentEvent("h1", DEV, "test.step");

describe("agent event outbox", () => {
  it("sends what one turn emitted on the next turn, in order, as one batch", async () => {
    const { nc, sent } = recordingConnection();
    const pub = new EventPublisher(nc, silentLogger, { mode: "core" });
    pub.publish(subject, event(1));
    // An operation awaiting register reads: microtasks only, still the same turn.
    for (let i = 0; i < 20; i++) await Promise.resolve();
    const last = pub.publish(subject, event(2));
    for (let i = 0; i < 20; i++) await Promise.resolve();
    expect(sent).toEqual([]);
    expect(await pub.waitFor(last, 1000)).toBe(true);
    expect(sent.map((s) => s.n)).toEqual([1, 2]);
    expect(pub.stats()).toMatchObject({ core: 2, pending: 0, dropped: 0 });
  });

  it("events emitted on later turns follow, still in order", async () => {
    const { nc, sent } = recordingConnection();
    const pub = new EventPublisher(nc, silentLogger, { mode: "core" });
    pub.publish(subject, event(1));
    await nextTurn();
    pub.publish(subject, event(2));
    const last = pub.publish(subject, event(3));
    expect(sent.map((s) => s.n)).toEqual([1]);
    expect(await pub.waitFor(last, 1000)).toBe(true);
    expect(sent.map((s) => s.n)).toEqual([1, 2, 3]);
    await pub.close(1000);
  });
});
