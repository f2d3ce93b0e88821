// The coordinator's events go out in groups per device: whatever a device has queued when a group starts is
// sent at once, pipelined on the connection, and the next group waits for the acknowledgements of this one.
// The stream keeps them in the order published.
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEventPublisher } from "../../services/coordinator/events.ts";
import { connectBus, ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { STREAMS } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { until } from "./helpers.ts";

describe("event publisher: groups per device", () => {
  let server: NatsServerHandle;
  beforeAll(async () => {
    server = await startNats();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("sends a device's queued events together, the next group after their acks, in order", async () => {
    const nc = await connectBus({ servers: server.url, name: "groups", log: silentLogger });
    await ensureStreams(await getJsm(nc));
    const events = createEventPublisher({ js: jetstream(nc), coordinator: "c1", log: silentLogger });
    const dev = { host: "g1", bdf: "0000:01:00.0" };
    await server.pause();
    const sent = ["state.entered", "decoder.committed", "verified"].map((kind, n) =>
      events.publish({ ...dev, kind, data: { n } }),
    );
    await until(() => events.inFlight() === 3);
    // Published while the first group waits for its acknowledgements: it waits too.
    const later = events.publish({ ...dev, kind: "state.entered", data: { n: 3 } });
    await new Promise((r) => setTimeout(r, 50));
    expect(events.inFlight()).toBe(3);
    server.resume();
    const envs = await Promise.all([...sent, later]);
    expect(events.inFlight()).toBe(0);

    const jsm = await getJsm(nc);
    const stored: Array<{ id: string; n: number }> = [];
    const info = await jsm.streams.info(STREAMS.events.name);
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(STREAMS.events.name, { seq });
      const env = m!.json<{ id: string; host: string; data: { n: number } }>();
      if (env.host === dev.host) stored.push({ id: env.id, n: env.data.n });
    }
    expect(stored.map((s) => s.n)).toEqual([0, 1, 2, 3]);
    expect(stored.map((s) => s.id)).toEqual(envs.map((e) => e.id));
    await nc.close();
  });
});
