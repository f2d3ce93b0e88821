// A lease entry the server never expires (nats-server 2.9 can keep an entry of a replicated bucket past its max
// age after a fail-over: nats-io/nats-server#3653, #4754) is taken over once a taker has seen it sit at one
// revision for STALE_FACTOR lease times; an entry its holder renews is never taken. Here the bucket's max age is
// a minute, far longer than the managers' lease time, so the server expires nothing during the test.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLeaseManager, STALE_FACTOR } from "../../services/coordinator/leases.ts";
import { type CoordinatorStore, openStore } from "../../services/coordinator/store.ts";
import { deviceKey } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";

const TTL = 400;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("lease entries nobody renews", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let store: CoordinatorStore;
  beforeAll(async () => {
    server = await startNats();
    nc = await connect({ servers: server.url });
    store = await openStore(nc, { leaseTtlMs: 60_000 });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it("are taken over after STALE_FACTOR lease times at one revision, with a higher revision (epoch)", async () => {
    const key = deviceKey("stale", "0000:01:00.0");
    const dead = createLeaseManager({ kv: store.leases, owner: "c-dead", ttlMs: TTL, log: silentLogger });
    const old = await dead.acquire(key);
    expect(old).not.toBeNull();
    // Dies without releasing: its entry stays (the server keeps it for a minute).
    await dead.stop({ release: false });
    const b = createLeaseManager({ kv: store.leases, owner: "c-b", ttlMs: TTL, log: silentLogger });
    expect(await b.acquire(key)).toBeNull();
    expect((await b.holder(key))?.owner).toBe("c-dead");
    await sleep(TTL * STALE_FACTOR * 0.5);
    expect(await b.acquire(key)).toBeNull();
    await sleep(TTL * STALE_FACTOR * 0.5 + 100);
    // Nobody renewed it for one and a half lease times: it holds nothing.
    expect(await b.holder(key)).toBeNull();
    const taken = await b.acquire(key);
    expect(taken).not.toBeNull();
    expect(taken!.revision).toBeGreaterThan(old!.revision);
    expect(b.epoch(key)).toBe(taken!.revision);
    expect((await b.holder(key))?.owner).toBe("c-b");
    await b.stop();
  });

  it("are never taken while their holder renews them", async () => {
    const key = deviceKey("stale", "0000:02:00.0");
    const live = createLeaseManager({ kv: store.leases, owner: "c-live", ttlMs: TTL, log: silentLogger });
    const held = await live.acquire(key);
    expect(held).not.toBeNull();
    const b = createLeaseManager({ kv: store.leases, owner: "c-b2", ttlMs: TTL, log: silentLogger });
    for (let i = 0; i < 12; i++) {
      expect(await b.acquire(key)).toBeNull();
      expect((await b.holder(key))?.owner).toBe("c-live");
      await sleep(TTL / 4);
    }
    expect(held!.lost).toBe(false);
    await live.stop();
    await b.stop();
  });
});
