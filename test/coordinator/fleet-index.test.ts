// The actors bucket read by headers: every stored record carries its summary (state, mid-operation or not,
// owner, running request), the fleet view follows them without reading a snapshot, and a recovery pass reads
// only the devices left mid-operation (or holding announcements), never one at rest.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { summarize, summaryFromHeaders, summaryHeaders } from "../../services/coordinator/actor-index.ts";
import type { DeviceActors } from "../../services/coordinator/device-actors.ts";
import { startFleetView } from "../../services/coordinator/fleet-view.ts";
import { createLeaseManager } from "../../services/coordinator/leases.ts";
import { recoverOnce } from "../../services/coordinator/recovery.ts";
import { type ActorRecord, type CoordinatorStore, openStore } from "../../services/coordinator/store.ts";
import { deviceKey } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";

const bdfOf = (i: number) =>
  `0000:${(i >> 8).toString(16).padStart(2, "0")}:${((i >> 3) & 31).toString(16).padStart(2, "0")}.${i & 7}`;

function record(host: string, bdf: string, over: Partial<ActorRecord> = {}, requestId?: string): ActorRecord {
  return {
    v: 1,
    host,
    bdf,
    owner: "coord-old",
    savedAt: new Date().toISOString(),
    state: "ready",
    active: false,
    snapshot: {
      value: over.state ?? "ready",
      context: {
        request: requestId ? { requestId } : null,
        outcome: null,
        scopeViolations: 2,
      },
    },
    requests: [],
    ...over,
  };
}

describe("summary headers", () => {
  it("round-trip a record's state, activity, owner, request and counts", () => {
    const h = summaryHeaders(
      summarize(record("h", "0000:01:00.0", { state: "resetting", active: true, announce: [] }, "req-7")),
    );
    expect(summaryFromHeaders(h)).toEqual({
      state: "resetting",
      active: true,
      owner: "coord-old",
      requestId: "req-7",
      announce: 0,
      scopeViolations: 2,
    });
  });

  it("a request id that could not be a header leaves the whole summary out (readers read the record)", () => {
    const h = summaryHeaders(
      summarize(record("h", "0000:01:00.0", { state: "resetting", active: true }, "bad\r\nid")),
    );
    expect(summaryFromHeaders(h)).toBeNull();
    expect(summaryFromHeaders(undefined)).toBeNull();
  });
});

/** The store, with every actor record read counted in `loads`. */
function countingLoads(store: CoordinatorStore, loads: string[]): CoordinatorStore {
  return {
    ...store,
    loadActor: (key) => {
      loads.push(key);
      return store.loadActor(key);
    },
  };
}

/** An actor host that records each takeover asked of it (key, hint) and answers `taken`. */
function recoveringActors(recovered: Array<[string, unknown]>, taken: boolean): DeviceActors {
  return {
    recover: async (key: string, hint?: unknown) => {
      recovered.push([key, hint]);
      return taken;
    },
    holdTakeovers: () => () => undefined,
    announceStored: async () => true,
    announcedHere: () => false,
    liveRequests: () => new Set<string>(),
  } as unknown as DeviceActors;
}

