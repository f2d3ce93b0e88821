// A deadline confirmed by the server (shared/bus/deadline-check.ts), against a real nats-server: deadlines that
// pass together share one PING, a deadline that passes after a PING was sent gets a PING of its own, and a
// server that does not answer (stopped) holds a deadline back at most capMs.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deadlineCheck } from "../../shared/bus/deadline-check.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";

describe("deadline check", () => {
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

  it("shares one PING among deadlines that passed before it was sent; a later deadline sends its own", async () => {
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

  it("a server that answers no PING holds the deadline back at most capMs", async () => {
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
