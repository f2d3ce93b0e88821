// Requests and JetStream publishes on one reply subscription (shared/bus/reply-mux.ts, ack-publisher.ts), against a
// real nats-server: stored with their msgID (a copy is a duplicate), the stream's errors and a missing stream named,
// a publish nobody acknowledges timed out, replies under the connection's inbox prefix, replies matched to requests;
// deadlines on the server's clock (deadline-check.ts): a reply read late is in time, a request's time starts when
// it leaves, deadlines that pass together share one PING, a stopped server holds one back at most capMs.
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAckPublisher } from "../../shared/bus/ack-publisher.ts";
import { requestJson } from "../../shared/bus/client.ts";
import { deadlineCheck } from "../../shared/bus/deadline-check.ts";
import { createReplyMux } from "../../shared/bus/reply-mux.ts";
import { isCxlrcError } from "../../shared/errors.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";

const enc = new TextEncoder();

describe("ack publisher", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNats();
    nc = await connect({ servers: server.url, inboxPrefix: "_INBOX.acktest" });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "ACKS", subjects: ["acks.>"], duplicate_window: 60_000_000_000 });
    await jsm.streams.add({ name: "LIMITED", subjects: ["limited.>"], max_msgs: 1, discard: "new" as never });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it("stores in order with the msgID; a copy of an id is acknowledged as a duplicate, not stored again", async () => {
    const pub = createAckPublisher(nc);
    const acks = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        pub.publish(`acks.${i}`, enc.encode(`m${i}`), { msgID: `id-${i}` }),
      ),
    );
    expect(acks.map((a) => a.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(acks.every((a) => a.stream === "ACKS" && !a.duplicate)).toBe(true);
    const again = await pub.publish("acks.7", enc.encode("m7"), { msgID: "id-7" });
    expect(again).toEqual({ stream: "ACKS", seq: 8, duplicate: true });
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info("ACKS")).state.messages).toBe(50);
    expect(pub.pending()).toBe(0);
    pub.close();
  });

  it("names the stream's refusal and a subject no stream captures", async () => {
    const pub = createAckPublisher(nc);
    await pub.publish("limited.a", enc.encode("1"));
    const refused = await pub.publish("limited.b", enc.encode("2")).catch((e: unknown) => e);
    expect(isCxlrcError(refused) && refused.kind).toBe("backend");
    expect(String((refused as Error).message)).toMatch(/limited\.b: .*maximum messages/i);
    const nobody = await pub.publish("nostream.x", enc.encode("3")).catch((e: unknown) => e);
    expect(isCxlrcError(nobody) && nobody.details.reason).toBe("no-responders");
    pub.close();
  });

  it("times out a publish nobody acknowledges, and replies come under the connection's inbox prefix", async () => {
    const replies: string[] = [];
    const sub = nc.subscribe("silent.>", {
      callback: (_e, m) => {
        replies.push(m.reply ?? "");
      },
    });
    await nc.flush();
    const pub = createAckPublisher(nc, { timeoutMs: 150 });
    const t0 = performance.now();
    const err = await pub.publish("silent.x", enc.encode("?")).catch((e: unknown) => e);
    expect(isCxlrcError(err) && err.kind).toBe("timeout");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    expect(pub.pending()).toBe(0);
    expect(replies).toHaveLength(1);
    expect(replies[0]).toMatch(/^_INBOX\.acktest\./);
    sub.unsubscribe();
    pub.close();
    const closed = await pub.publish("acks.z", enc.encode("z")).catch((e: unknown) => e);
    expect(isCxlrcError(closed) && closed.kind).toBe("backend");
  });
});

