// Partition leases against a real nats-server 2.9: the devices of a host share one lease entry (one write for
// all of them, one epoch), kept for the linger time after the last one rests and taken again without a write
// inside it; a peer gets no device of a host held here, and gets the host (at a higher epoch) once it goes; a
// partition lost or forfeited loses every device in it.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LostReason } from "../../services/coordinator/leases.ts";
import { createPartitionLeases, partitionOf } from "../../services/coordinator/partition-leases.ts";
import { type CoordinatorStore, openStore } from "../../services/coordinator/store.ts";
import { BUCKETS, deviceKey, hostOfKey, keyParts } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { busCounter } from "./bus-counter.ts";
import { sleep, until } from "./helpers.ts";

const TTL = 1200;
const LINGER = 300;
/** Writes to the leases bucket (puts, updates, deletes). */
const leaseWrites = (subject: string) => subject.startsWith(`$KV.${BUCKETS.leases}.`);

describe("partition leases on nats-server 2.9", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let store: CoordinatorStore;
  const managers: Array<{ stop: (o?: { release?: boolean }) => Promise<void> }> = [];
  const make = (owner: string, lost?: (key: string, reason: LostReason) => void) => {
    const m = createPartitionLeases({
      kv: store.leases,
      deletes: { js: store.js, bucket: BUCKETS.leases },
      owner,
      ttlMs: TTL,
      lingerMs: LINGER,
      log: silentLogger,
      ...(lost ? { onLost: lost } : {}),
    });
    managers.push(m);
    return m;
  };

  beforeAll(async () => {
    server = await startNats();
    nc = await connect({ servers: server.url });
    store = await openStore(nc, { leaseTtlMs: TTL });
  });
  afterAll(async () => {
    for (const m of managers) await m.stop({ release: false }).catch(() => undefined);
    await nc?.close();
    await server?.stop();
  });

  it("names a device's partition by its host; a key reads back as its host and BDF", () => {
    const key = deviceKey("h-1", "0000:0d:00.1");
    expect(partitionOf(key)).toBe("h-1");
    expect(hostOfKey(key)).toBe("h-1");
    expect(keyParts(key)).toEqual({ host: "h-1", bdf: "0000:0d:00.1" });
    // Not a device key (the fleet's own entries, a malformed one): the host part, no BDF.
    expect(keyParts("h-1.not-a-bdf")).toEqual({ host: "h-1", bdf: null });
    expect(keyParts("fleet")).toEqual({ host: "fleet", bdf: null });
  });

  it("the devices of a host share one entry and one epoch; the host is kept for the linger time, then given back", async () => {
    const a = make("pa");
    const d1 = deviceKey("p1", "0000:01:00.0");
    const d2 = deviceKey("p1", "0000:02:00.0");
    const bus = busCounter(nc, { writes: leaseWrites });
    try {
      const first = await bus.during(() => Promise.all([a.acquire(d1), a.acquire(d2)]));
      expect(first.out.every((l) => l !== null)).toBe(true);
      // One create for the host, whatever the number of its devices taken together.
      expect(first.counts.writes).toBe(1);
      expect(a.epoch(d1)).toBeDefined();
      expect(a.epoch(d2)).toBe(a.epoch(d1));
      expect(a.held().sort()).toEqual([d1, d2].sort());
      expect(a.partitions()).toEqual(["p1"]);
      const entry = await store.leases.get("p1");
      expect(entry?.revision).toBe(a.epoch(d1));

      // Both rest: the host is kept (no write), and a device taken again inside the linger time is under the
      // same epoch without a write.
      const epoch = a.epoch(d1)!;
      const rest = await bus.during(async () => {
        await a.release(d1);
        await a.release(d2);
        return a.acquire(d1);
      });
      expect(rest.counts.writes).toBe(0);
      expect(rest.out).not.toBeNull();
      expect(a.epoch(d1)).toBe(epoch);
      expect(a.get(d2)).toBeUndefined();
      // Released while the partition was ours: what was said under its epoch still belongs to the device.
      expect(await a.releasedAt(d2, epoch)).toBe(true);

      // Rests again: past the linger time the host's lease is deleted (one write).
      await a.release(d1);
      expect(await until(async () => (await store.leases.get("p1"))?.operation === "DEL")).toBe(true);
      expect(a.partitions()).toEqual([]);
    } finally {
      bus.stop();
    }
  });

  it("a peer gets no device of a host held here, even one not driven; it gets the host at a higher epoch once it goes", async () => {
    const a = make("qa");
    const b = make("qb");
    const d1 = deviceKey("p2", "0000:01:00.0");
    const d2 = deviceKey("p2", "0000:02:00.0");
    expect(await a.acquire(d1)).not.toBeNull();
    const epochA = a.epoch(d1)!;
    expect(await b.acquire(d2)).toBeNull();
    expect((await b.holder(d2))?.owner).toBe("qa");
    // Here the host is ours: its device not driven is free for this process, the driven one is held.
    expect(await a.holder(d2)).toBeNull();
    expect((await a.holder(d1))?.owner).toBe("qa");
    // Lingering (past the renewals of several lease times) still keeps the peer out.
    await a.release(d1);
    expect(await b.acquire(d2)).toBeNull();
    await sleep(LINGER + 200);
    const lb = await b.acquire(d2);
    expect(lb).not.toBeNull();
    expect(b.epoch(d2)!).toBeGreaterThan(epochA);
    expect(await a.acquire(d1)).toBeNull();
  });

  it("a partition forfeited (an agent refused one device's epoch) loses every device in it", async () => {
    const lost: Array<[string, LostReason]> = [];
    const a = make("ra", (key, reason) => lost.push([key, reason]));
    const d1 = deviceKey("p3", "0000:01:00.0");
    const d2 = deviceKey("p3", "0000:02:00.0");
    const other = deviceKey("p4", "0000:01:00.0");
    const [l1, l2] = await Promise.all([a.acquire(d1), a.acquire(d2), a.acquire(other)]);
    a.forfeit(d2);
    expect(lost.sort()).toEqual([
      [d1, "fenced"],
      [d2, "fenced"],
    ]);
    expect(l1?.lost).toBe(true);
    expect(l2?.signal.aborted).toBe(true);
    expect(a.get(d1)).toBeUndefined();
    expect(a.epoch(d2)).toBeUndefined();
    // Another host's partition is untouched.
    expect(a.get(other)).toBeDefined();
    expect(a.partitions()).toEqual(["p4"]);
  });

  it("a partition whose renewals fail is lost for every device in it, and nothing is confirmed after", async () => {
    const lost: Array<[string, LostReason]> = [];
    const a = make("sa", (key, reason) => lost.push([key, reason]));
    const d1 = deviceKey("p5", "0000:01:00.0");
    const d2 = deviceKey("p5", "0000:02:00.0");
    await Promise.all([a.acquire(d1), a.acquire(d2)]);
    // A peer overwrites the host's entry (as one that took it after an expiry would).
    const e = await store.leases.get("p5");
    await store.leases.update(
      "p5",
      JSON.stringify({ owner: "other", instance: "x", acquiredAt: 0, renewedAt: 0 }),
      e!.revision,
    );
    await a.renewAll();
    expect(lost.map(([k, r]) => `${k} ${r}`).sort()).toEqual([`${d1} taken`, `${d2} taken`]);
    expect(await a.confirm(d1)).toBe(false);
    expect(a.fresh(d2)).toBe(false);
  });
});
