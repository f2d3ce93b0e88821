// Fencing tokens, the coordinator's side (issue #16): every event it publishes about a device it drives
// carries the lease's epoch; a coordinator whose lease renewals fail goes silent (no device event, no agent
// operation) once its lease is no longer confirmed fresh, before the lease can expire on the server; and an
// agent's "stale-epoch" refusal (a newer owner has driven the device) drops the device here with no outcome
// and no further event. Real nats-server; renewals are made to fail by sealing the leases bucket's stream
// (every write refused, reads still served, so the holder cannot tell a lost lease from a slow bus).
import { afterEach, describe, expect, it } from "vitest";
import { createFencing } from "../../services/coordinator/fencing.ts";
import { createLeaseManager } from "../../services/coordinator/leases.ts";
import { openStore } from "../../services/coordinator/store.ts";
import { BUCKETS, deviceKey, subjects } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  publishRequest,
  readEvents,
  type StoredEvent,
  startWorld,
  stopAt,
  until,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";
const TTL_MS = 2000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const lastSeq = async (w: World) => (await w.jsm.streams.info("CXLRC_EVENTS")).state.last_seq;

/** Events about the device after `seq`: the coordinator's, and the agent's operation events. */
async function eventsAfter(
  w: World,
  host: string,
  seq: number,
): Promise<{ coord: StoredEvent[]; agentOps: StoredEvent[] }> {
  const all = (await readEvents(w.jsm, { host })).filter((e) => e.seq > seq && e.event.bdf === BDF);
  return {
    coord: all.filter((e) => e.event.source === "coordinator"),
    agentOps: all.filter((e) => e.event.source === "agent" && e.event.kind === "op.started"),
  };
}