describe("reply mux", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNats({ jetstream: false });
    nc = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it("matches each reply to its request among many in flight, and names nobody listening", async () => {
    const sub = nc.subscribe("echo.*", {
      callback: (_e, m) => {
        // Answer out of order: the later requests first.
        const delay = 20 - Number(m.subject.split(".")[1]);
        setTimeout(() => m.respond(m.data), Math.max(0, delay));
      },
    });
    await nc.flush();
    const mux = createReplyMux(nc);
    const got = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        mux.request(`echo.${i}`, enc.encode(`q${i}`), { timeoutMs: 2000 }).then((m) => m.string()),
      ),
    );
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => `q${i}`));
    const none = await mux
      .request("nobody.here", enc.encode("?"), { timeoutMs: 2000 })
      .catch((e: unknown) => e);
    expect(isCxlrcError(none) && none.details.reason).toBe("no-responders");
    expect(mux.pending()).toBe(0);
    sub.unsubscribe();
    mux.close();
  });

  it("requestJson leaves a reply nobody reads undecoded (the call settled meanwhile), and decodes it otherwise", async () => {
    const sub = nc.subscribe("not.json", {
      callback: (_e, m) => {
        m.respond(enc.encode("{ not json"));
      },
    });
    await nc.flush();
    const mux = createReplyMux(nc);
    const unread = await requestJson(nc, "not.json", {}, { timeoutMs: 2000, mux, unread: () => true });
    expect(unread).toBeUndefined();
    const read = await requestJson(nc, "not.json", {}, { timeoutMs: 2000, mux, unread: () => false }).catch(
      (e: unknown) => e,
    );
    expect(isCxlrcError(read) && read.kind).toBe("bad-input");
    sub.unsubscribe();
    mux.close();
  });

  it("a request made in a turn that runs past its timeout gets its whole time once it has left", async () => {
    const responder = await connect({ servers: server.url });
    responder.subscribe("slow.turn", {
      callback: (_e, m) => {
        m.respond(m.data);
      },
    });
    await responder.flush();
    const mux = createReplyMux(nc);
    const asked = mux.request("slow.turn", enc.encode("sent late"), { timeoutMs: 80 });
    // The rest of this turn keeps the process busy past the timeout: the request leaves only after it.
    const until = performance.now() + 200;
    while (performance.now() < until) {
      // busy
    }
    expect(
      await asked.then(
        (m) => m.string(),
        (e: unknown) => e,
      ),
    ).toBe("sent late");
    mux.close();
    await responder.close();
  });

  it("a reply the server delivered in time but this process read late (busy past the deadline) is not a timeout", async () => {
    const responder = await connect({ servers: server.url });
    const busyMs = 250;
    responder.subscribe("late.read", {
      callback: (_e, m) => {
        m.respond(m.data);
        // The reply is on its way; this process is now busy in the check phase of its loop, past the
        // request's deadline. The next turn runs the expired sweep timer before it reads the socket.
        setImmediate(() => {
          const until = performance.now() + busyMs;
          while (performance.now() < until) {
            // busy
          }
        });
      },
    });
    await responder.flush();
    const mux = createReplyMux(nc);
    const t0 = performance.now();
    const got = await mux.request("late.read", enc.encode("in time"), { timeoutMs: 60 }).then(
      (m) => m.string(),
      (e: unknown) => e,
    );
    expect(performance.now() - t0).toBeGreaterThanOrEqual(busyMs);
    expect(got).toBe("in time");
    // Silence is still a timeout: after the deadline and the server's confirmation.
    const silent = await mux
      .request("late.read.nobody", enc.encode("?"), { timeoutMs: 60 })
      .catch((e: unknown) => e);
    expect(isCxlrcError(silent) && silent.details.reason).toBe("no-responders");
    const sub = nc.subscribe("quiet.one", { callback: () => undefined });
    await nc.flush();
    const quiet = await mux.request("quiet.one", enc.encode("?"), { timeoutMs: 60 }).catch((e: unknown) => e);
    expect(isCxlrcError(quiet) && quiet.kind).toBe("timeout");
    expect(mux.pending()).toBe(0);
    sub.unsubscribe();
    mux.close();
    await responder.close();
  });

  it("a deadline check shares one PING among deadlines that passed before it was sent; a later deadline sends its own", async () => {
    const check = deadlineCheck(nc);
    expect(deadlineCheck(nc)).toBe(check); // one per connection
    let flushes = 0;
    const flush = nc.flush.bind(nc);
    nc.flush = () => {
      flushes++;
      return flush();
    };
    try {
      const passed = performance.now();
      await Promise.all([
        check.confirm(passed, 5000),
        check.confirm(passed, 5000),
        check.confirm(passed - 5, 5000),
      ]);
      expect(flushes).toBe(1);
      await check.confirm(performance.now(), 5000);
      expect(flushes).toBe(2);
    } finally {
      nc.flush = flush;
    }
  });

  it("a deadline check: a server that answers no PING holds the deadline back at most capMs", async () => {
    const other = await startNats({ jetstream: false });
    const c = await connect({ servers: other.url, reconnectTimeWait: 50 });
    try {
      await other.pause();
      const t0 = performance.now();
      await deadlineCheck(c).confirm(performance.now(), 150);
      const waited = performance.now() - t0;
      expect(waited).toBeGreaterThanOrEqual(140);
      expect(waited).toBeLessThan(1500);
    } finally {
      other.resume();
      await c.close();
      await other.stop();
    }
  });
});
