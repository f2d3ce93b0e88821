// ensureStreams on a bus that ran an older cxlrc: the events stream captured only the coordinators' space
// (cxlrc.evt.>); it is brought in line (the agents' cxlrc.agt.> added) without losing what it holds.
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { encodeJson, makeEvent } from "../../shared/bus/codec.ts";
import { STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";

const BDF = "0000:01:00.0";

describe("ensureStreams", () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNats();
    nc = await connectBus({ servers: server.url, name: "streams", log: silentLogger });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it("adds the agents' subject space to an events stream that has only the coordinators'", async () => {
    const jsm = await getJsm(nc);
    const js = jetstream(nc);
    await jsm.streams.add({ name: STREAMS.events.name, subjects: [subjects.eventsAll] });
    const old = makeEvent({ host: "h1", bdf: BDF, kind: "verified", source: "coordinator" });
    await js.publish(subjects.event("h1", BDF, "verified"), encodeJson(old));

    await ensureStreams(jsm);
    const info = await jsm.streams.info(STREAMS.events.name);
    expect(info.config.subjects).toEqual(["cxlrc.evt.>", "cxlrc.agt.>"]);
    expect(info.state.messages).toBe(1);
    // Agent events are stored now.
    const ack = await js.publish(
      subjects.agentEvent("h1", BDF, "op.started"),
      encodeJson(makeEvent({ host: "h1", bdf: BDF, kind: "op.started", source: "agent" })),
    );
    expect(ack.stream).toBe(STREAMS.events.name);
    expect((await jsm.streams.info(STREAMS.events.name)).state.messages).toBe(2);
    // Idempotent.
    await ensureStreams(jsm);
    expect((await jsm.streams.info(STREAMS.events.name)).config.subjects).toEqual([
      "cxlrc.evt.>",
      "cxlrc.agt.>",
    ]);
  });
});
