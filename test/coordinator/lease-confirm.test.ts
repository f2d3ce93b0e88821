// A lease create is read back before it counts: on a clustered bucket nats-server 2.9 can acknowledge two
// concurrent creates of one key (the expected-sequence check is not part of the replicated write,
// nats-io/nats-server#4320). The rival's write, landing after ours, is what the entry holds: we must not drive.
import type { KV } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLeaseManager } from "../../services/coordinator/leases.ts";
import { type CoordinatorStore, openStore } from "../../services/coordinator/store.ts";
import { deviceKey } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";

const TTL = 5000;

describe("lease create confirmed by reading it back", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let store: CoordinatorStore;
  beforeAll(async () => {
    server = await startNats();
    nc = await connect({ servers: server.url });
    store = await openStore(nc, { leaseTtlMs: TTL });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  /** The bucket as a coordinator sees it when a rival's create was in flight with its own. */
  const racing = (kv: KV): KV =>
    new Proxy(kv, {
      get(target, prop, receiver) {
        if (prop === "create") {
          return async (key: string, data: string) => {
            const mine = await target.create(key, data);
            // The rival's acknowledged create, applied right after ours (what #4320 lets through).
            await target.put(
              key,
              JSON.stringify({ owner: "rival", instance: "rival-1", acquiredAt: 1, renewedAt: 1 }),
            );
            return mine;
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });

  it("a create overwritten by a concurrent taker is not a lease; an uncontested one is", async () => {
    const key = deviceKey("lc", "0000:01:00.0");
    const loser = createLeaseManager({
      kv: racing(store.leases),
      owner: "coord-a",
      ttlMs: TTL,
      log: silentLogger,
    });
    expect(await loser.acquire(key)).toBeNull();
    expect(loser.get(key)).toBeUndefined();
    expect((await loser.holder(key))?.owner).toBe("rival");
    await loser.stop();

    const other = deviceKey("lc", "0000:02:00.0");
    const winner = createLeaseManager({ kv: store.leases, owner: "coord-b", ttlMs: TTL, log: silentLogger });
    const lease = await winner.acquire(other);
    expect(lease).not.toBeNull();
    expect(winner.epoch(other)).toBe(lease!.revision);
    expect((await winner.holder(other))?.owner).toBe("coord-b");
    await winner.stop();
  });
});