describe("fleet view and recovery over the actors bucket", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let store: CoordinatorStore;

  beforeAll(async () => {
    server = await startNats();
    nc = await connect({ servers: server.url });
    store = await openStore(nc, { leaseTtlMs: 5000 });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  /** `n` devices of `host` stored at rest (with `over`), and one stored mid-reset. */
  async function storeFleet(host: string, n: number, over: Partial<ActorRecord> = {}) {
    const resting = Array.from({ length: n }, (_, i) => bdfOf(i + 8));
    for (const bdf of resting) await store.saveActor(deviceKey(host, bdf), record(host, bdf, over), null);
    const activeKey = deviceKey(host, "0000:00:00.1");
    await store.saveActor(
      activeKey,
      record(host, "0000:00:00.1", { state: "resetting", active: true }, "req-mid"),
      null,
    );
    return { resting, activeKey };
  }

  it("knows every stored device from headers, and recovery reads only the one mid-operation", async () => {
    const host = "fi";
    const { resting, activeKey } = await storeFleet(host, 300);

    const view = await startFleetView(store, silentLogger);
    try {
      await view.synced;
      expect(view.keys()).toHaveLength(301);
      expect(view.summary(activeKey)).toMatchObject({
        state: "resetting",
        active: true,
        requestId: "req-mid",
      });
      expect(view.summary(deviceKey(host, resting[0]!))).toMatchObject({ state: "ready", active: false });

      // Status from headers alone: no record is read for a device at rest.
      const loads: string[] = [];
      const counting = countingLoads(store, loads);
      const countingView = await startFleetView(counting, silentLogger);
      await countingView.synced;
      const devices = await countingView.read(countingView.keys());
      countingView.stop();
      expect(devices).toHaveLength(301);
      expect(devices.find((d) => d.key === activeKey)).toMatchObject({
        state: "resetting",
        owner: "coord-old",
      });
      expect(loads).toEqual([]);

      const recovered: Array<[string, unknown]> = [];
      const leases = createLeaseManager({
        kv: store.leases,
        owner: "coord-new",
        ttlMs: 5000,
        log: silentLogger,
      });
      const actors = recoveringActors(recovered, true);
      const pass = recoverOnce({ store: counting, leases, actors, view, log: silentLogger });
      await pass.done;
      const taken = await pass.taken;
      // The device mid-operation is handed over as such (read once, under its lease, by the actor host);
      // nothing at rest is read.
      expect(taken).toEqual([activeKey]);
      expect(recovered).toEqual([[activeKey, { active: true }]]);
      expect(loads).toEqual([]);

      // A write after start is followed: the device at rest goes mid-operation, the next pass picks it up.
      const key0 = deviceKey(host, resting[0]!);
      const rev = view.revision(key0)!;
      await store.saveActor(
        key0,
        record(host, resting[0]!, { state: "quiescing", active: true }, "req-2"),
        rev,
      );
      const deadline = Date.now() + 5000;
      while (view.summary(key0)?.active !== true && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(view.summary(key0)).toMatchObject({ state: "quiescing", requestId: "req-2" });
      recovered.length = 0;
      await recoverOnce({ store: counting, leases, actors, view, log: silentLogger }).done;
      expect(recovered.map(([k]) => k).sort()).toEqual([activeKey, key0].sort());
      expect(loads).toEqual([]);

      // A record written by an older version (no summary headers): read to learn what it is.
      const oldKey = deviceKey(host, "0000:00:00.2");
      await store.actors.put(
        oldKey,
        JSON.stringify(record(host, "0000:00:00.2", { state: "verifying", active: true }, "req-old")),
      );
      while (view.revision(oldKey) === undefined) await new Promise((r) => setTimeout(r, 20));
      expect(view.summary(oldKey)).toBeNull();
      recovered.length = 0;
      await recoverOnce({ store: counting, leases, actors, view, log: silentLogger }).done;
      expect(loads).toEqual([oldKey]);
      expect(recovered).toContainEqual([oldKey, undefined]);
      await leases.stop();
    } finally {
      view.stop();
    }
  });

  it("a pass takes over the devices left mid-operation before it reads resting records with announcements", async () => {
    const host = "fo";
    const announce = [{ id: "e1", kind: "state.entered", data: { state: "ready" } }];
    const { resting, activeKey } = await storeFleet(host, 40, { announce } as never);
    const view = await startFleetView(store, silentLogger);
    const leases = createLeaseManager({ kv: store.leases, owner: "coord-o", ttlMs: 5000, log: silentLogger });
    try {
      await view.synced;
      let letAnnounce: () => void = () => undefined;
      const announcing = new Promise<void>((r) => {
        letAnnounce = r;
      });
      const announced: string[] = [];
      const order: string[] = [];
      const actors = {
        recover: async (key: string) => {
          order.push(`claim ${key}`);
          return true;
        },
        holdTakeovers: () => {
          order.push("hold");
          return () => order.push("resume");
        },
        announceStored: async (key: string) => {
          announced.push(key);
          await announcing;
          return true;
        },
        announcedHere: () => false,
        liveRequests: () => new Set<string>(),
      } as unknown as DeviceActors;
      const pass = recoverOnce({ store, leases, actors, view, log: silentLogger });
      // Taken over while every resting record's announcement still waits. (The bucket also holds the
      // previous test's host "fi".)
      const mine = (keys: string[]) => keys.filter((k) => k.startsWith(`${host}.`));
      expect(mine(await pass.taken)).toEqual([activeKey]);
      // The devices taken run no step before every claim of the pass: held before the first, resumed after all.
      expect(order[0]).toBe("hold");
      expect(order.at(-1)).toBe("resume");
      expect(order.filter((x) => x.startsWith("claim")).length).toBe(order.length - 2);
      let done = false;
      void pass.done.then(() => {
        done = true;
      });
      await new Promise((r) => setTimeout(r, 50));
      expect(done).toBe(false);
      letAnnounce();
      await pass.done;
      expect(mine(announced).sort()).toEqual(resting.map((b) => deviceKey(host, b)).sort());
    } finally {
      await leases.stop();
      view.stop();
    }
  });
  it("a resting record this process wrote and announced is not read by a pass; one written elsewhere is", async () => {
    const host = "fh";
    const announce = [{ id: "e1", kind: "verified", data: {} }];
    const { resting } = await storeFleet(host, 4, { announce } as never);
    const view = await startFleetView(store, silentLogger);
    const leases = createLeaseManager({ kv: store.leases, owner: "coord-w", ttlMs: 5000, log: silentLogger });
    try {
      await view.synced;
      const keys = resting.map((b) => deviceKey(host, b));
      // This process wrote the first two at the revisions the view holds; the other two it never wrote, or
      // wrote at an earlier revision than the one stored now.
      const written = new Map([
        [keys[0]!, view.revision(keys[0]!)],
        [keys[1]!, view.revision(keys[1]!)],
        [keys[2]!, (view.revision(keys[2]!) ?? 0) - 1],
      ]);
      const loads: string[] = [];
      const announced: string[] = [];
      const actors = {
        recover: async () => false,
        holdTakeovers: () => () => undefined,
        announceStored: async (key: string) => {
          announced.push(key);
          return true;
        },
        announcedHere: (key: string, revision: number | undefined) =>
          revision !== undefined && written.get(key) === revision,
        liveRequests: () => new Set<string>(),
      } as unknown as DeviceActors;
      await recoverOnce({ store: countingLoads(store, loads), leases, actors, view, log: silentLogger }).done;
      const mine = (list: string[]) => list.filter((k) => k.startsWith(`${host}.`)).sort();
      expect(mine(loads)).toEqual([keys[2]!, keys[3]!].sort());
      expect(mine(announced)).toEqual([keys[2]!, keys[3]!].sort());
    } finally {
      await leases.stop();
      view.stop();
    }
  });
  it("a device the headers call mid-operation but that its holder finds at rest is read next time, not taken again", async () => {
    const host = "fs";
    const { activeKey } = await storeFleet(host, 2);
    const view = await startFleetView(store, silentLogger);
    const leases = createLeaseManager({ kv: store.leases, owner: "coord-s", ttlMs: 5000, log: silentLogger });
    try {
      await view.synced;
      const loads: string[] = [];
      const counting = countingLoads(store, loads);
      const recovered: Array<[string, unknown]> = [];
      // At rest where it is held (a watch behind the writes): nothing taken over.
      const actors = recoveringActors(recovered, false);
      const mine = <T extends [string, unknown]>(xs: T[]) => xs.filter(([k]) => k.startsWith(`${host}.`));
      await recoverOnce({ store: counting, leases, actors, view, log: silentLogger }).done;
      expect(mine(recovered)).toEqual([[activeKey, { active: true }]]);
      expect(view.summary(activeKey)).toBeNull();
      // The next pass reads the record rather than trusting the headers again.
      recovered.length = 0;
      loads.length = 0;
      await recoverOnce({ store: counting, leases, actors, view, log: silentLogger }).done;
      expect(loads.filter((k) => k.startsWith(`${host}.`))).toEqual([activeKey]);
      expect(mine(recovered)).toEqual([[activeKey, undefined]]);
      // A newer revision seen by the watch brings its headers back.
      const rev = view.revision(activeKey)!;
      await store.saveActor(activeKey, record(host, "0000:00:00.1", { state: "ready", active: false }), rev);
      const deadline = Date.now() + 5000;
      while (view.summary(activeKey) === null && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(view.summary(activeKey)).toMatchObject({ state: "ready", active: false });
    } finally {
      await leases.stop();
      view.stop();
    }
  });

  it("a consumer lost on the server is started again: the view catches up within two checks", async () => {
    const host = "fw";
    await storeFleet(host, 1);
    const view = await startFleetView(store, silentLogger, { checkMs: 200 });
    try {
      await view.synced;
      // What a node restart can do to an ephemeral consumer: gone, and the client not told.
      const jsm = await store.js.jetstreamManager(false);
      for (const c of await jsm.consumers.list("KV_cxlrc-actors").next()) {
        await jsm.consumers.delete("KV_cxlrc-actors", c.name);
      }
      const key = deviceKey(host, "0000:0f:00.0");
      await store.saveActor(key, record(host, "0000:0f:00.0", { state: "quarantined", active: false }), null);
      // Left to its own heartbeats the consumer comes back after most of a minute (45 s here).
      const deadline = Date.now() + 3000;
      while (view.revision(key) === undefined && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      expect(view.summary(key)).toMatchObject({ state: "quarantined", active: false });
      expect(view.restarts()).toBeGreaterThanOrEqual(1);
    } finally {
      view.stop();
    }
  });
});
