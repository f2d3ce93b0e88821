// cxlrc.ctl.events: readers replay stored events through the coordinator (they have no JetStream API), in
// batches, against a real nats-server. The stream is filled with known events of both subject spaces (the
// coordinators' cxlrc.evt.> and the agents' cxlrc.agt.>), a few envelopes that disagree with their subject,
// and a few large ones; each test reads them back as a reader would.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPLAY_LIMITS, replayFilters } from "../../services/coordinator/event-replay.ts";
import { type EventEnvelope, encodeJson, makeEvent } from "../../shared/bus/codec.ts";
import type { EventsReply, EventsRequestInput } from "../../shared/bus/requests.ts";
import { STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { control, startWorld, until, type World } from "./helpers.ts";

const A = "0000:01:00.0";
const B = "0000:02:00.0";

interface Published {
  seq: number;
  subject: string;
  event: EventEnvelope;
}

describe("cxlrc.ctl.events: stored events in batches", () => {
  let w: World;
  /** Every believable event published by the test, in stream order. */
  const good: Published[] = [];
  let sinceMark = "";
  let firstAfterMark = 0;

  const publish = async (space: "evt" | "agt", host: string, bdf: string | null, kind: string, data = {}) => {
    const source = space === "evt" ? "coordinator" : "agent";
    const event = makeEvent({ host, bdf, kind, source, data });
    const subject =
      space === "evt"
        ? bdf === null
          ? subjects.hostEvent(host, kind)
          : subjects.event(host, bdf, kind)
        : subjects.agentEvent(host, bdf, kind);
    const ack = await w.js.publish(subject, encodeJson(event), { msgID: event.id });
    return { seq: ack.seq, subject, event };
  };

  beforeAll(async () => {
    w = await startWorld([]);
    await w.coordinator();
    // An event stream with a history of its own: 3 hosts, both spaces, several kinds.
    for (let i = 0; i < 40; i++) {
      const host = ["h1", "h2", "h3"][i % 3]!;
      const bdf = i % 2 === 0 ? A : B;
      good.push(await publish("evt", host, bdf, i % 5 === 0 ? "verified" : "state.entered", { i }));
      good.push(await publish("agt", host, bdf, i % 4 === 0 ? "op.completed" : "op.started", { i }));
      if (i === 19) {
        await new Promise((r) => setTimeout(r, 30));
        sinceMark = new Date().toISOString();
        await new Promise((r) => setTimeout(r, 30));
        firstAfterMark = good.length;
      }
    }
    good.push(await publish("agt", "h1", null, "agent.started"));
    // Envelopes their subject does not vouch for: another host, another device, another kind, another source.
    const liar = (subject: string, e: Partial<EventEnvelope>) =>
      w.js.publish(
        subject,
        encodeJson({ ...makeEvent({ host: "h1", bdf: A, kind: "verified", source: "agent" }), ...e }),
      );
    await liar(subjects.agentEvent("h2", A, "verified"), {});
    await liar(subjects.agentEvent("h1", B, "verified"), {});
    await liar(subjects.agentEvent("h1", A, "failed"), {});
    await liar(subjects.agentEvent("h1", A, "verified"), { source: "coordinator" });
    await w.js.publish(subjects.agentEvent("h1", A, "junk"), new TextEncoder().encode("not json"));
    good.push(await publish("evt", "h1", A, "released"));
  });
  afterAll(async () => {
    await w?.close();
  });

  const ask = async (req: EventsRequestInput): Promise<EventsReply> => {
    const r = await control<EventsReply>(w.nc, subjects.events, req);
    if (!r.ok) throw new Error(r.error.message);
    return r.result;
  };
  /** Every batch from `req` until caught up. */
  const all = async (
    req: EventsRequestInput,
  ): Promise<{ events: EventsReply["events"]; batches: number }> => {
    const events: EventsReply["events"] = [];
    let next = req.startSeq ?? 1;
    let batches = 0;
    let first = true;
    for (;;) {
      const r = await ask(first ? req : { ...req, since: undefined, startSeq: next });
      first = false;
      batches++;
      events.push(...r.events);
      expect(r.nextSeq).toBeGreaterThan(next - 1);
      next = r.nextSeq;
      if (r.nextSeq > r.lastSeq) return { events, batches };
      if (batches > 500) throw new Error("no end");
    }
  };
  const seqs = (xs: Array<{ seq: number }>) => xs.map((x) => x.seq);

  it("the filters come from validated fields only; both spaces with a host are two consumers", () => {
    expect(replayFilters({})).toEqual([""]);
    expect(replayFilters({ source: "coordinator" })).toEqual(["cxlrc.evt.*.*.>"]);
    expect(replayFilters({ host: "h1" })).toEqual(["cxlrc.evt.h1.*.>", "cxlrc.agt.h1.*.>"]);
    expect(replayFilters({ host: "h1", bdf: A, kinds: ["verified"], source: "agent" })).toEqual([
      "cxlrc.agt.h1.0000-01-00-0.verified",
    ]);
    expect(replayFilters({ bdf: A, kinds: ["a", "b"] })).toEqual([
      "cxlrc.evt.*.0000-01-00-0.>",
      "cxlrc.agt.*.0000-01-00-0.>",
    ]);
  });

  it("everything from the start, in stream order, in batches of max; liars and junk left out", async () => {
    const { events, batches } = await all({ startSeq: 1, max: 7 });
    expect(seqs(events)).toEqual(seqs(good));
    expect(events.map((e) => e.subject)).toEqual(good.map((g) => g.subject));
    expect(events.map((e) => e.event.id)).toEqual(good.map((g) => g.event.id));
    expect(batches).toBeGreaterThanOrEqual(Math.ceil(good.length / 7));
  });

  it("host, device, source and kinds narrow the batch (merged across both spaces by sequence)", async () => {
    const h1 = await all({ startSeq: 1, host: "h1", max: 5 });
    expect(seqs(h1.events)).toEqual(seqs(good.filter((g) => g.event.host === "h1")));

    const h2b = await all({ startSeq: 1, host: "h2", bdf: B, source: "agent" });
    expect(seqs(h2b.events)).toEqual(
      seqs(good.filter((g) => g.event.host === "h2" && g.event.bdf === B && g.event.source === "agent")),
    );
    expect(h2b.events.length).toBeGreaterThan(0);

    const two = await all({ startSeq: 1, kinds: ["verified", "op.completed"], max: 4 });
    expect(seqs(two.events)).toEqual(
      seqs(good.filter((g) => g.event.kind === "verified" || g.event.kind === "op.completed")),
    );
    const one = await all({ startSeq: 1, kinds: ["verified"], source: "coordinator" });
    expect(seqs(one.events)).toEqual(seqs(good.filter((g) => g.event.kind === "verified")));
  });

  it("from a time; without a start nothing, with where the stream stands", async () => {
    const since = await all({ since: sinceMark, max: 1000 });
    expect(seqs(since.events)).toEqual(seqs(good.slice(firstAfterMark)));

    const info = await w.jsm.streams.info(STREAMS.events.name);
    const now = await ask({});
    expect(now).toEqual({ events: [], nextSeq: info.state.last_seq + 1, lastSeq: info.state.last_seq });
    // Past the end: nothing yet, same place to ask again.
    const later = await ask({ startSeq: info.state.last_seq + 5 });
    expect(later).toEqual({ events: [], nextSeq: info.state.last_seq + 5, lastSeq: info.state.last_seq });
  });

  it("a batch stays under the server's max_payload; a too large event comes without its data", async () => {
    const big: Published[] = [];
    for (let i = 0; i < 4; i++)
      big.push(await publish("agt", "h9", A, "op.completed", { blob: "x".repeat(300_000) }));
    const { events, batches } = await all({ startSeq: big[0]!.seq, host: "h9" });
    expect(seqs(events)).toEqual(seqs(big));
    expect(batches).toBeGreaterThanOrEqual(2);
    for (const e of events) expect((e.event.data.blob as string).length).toBe(300_000);
    const maxPayload = w.nc.info!.max_payload;
    const r = await w.nc.request(subjects.events, encodeJson({ startSeq: big[0]!.seq, host: "h9" }));
    expect(r.data.length).toBeLessThan(maxPayload);

    // One event nearly as large as max_payload: replayed with its data left out, saying so.
    const huge = await publish("agt", "h8", A, "op.completed", {
      blob: "y".repeat(Math.floor(maxPayload * REPLAY_LIMITS.payloadShare)),
    });
    const one = await ask({ startSeq: huge.seq, host: "h8" });
    expect(seqs(one.events)).toEqual([huge.seq]);
    expect(one.events[0]!.event.data).toMatchObject({ omitted: "event too large for a replay batch" });
  });

  it("bad requests are refused naming the field; no consumer is left behind", async () => {
    const tooMany = await control(w.nc, subjects.events, { startSeq: 1, max: 5000 });
    expect(!tooMany.ok && tooMany.error.message).toMatch(/field "max"/);
    const unknown = await control(w.nc, subjects.events, {
      startSeq: 1,
      deliverSubject: "cxlrc.agent.h1.reset",
    });
    expect(!unknown.ok && unknown.error.message).toMatch(/unknown field "deliverSubject"/);
    const badKind = await control(w.nc, subjects.events, { startSeq: 1, kinds: ["a.>"] });
    expect(!badKind.ok && badKind.error.message).toMatch(/field "kinds.0"/);
    const badHost = await control(w.nc, subjects.events, { startSeq: 1, host: "h1.*" });
    expect(!badHost.ok && badHost.error.message).toMatch(/field "host"/);
    // Every batch consumer removed (the replay consumers are the stream's only ones here).
    expect(
      await until(async () => (await w.jsm.streams.info(STREAMS.events.name)).state.consumer_count === 0),
    ).toBe(true);
    // Still serving.
    expect((await ask({ startSeq: 1, max: 1 })).events).toHaveLength(1);
  });
});
