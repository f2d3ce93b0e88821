// A host's partition lease kept between resets (partition-leases.ts): a device reset again while its host is
// still held here is taken without a lease write and without reading its stored actor (its actor stayed in
// memory at rest), under the same epoch; once the linger time has passed with nothing driven, the host's lease
// is given back. With no linger, every reset takes the host again (a new epoch). A reset writes the device's
// record three times.
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUCKETS } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { busCounter } from "./bus-counter.ts";
import {
  publishRequest,
  type RunningCoordinator,
  readEvents,
  startWorld,
  until,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";
const leaseWrites = (subject: string) => subject.startsWith(`$KV.${BUCKETS.leases}.`);
/** Writes of an actor record (the fleet view's deliveries of them carry headers only). */
const actorWrites = (subject: string, bytes: number) =>
  subject.startsWith(`$KV.${BUCKETS.actors}.`) && bytes > 0;
const actorReads = (subject: string) =>
  subject.startsWith("$JS.API.") && subject.includes("GET") && subject.includes(BUCKETS.actors);

describe("a host kept between resets", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([
      simpleHost({ name: "keep" }),
      simpleHost({ name: "nokeep" }),
      simpleHost({ name: "release" }),
    ]);
  });
  afterAll(async () => {
    await w?.close();
  });

  async function reset(c: RunningCoordinator, host: string, requestId: string) {
    await publishRequest(w.js, { requestId, host, bdf: BDF, scope: "full", reason: "test" });
    expect((await c.handle.waitForOutcome(requestId, 20_000)).outcome).toBe("verified");
    // At rest: the device's lease given back (its host's may stay).
    expect(await until(async () => (await c.handle.status()).leasesHeld.length === 0)).toBe(true);
  }
  const epochsOf = async (host: string, requestId: string) =>
    new Set(
      (await readEvents(w.jsm, { host, source: "coordinator" }))
        .filter((e) => e.event.requestId === requestId)
        .map((e) => e.event.epoch),
    );

  it("inside the linger time: no lease write, no read of the stored actor, the same epoch; then the host goes", async () => {
    const c = await w.coordinator({ id: "c-keep", partitionLingerMs: 4000, hosts: [] });
    const bus = busCounter(w.nc, { leaseWrites, actorReads, actorWrites });
    try {
      await reset(c, "keep", "keep-1");
      expect((await c.handle.status()).partitionsHeld).toEqual(["keep"]);
      const again = await bus.during(() => reset(c, "keep", "keep-2"));
      // The device's record is written three times: the request taken, the decision to reset, the rest
      // state with the outcome.
      expect(again.counts).toEqual({ leaseWrites: 0, actorReads: 0, actorWrites: 3 });
      const [e1, e2] = [await epochsOf("keep", "keep-1"), await epochsOf("keep", "keep-2")];
      expect(e1.size).toBe(1);
      expect(e2).toEqual(e1);
      // Nothing driven for the linger time: the host's lease is deleted (a delete marker, not left to expire).
      // Status lists the partition as releasing from when its release begins until the delete has landed.
      expect(
        await until(async () => {
          const s = await c.handle.status();
          return s.partitionsHeld.length === 0 && s.partitionsReleasing.length === 0;
        }),
      ).toBe(true);
      const kv = await new Kvm(w.js).open(BUCKETS.leases);
      expect((await kv.get("keep"))?.operation).toBe("DEL");
      // Taken again afterwards: read from the store (the actor was let go), under a new epoch.
      const third = await bus.during(() => reset(c, "keep", "keep-3"));
      expect(third.counts.actorReads).toBeGreaterThan(0);
      expect(third.counts.leaseWrites).toBeGreaterThan(0);
      const e3 = await epochsOf("keep", "keep-3");
      expect([...e3][0]).toBeGreaterThan([...e1][0] as number);
    } finally {
      bus.stop();
      await c.stop();
    }
  });

  it("a host being given back is listed as releasing until its lease's delete has landed", async () => {
    const c = await w.coordinator({ id: "c-release", partitionLingerMs: 300, hosts: [] });
    try {
      await reset(c, "release", "release-1");
      // The server stops answering before the linger ends: the release begins and its delete waits.
      await w.server.pause();
      let during: { held: string[]; releasing: string[] } | null = null;
      try {
        expect(
          await until(async () => {
            const s = await c.handle.status({ host: "release" });
            during = { held: s.partitionsHeld, releasing: s.partitionsReleasing };
            return s.partitionsHeld.length === 0;
          }),
        ).toBe(true);
      } finally {
        w.server.resume();
      }
      expect(during).toEqual({ held: [], releasing: ["release"] });
      // Listed until the delete marker is stored: once it is not, the marker is there.
      expect(await until(async () => (await c.handle.status()).partitionsReleasing.length === 0)).toBe(true);
      const kv = await new Kvm(w.js).open(BUCKETS.leases);
      expect((await kv.get("release"))?.operation).toBe("DEL");
    } finally {
      await c.stop();
    }
  });

  it("with no linger every reset takes the host again", async () => {
    const c = await w.coordinator({ id: "c-nokeep", partitionLingerMs: 0, hosts: [] });
    const bus = busCounter(w.nc, { leaseWrites, actorReads });
    try {
      await reset(c, "nokeep", "nokeep-1");
      expect(await until(async () => (await c.handle.status()).partitionsHeld.length === 0)).toBe(true);
      const again = await bus.during(() => reset(c, "nokeep", "nokeep-2"));
      expect(again.counts.leaseWrites).toBeGreaterThan(0);
      expect(again.counts.actorReads).toBeGreaterThan(0);
      const [e1, e2] = [await epochsOf("nokeep", "nokeep-1"), await epochsOf("nokeep", "nokeep-2")];
      expect([...e2][0]).toBeGreaterThan([...e1][0] as number);
    } finally {
      bus.stop();
      await c.stop();
    }
  });
});