describe("coordinator fencing", () => {
  let w: World | undefined;
  afterEach(async () => {
    await w?.close();
    w = undefined;
  });

  it("events about a driven device carry the lease's epoch; with renewals failing it goes silent before the lease expires", async () => {
    const host = "fence-silent";
    w = await startWorld([simpleHost({ name: host })]);
    const stop = stopAt("quiescing");
    await w.coordinator({ id: "c-silent", stepHook: stop.hook, leaseTtlMs: TTL_MS });
    await publishRequest(w.js, {
      requestId: "r-silent",
      host,
      bdf: BDF,
      scope: "io",
      reason: "fencing test",
    });
    await stop.atPoint;

    // Every event so far about the device, from the coordinator that drives it, names one epoch: the
    // revision at which it acquired its host's partition lease (the key's current revision is that or a later
    // renewal).
    const so = (await readEvents(w.jsm, { host, source: "coordinator" })).filter((e) => e.event.bdf === BDF);
    expect(so.length).toBeGreaterThan(0);
    const epochs = new Set(so.map((e) => e.event.epoch));
    expect(epochs.size).toBe(1);
    const epoch = [...epochs][0];
    expect(typeof epoch).toBe("number");
    const stream = `KV_${BUCKETS.leases}`;
    const entry = await w.jsm.streams.getMessage(stream, {
      last_by_subj: `$KV.${BUCKETS.leases}.${host}`,
    });
    expect(entry?.seq).toBeGreaterThanOrEqual(epoch as number);

    // Renewals fail from now on (writes refused; reads still say the lease is this coordinator's).
    const info = await w.jsm.streams.info(stream);
    await w.jsm.streams.update(stream, { ...info.config, sealed: true } as Parameters<
      typeof w.jsm.streams.update
    >[1]);
    // Past half the lease time without a good renewal: no longer fresh, though not expired on the server.
    await sleep(TTL_MS / 2 + 300);
    const seq = await lastSeq(w);
    const agentSeen = w.agents[0]!.stats().received;
    stop.release();
    // The step wants to quiesce the device: it must not reach the agent, nor may any event about the device
    // (progress, failure, outcome) leave this coordinator. Wait past the lease time.
    await sleep(TTL_MS + 1000);
    const { coord, agentOps } = await eventsAfter(w, host, seq);
    expect(agentOps.map((e) => e.event.opId)).toEqual([]);
    expect(w.agents[0]!.stats().received).toBe(agentSeen);
    // Only the notice that it let the lease go, once the renewals had failed for a whole lease time (no
    // epoch: it speaks for the device no more).
    expect(coord.map((e) => `${e.event.kind} ${String(e.event.data.reason)}`)).toContain(
      "lease.lost renew-failed",
    );
    expect(coord.map((e) => e.event.kind).filter((k) => k !== "lease.lost")).toEqual([]);
    for (const e of coord) expect(e.event.epoch).toBeUndefined();
  });

  it("an agent's stale-epoch refusal drops the device: no outcome and no further event from this coordinator", async () => {
    const host = "fence-stale";
    w = await startWorld([simpleHost({ name: host })]);
    // Held right before the first operation that changes the device: the reset, which quiesces first in the
    // same operation (a plan of the device alone).
    const stop = stopAt("resetting");
    const c = await w.coordinator({ id: "c-old", stepHook: stop.hook, leaseTtlMs: TTL_MS });
    await publishRequest(w.js, { requestId: "r-stale", host, bdf: BDF, scope: "io", reason: "fencing test" });
    await stop.atPoint;
    const key = deviceKey(host, BDF);
    expect((await c.handle.status()).leasesHeld).toContain(key);
    // Said under the step's own write, before the newer owner appears: on the stream once that write landed.
    expect(
      await until(async () =>
        (await eventsAfter(w!, host, 0)).coord.some((e) => e.event.kind === "reset.started"),
      ),
    ).toBe(true);

    // A newer owner of the same lease has driven the device meanwhile (its epoch is far ahead).
    const reply = await w.nc.request(
      subjects.agent(host, "probe"),
      JSON.stringify({
        opId: "newer-owner-probe",
        bdf: BDF,
        fence: { epoch: 1_000_000, owner: "c-new", lease: key },
      }),
      { timeout: 5000 },
    );
    expect(reply.json<{ ok: boolean }>().ok).toBe(true);
    const seq = await lastSeq(w);
    stop.release();

    expect(await until(() => w!.agents[0]!.stats().staleEpoch >= 1)).toBe(true);
    expect(await until(async () => !(await c.handle.status()).leasesHeld.includes(key))).toBe(true);
    await sleep(500);
    const { coord, agentOps } = await eventsAfter(w, host, seq);
    expect(coord.map((e) => `${e.event.kind} ${e.event.data.coordinator}`)).toEqual([]);
    // The old owner's reset (and its quiesce) was refused before it ran: nothing ran on the device after the
    // newer owner.
    expect(agentOps.map((e) => e.event.data.op)).toEqual([]);
    expect(w.sims.get(host)!.counters(BDF).flr).toBe(0);
  });

  it("an event said under a lease goes out after a clean release, never after the lease was lost or fenced", async () => {
    w = await startWorld([]);
    const store = await openStore(w.nc, { leaseTtlMs: TTL_MS });
    const a = createLeaseManager({ kv: store.leases, owner: "c-a", ttlMs: TTL_MS, log: silentLogger });
    const fa = createFencing(a, "c-a");
    const host = "fence-unit";
    const key = deviceKey(host, BDF);
    try {
      expect(await a.acquire(key)).not.toBeNull();
      const first = fa.epochOf(host, BDF)!;
      expect(fa.grant(key)?.fence).toEqual({ epoch: first, owner: "c-a", lease: key });
      expect(await fa.confirmEvent(host, BDF, first)).toBe(true);
      await a.release(key);
      // Released here, at rest: what was said before still belongs to the device's history.
      expect(fa.grant(key)).toBeNull();
      expect(await fa.confirmEvent(host, BDF, first)).toBe(true);
      // Taken again: a higher epoch; what was said under the cleanly released one still goes out.
      expect(await a.acquire(key)).not.toBeNull();
      const second = fa.epochOf(host, BDF)!;
      expect(second).toBeGreaterThan(first);
      expect(await fa.confirmEvent(host, BDF, first)).toBe(true);
      // An epoch this process never held (a stale or foreign one): dropped.
      expect(await fa.confirmEvent(host, BDF, first + 1 === second ? first - 1 : first + 1)).toBe(false);
      // Fenced by an agent: nothing more under it.
      fa.forfeit(key);
      expect(await fa.confirmEvent(host, BDF, second)).toBe(false);
      expect(fa.grant(key)).toBeNull();
    } finally {
      await a.stop({ release: false });
    }
  });
});
