// A write-ahead no longer waits for the device's events to be acknowledged: it stores those still in flight
// with its snapshot (store.ts ActorRecord.announce), so the publisher must say which they are, in order.
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEventPublisher } from "../../services/coordinator/events.ts";
import { ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";

describe("event publisher: events not yet acknowledged", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNats();
    nc = await connect({ servers: server.url });
    await ensureStreams(await getJsm(nc));
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it("lists a device's unsettled events in publishing order, and none once they are stored", async () => {
    const events = createEventPublisher({ js: jetstream(nc), coordinator: "c1", log: silentLogger });
    const dev = { host: "h1", bdf: "0000:01:00.0" };
    const other = { host: "h1", bdf: "0000:02:00.0" };
    let open!: (ok: boolean) => void;
    const held = new Promise<boolean>((r) => {
      open = r;
    });
    const first = events.publish({
      ...dev,
      kind: "state.entered",
      data: { state: "quiescing" },
      gate: () => held,
    });
    const second = events.publish({
      ...dev,
      kind: "reset.started",
      requestId: "r1",
      data: { method: "cxl" },
    });
    void events.publish({ ...other, kind: "state.entered", data: { state: "ready" } });

    const unsent = events.unsent(dev);
    expect(unsent.map((e) => e.kind)).toEqual(["state.entered", "reset.started"]);
    expect(unsent[0]?.data).toEqual({ coordinator: "c1", state: "quiescing" });
    expect(unsent[1]?.requestId).toBe("r1");
    const [a, b] = [unsent[0]!, unsent[1]!];

    open(true);
    const [envA, envB] = await Promise.all([first, second]);
    expect([envA.id, envB.id]).toEqual([a.id, b.id]);
    expect(envA.time).toBe(a.time);
    await events.flush();
    expect(events.unsent(dev)).toEqual([]);
    expect(events.unsent(other)).toEqual([]);

    // Stored in the order published, under the ids the record would announce them by.
    const jsm = await getJsm(nc);
    const got = [];
    for (const kind of ["state.entered", "reset.started"]) {
      const m = await jsm.streams.getMessage(STREAMS.events.name, {
        last_by_subj: subjects.event(dev.host, dev.bdf, kind),
      });
      got.push({ seq: m!.seq, id: m!.json<{ id: string }>().id });
    }
    expect(got.map((g) => g.id)).toEqual([a.id, b.id]);
    expect(got[0]!.seq).toBeLessThan(got[1]!.seq);
  });

  it("an event dropped by its gate leaves the list too", async () => {
    const events = createEventPublisher({ js: jetstream(nc), coordinator: "c1", log: silentLogger });
    const dev = { host: "h2", bdf: "0000:03:00.0" };
    const p = events.publish({
      ...dev,
      kind: "state.entered",
      data: { state: "x" },
      gate: async () => false,
    });
    expect(events.unsent(dev)).toHaveLength(1);
    await p;
    expect(events.unsent(dev)).toEqual([]);
  });

  it("an event the stream cannot take is tried until it lands, in order, never given up (unless closed)", async () => {
    const jsm = await getJsm(nc);
    const events = createEventPublisher({
      js: jetstream(nc),
      coordinator: "c1",
      log: silentLogger,
      attempts: 2,
    });
    const dev = { host: "h3", bdf: "0000:04:00.0" };
    // No stream: every attempt fails (no responders), well past the attempts after which it is logged.
    await jsm.streams.delete(STREAMS.events.name);
    let settled = false;
    const outcome = events.publish({
      ...dev,
      kind: "verified",
      requestId: "r-down",
      data: { outcome: "verified" },
    });
    const after = events.publish({ ...dev, kind: "state.entered", data: { state: "ready" } });
    void outcome.then(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 1500));
    expect(settled).toBe(false);
    expect(events.unsent(dev).map((e) => e.kind)).toEqual(["verified", "state.entered"]);
    await ensureStreams(jsm);
    const [envO, envA] = await Promise.all([outcome, after]);
    const got = await jsm.streams.getMessage(STREAMS.events.name, {
      last_by_subj: subjects.event(dev.host, dev.bdf, "verified"),
    });
    expect(got?.json<{ id: string }>().id).toBe(envO.id);
    const next = await jsm.streams.getMessage(STREAMS.events.name, {
      last_by_subj: subjects.event(dev.host, dev.bdf, "state.entered"),
    });
    expect(next?.json<{ id: string }>().id).toBe(envA.id);
    expect(next!.seq).toBeGreaterThan(got!.seq);
    expect(events.unsent(dev)).toEqual([]);

    // Closed: what could not be sent is given up (its stored record still names it), and nothing hangs.
    await jsm.streams.delete(STREAMS.events.name);
    const lost = events.publish({ ...dev, kind: "failed", requestId: "r-closed", data: {} });
    await new Promise((r) => setTimeout(r, 300));
    events.close();
    await lost;
    expect(events.unsent(dev)).toEqual([]);
    await ensureStreams(jsm);
    expect(
      await jsm.streams.getMessage(STREAMS.events.name, {
        last_by_subj: subjects.event(dev.host, dev.bdf, "failed"),
      }),
    ).toBeNull();
  }, 20_000);

  it("an event of a stored record is said even after the lease was lost; one not stored is dropped", async () => {
    const jsm = await getJsm(nc);
    const events = createEventPublisher({
      js: jetstream(nc),
      coordinator: "c1",
      log: silentLogger,
      // The lease of epoch 7 is no longer confirmed (lost while the events waited).
      fence: { epoch: () => 7, confirm: () => false },
    });
    const dev = { host: "h4", bdf: "0000:05:00.0" };
    await events.publish({ ...dev, kind: "state.entered", data: { state: "verifying" } });
    const env = await events.publish({
      ...dev,
      kind: "verified",
      requestId: "r-stored",
      data: { outcome: "verified" },
      stored: true,
    });
    const last = (kind: string) =>
      jsm.streams.getMessage(STREAMS.events.name, { last_by_subj: subjects.event(dev.host, dev.bdf, kind) });
    expect(await last("state.entered")).toBeNull();
    const got = await last("verified");
    expect(got?.json<{ id: string; epoch?: number }>()).toMatchObject({ id: env.id, epoch: 7 });
  });
});
