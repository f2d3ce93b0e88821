// The coordinator's events go out in order per device: a run of queued progress events is sent at once,
// pipelined on the connection, and what follows waits for their acknowledgements; every other event (an anchor:
// one whose place matters to readers and to the lifecycle invariants) goes alone. The stream keeps them in order.
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEventPublisher, pipelines } from "../../services/coordinator/events.ts";
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

  it("sends a run of queued progress events together, every other event alone, all in order", async () => {
    const nc = await connectBus({ servers: server.url, name: "groups", log: silentLogger });
    await ensureStreams(await getJsm(nc));
    const events = createEventPublisher({ js: jetstream(nc), coordinator: "c1", log: silentLogger });
    const dev = { host: "g1", bdf: "0000:01:00.0" };
    const send = (n: number, kind: string, data: Record<string, unknown> = {}) =>
      events.publish({ ...dev, kind, data: { n, ...data } });
    await server.pause();
    // The tail of a reset as one stored snapshot announces it: the progress since the reset, then the verify.
    const sent = [
      send(0, "reset.completed"),
      send(1, "state.entered", { state: "awaitingReady" }),
      send(2, "state.entered", { state: "restoring" }),
      send(3, "decoder.committed"),
      send(4, "decoder.committed"),
      send(5, "state.entered", { state: "verifying" }),
      // Its place matters: sent once the six before it are acknowledged, and before the one after it.
      send(6, "verify.passed"),
      send(7, "state.entered", { state: "releasing" }),
    ];
    await until(() => events.inFlight() === 6);
    await new Promise((r) => setTimeout(r, 50));
    expect(events.inFlight()).toBe(6);
    server.resume();
    const envs = await Promise.all(sent);
    expect(events.inFlight()).toBe(0);

    await server.pause();
    const outcome = send(8, "verified");
    const after = send(9, "state.entered", { state: "ready" });
    await until(() => events.inFlight() === 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(events.inFlight()).toBe(1);
    server.resume();
    envs.push(await outcome, await after);

    const jsm = await getJsm(nc);
    const stored: Array<{ id: string; n: number }> = [];
    const info = await jsm.streams.info(STREAMS.events.name);
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(STREAMS.events.name, { seq });
      const env = m!.json<{ id: string; host: string; data: { n: number } }>();
      if (env.host === dev.host) stored.push({ id: env.id, n: env.data.n });
    }
    expect(stored.map((s) => s.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(stored.map((s) => s.id)).toEqual(envs.map((e) => e.id));
    await nc.close();
  });

  it("lets only progress events go out together", () => {
    expect(pipelines({ kind: "decoder.committed", data: {} })).toBe(true);
    expect(pipelines({ kind: "reset.completed", data: {} })).toBe(true);
    // States that change the device too: the image stored and the reset started (anchors) order them.
    for (const state of [
      "savingImage",
      "quiescing",
      "resetting",
      "awaitingReady",
      "restoring",
      "verifying",
    ]) {
      expect(pipelines({ kind: "state.entered", data: { state } }), state).toBe(true);
    }
    for (const state of ["ready", "quarantined", "unavailable"]) {
      expect(pipelines({ kind: "state.entered", data: { state } }), state).toBe(false);
    }
    for (const kind of [
      "request.received",
      "image.persisted",
      "reset.started",
      "verify.passed",
      "verify.failed",
      "verified",
      "failed",
      "plan",
      "recovered",
    ]) {
      expect(pipelines({ kind, data: {} }), kind).toBe(false);
    }
  });
});
