// Leases and the KV store against a real nats-server 2.9: one holder per device, renewal keeps it, a holder
// that stops renewing loses it after the TTL and finds out itself, CAS writes refuse a stale writer.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBusHealth } from "../../services/coordinator/bus-health.ts";
import { createLeaseManager, type LostReason } from "../../services/coordinator/leases.ts";
import { type CoordinatorStore, openStore } from "../../services/coordinator/store.ts";
import { deviceKey } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { busCounter } from "./bus-counter.ts";

const TTL = 1200;

/** A JetStream API read of one bucket (a get of its stream's messages). */
const readsOf = (bucket: string) => (subject: string) =>
  subject.startsWith("$JS.API.") && subject.includes(".GET.") && subject.includes(bucket);

/** An image record of function 0000:01:00.0 of `host`, saved by coordinator "a" for request r1. */
function imageRecord(host: string) {
  return {
    v: 1 as const,
    host,
    bdf: "0000:01:00.0",
    images: { "0000:01:00.0": { n: 1 } } as Record<string, unknown>,
    savedAt: new Date().toISOString(),
    requestId: "r1",
    opId: "op1",
    coordinator: "a",
  };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("leases and store on nats-server 2.9", () => {
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

  it("gives a device to one coordinator at a time and hands it over on release", async () => {
    const a = createLeaseManager({ kv: store.leases, owner: "coord-a", ttlMs: TTL, log: silentLogger });
    const b = createLeaseManager({ kv: store.leases, owner: "coord-b", ttlMs: TTL, log: silentLogger });
    const key = deviceKey("h1", "0000:01:00.0");
    const la = await a.acquire(key);
    expect(la).not.toBeNull();
    expect(await b.acquire(key)).toBeNull();
    expect((await b.holder(key))?.owner).toBe("coord-a");
    // Renewal keeps it past several TTLs.
    await sleep(TTL * 2);
    expect(la?.lost).toBe(false);
    expect(await b.acquire(key)).toBeNull();
    await a.release(key);
    expect(la?.signal.aborted).toBe(true);
    const lb = await b.acquire(key);
    expect(lb).not.toBeNull();
    await a.stop();
    await b.stop();
    expect(await b.holder(key)).toBeNull();
  });

  it("a lease released here is taken again with one write on its delete marker; a peer's take in between is seen", async () => {
    const deletes = { js: store.js, bucket: "cxlrc-leases" };
    const a = createLeaseManager({
      kv: store.leases,
      owner: "coord-a",
      ttlMs: TTL,
      log: silentLogger,
      deletes,
    });
    const b = createLeaseManager({
      kv: store.leases,
      owner: "coord-b",
      ttlMs: TTL,
      log: silentLogger,
      deletes,
    });
    const key = deviceKey("h5", "0000:01:00.0");
    // What reaches the leases bucket: reads (JetStream API gets) and writes (its subjects).
    const bus = busCounter(nc, {
      reads: readsOf("cxlrc-leases"),
      writes: (subject) => subject === `$KV.cxlrc-leases.${key}`,
    });
    const first = await a.acquire(key);
    expect(first).not.toBeNull();
    await a.release(key);
    const again = await bus.during(() => a.acquire(key));
    expect(again.out).not.toBeNull();
    expect(again.counts).toEqual({ reads: 0, writes: 1 });
    expect(a.epoch(key)!).toBeGreaterThan(first!.revision);
    await a.release(key);
    // A peer took it meanwhile: the update on the marker fails, the ordinary way finds the peer's lease.
    const lb = await b.acquire(key);
    expect(lb).not.toBeNull();
    expect(await a.acquire(key)).toBeNull();
    await b.release(key);
    const back = await a.acquire(key);
    expect(back).not.toBeNull();
    expect(a.epoch(key)!).toBeGreaterThan(lb!.revision);
    expect((await a.holder(key))?.owner).toBe("coord-a");
    bus.stop();
    await a.stop();
    await b.stop();
  });

  it("a holder that stops renewing loses the lease by TTL; it notices on its next renewal", async () => {
    const lost: Array<[string, LostReason]> = [];
    const a = createLeaseManager({
      kv: store.leases,
      owner: "coord-a",
      ttlMs: TTL,
      log: silentLogger,
      onLost: (k, r) => lost.push([k, r]),
    });
    const b = createLeaseManager({ kv: store.leases, owner: "coord-b", ttlMs: TTL, log: silentLogger });
    const key = deviceKey("h1", "0000:02:00.0");
    const la = await a.acquire(key);
    expect(la).not.toBeNull();
    // A stalled coordinator: it stops renewing without releasing; b gets the device once the TTL has run out.
    await a.stop({ release: false });
    let lb = await b.acquire(key);
    for (let i = 0; lb === null && i < 50; i++) {
      await sleep(100);
      lb = await b.acquire(key);
    }
    expect(lb).not.toBeNull();
    expect((await b.holder(key))?.owner).toBe("coord-b");
    // A holder whose entry vanished behind its back (an operator purge) finds out on its next renewal.
    const c = createLeaseManager({
      kv: store.leases,
      owner: "coord-c",
      ttlMs: TTL,
      log: silentLogger,
      onLost: (k, r) => lost.push([k, r]),
    });
    const key2 = deviceKey("h1", "0000:03:00.0");
    const lc = await c.acquire(key2);
    expect(lc).not.toBeNull();
    await store.leases.delete(key2);
    await c.renewAll();
    expect(lc?.lost).toBe(true);
    expect(lc?.signal.aborted).toBe(true);
    expect(lost).toContainEqual([key2, "gone"]);
    await b.stop();
    await c.stop();
  });

  it("a restarted coordinator with the same id takes over its own leftover lease at once", async () => {
    const first = createLeaseManager({ kv: store.leases, owner: "coord-x", ttlMs: TTL, log: silentLogger });
    const key = deviceKey("h2", "0000:01:00.0");
    expect(await first.acquire(key)).not.toBeNull();
    await first.stop({ release: false });
    const other = createLeaseManager({ kv: store.leases, owner: "coord-y", ttlMs: TTL, log: silentLogger });
    expect(await other.acquire(key)).toBeNull();
    const again = createLeaseManager({ kv: store.leases, owner: "coord-x", ttlMs: TTL, log: silentLogger });
    const l = await again.acquire(key);
    expect(l).not.toBeNull();
    expect((await again.holder(key))?.instance).toBe(again.instance);
    await again.stop();
    await other.stop();
  });

  it("CAS writes of actors and images refuse a writer with a stale revision", async () => {
    const key = deviceKey("h3", "0000:01:00.0");
    const rec = {
      v: 1 as const,
      host: "h3",
      bdf: "0000:01:00.0",
      owner: "a",
      savedAt: new Date().toISOString(),
      state: "ready",
      active: false,
      snapshot: { value: "ready" },
      requests: [],
    };
    const r1 = await store.saveActor(key, rec, null);
    await expect(store.saveActor(key, rec, null)).rejects.toThrow(/compare-and-set/);
    const r2 = await store.saveActor(key, { ...rec, state: "savingImage" }, r1);
    await expect(store.saveActor(key, rec, r1)).rejects.toThrow(/compare-and-set/);
    expect((await store.loadActor(key))?.revision).toBe(r2);
    expect((await store.loadActor(key))?.value.state).toBe("savingImage");
    expect(await store.listActorKeys()).toContain(key);

    const img = imageRecord("h3");
    await store.putImage(img);
    await store.putImage({ ...img, images: { "0000:01:00.0": { n: 2 } }, opId: "op2" });
    expect((await store.getImage("h3", "0000:01:00.0"))?.value.images["0000:01:00.0"]).toEqual({ n: 2 });
    expect(await store.getImage("h3", "0000:02:00.0")).toBeNull();
  });

  it("image writes never read first, a peer's write in between included; a write sent again is stored once", async () => {
    const peer = await openStore(nc, { leaseTtlMs: TTL });
    const img = imageRecord("h4");
    const key = deviceKey("h4", "0000:01:00.0");
    // Reads of the images bucket, seen on the JetStream API subjects.
    const bus = busCounter(nc, { reads: readsOf("cxlrc-images") });
    const w1 = await bus.during(() => store.putImage(img));
    const r1 = w1.out;
    const w2 = await bus.during(() =>
      store.putImage({ ...img, images: { "0000:01:00.0": { n: 2 } }, opId: "op2" }),
    );
    const r2 = w2.out;
    expect(r2).toBeGreaterThan(r1);
    // A peer drove the device meanwhile: the next write here is a revision after it, still without a read.
    const r3 = await peer.putImage({
      ...img,
      images: { "0000:01:00.0": { n: 3 } },
      opId: "op3",
      coordinator: "b",
    });
    const op4 = { ...img, images: { "0000:01:00.0": { n: 4 } }, opId: "op4" };
    const w4 = await bus.during(() => store.putImage(op4));
    const r4 = w4.out;
    expect(r4).toBeGreaterThan(r3);
    expect([w1.counts.reads, w2.counts.reads, w4.counts.reads]).toEqual([0, 0, 0]);
    // The same write again (its acknowledgement lost, say): the revision it got, nothing stored anew.
    const stored = (await store.images.status()).values;
    expect(await store.putImage(op4)).toBe(r4);
    expect((await store.images.status()).values).toBe(stored);
    const last = await store.images.get(key);
    expect(last?.revision).toBe(r4);
    bus.stop();
    expect((await store.getImage("h4", "0000:01:00.0"))?.value.images["0000:01:00.0"]).toEqual({ n: 4 });
    // Every revision reads back as written, from memory or from the bucket (a fresh store has no memory).
    const fresh = await openStore(nc, { leaseTtlMs: TTL });
    for (const [rev, n, by] of [
      [r2, 2, store],
      [r3, 3, store],
      [r3, 3, fresh],
      [r4, 4, fresh],
    ] as const) {
      expect((await by.getImageRevision(key, rev))?.images["0000:01:00.0"], `${rev}`).toEqual({ n });
    }
    // The last known good image key takes the same path.
    const verified = {
      at: "now",
      requestId: "r1",
      coordinator: "a",
      imageKey: key,
      imageRevision: r4,
      scope: "full" as const,
      round: 0,
    };
    const v1 = await store.putVerifiedImage({ ...img, verified });
    const v2 = await peer.putVerifiedImage({ ...img, verified: { ...verified, coordinator: "b" } });
    const v3 = await store.putVerifiedImage({ ...img, verified: { ...verified, requestId: "r2" } });
    expect(v2).toBeGreaterThan(v1);
    expect(v3).toBeGreaterThan(v2);
    expect((await fresh.getVerifiedImage("h4", "0000:01:00.0"))?.value.verified.requestId).toBe("r2");
  });

  it("images stored here are read from memory until their device rests, however many resets run at once", async () => {
    const bus = busCounter(nc, { reads: readsOf("cxlrc-images") });
    // More resets at once than the store keeps recent records for (256): each restore still reads its own.
    const refs: Array<{ key: string; revision: number; n: number }> = [];
    for (let n = 0; n < 300; n++) {
      const host = `hm${n}`;
      const revision = await store.putImage({ ...imageRecord(host), images: { "0000:01:00.0": { n } } });
      refs.push({ key: deviceKey(host, "0000:01:00.0"), revision, n });
    }
    const read = await bus.during(async () => {
      for (const { key, revision, n } of refs)
        expect((await store.getImageRevision(key, revision))?.images["0000:01:00.0"]).toEqual({ n });
    });
    expect(read.counts.reads).toBe(0);
    // Once they rest, memory gives them up: the most recent stay (a release may restore one), the oldest is read
    // from the bucket again.
    for (const { key } of refs) store.releaseImages(key);
    const readOne = async (i: number) => {
      const { key, revision, n } = refs[i]!;
      const r = await bus.during(() => store.getImageRevision(key, revision));
      expect(r.out?.images["0000:01:00.0"]).toEqual({ n });
      return r.counts.reads;
    };
    expect(await readOne(299)).toBe(0);
    expect(await readOne(0)).toBe(1);
    bus.stop();
  });

  it("bus health: a node that does not serve JetStream is left (once per interval); other errors are not", async () => {
    const own = await connect({ servers: server.url });
    const statuses: string[] = [];
    void (async () => {
      for await (const st of own.status()) statuses.push(st.type);
    })();
    const health = createBusHealth(own, silentLogger, 60_000);
    health.report(new Error("timeout"));
    expect(health.moves).toBe(0);
    const notServed = Object.assign(new Error("jetstream is not enabled"), { name: "JetStreamNotEnabled" });
    health.report(notServed);
    health.report(notServed); // within the interval: not again
    expect(health.moves).toBe(1);
    for (let i = 0; i < 100 && !statuses.includes("reconnect"); i++) await sleep(50);
    expect(statuses).toContain("reconnect");
    // Still serving after the move.
    await own.flush();
    expect(own.isClosed()).toBe(false);
    await own.close();
  });
});
