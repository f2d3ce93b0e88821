// Event throughput through the stream CXLRC_EVENTS (JetStream, file storage, one nats-server): events/s
// published by the coordinator's publisher (ordered per device: each device's events one after another) and
// by the agent's outbox (64 awaiting their ack), and events/s consumed by what `cxlrc watch` uses (an ordered
// consumer, every envelope schema-checked). Envelopes of ≈ 600 B, like the coordinator's state events.
import { jetstream } from "@nats-io/jetstream";
import { eventFilter, openEvents } from "../client/feed.ts";
import { EventPublisher } from "../services/agent/events.ts";
import { createEventPublisher } from "../services/coordinator/events.ts";
import { connectBus, ensureStreams, getJsm } from "../shared/bus/client.ts";
import { makeEvent } from "../shared/bus/codec.ts";
import { STREAMS, subjects } from "../shared/bus/subjects.ts";
import { silentLogger } from "../shared/log.ts";
import { startNats } from "../shared/natsd/server.ts";
import type { BenchRow } from "./lib.ts";
import { benchBdf, hostName } from "./support/fleet.ts";
import { failedRow } from "./support/machine.ts";

const EVENTS = Number(process.env.BENCH_EVENTS ?? 20_000);

function data(i: number): Record<string, unknown> {
  return {
    state: "restoring",
    phase: "restoring",
    round: 0,
    deadlineMs: 1_790_000_000_000 + i,
    plan: { scope: "full", method: "cxl", targets: [benchBdf(i % 10)], waitMs: 200, escalated: false },
    reason: "bench: a typical state event with its plan summary and timings attached",
    timings: [
      { phase: "saving", startMs: 1_790_000_000_000, endMs: 1_790_000_000_007 },
      { phase: "persistingImage", startMs: 1_790_000_000_007, endMs: 1_790_000_000_009 },
    ],
  };
}

function device(i: number, devices: number) {
  const d = i % devices;
  return { host: hostName(d % 100), bdf: benchBdf(Math.floor(d / 100) % 10) };
}

export async function bench(): Promise<BenchRow[]> {
  const server = await startNats();
  const rows: BenchRow[] = [];
  try {
    const nc = await connectBus({ servers: server.url, name: "bench events", log: silentLogger });
    const jsm = await getJsm(nc);
    await ensureStreams(jsm);
    const js = jetstream(nc);
    const firstSeq = (await jsm.streams.info(STREAMS.events.name)).state.last_seq + 1;

    // The coordinator's publisher: fire-and-forget per event (as onEmitted does), ordered per device.
    for (const devices of [1, 1000]) {
      const pub = createEventPublisher({ js, coordinator: "bench", log: silentLogger });
      const n = devices === 1 ? Math.min(EVENTS, 5000) : EVENTS;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        const d = device(i, devices);
        void pub.publish({ ...d, kind: "state.entered", data: data(i), requestId: `bench-${i % devices}` });
      }
      await pub.flush();
      const s = (performance.now() - t0) / 1000;
      rows.push({
        name: `events published, coordinator publisher, ${devices} device(s) in parallel`,
        runs: n,
        value: Math.round(n / s),
        unit: "events/s",
        ratio: devices === 1 ? "one device: each event waits for the previous ack" : "",
      });
    }

    // The agent's outbox: JetStream with msgID, up to 64 awaiting their ack, in order. Fed in batches below
    // its queue bound (10,000), so nothing is dropped.
    {
      const pub = new EventPublisher(nc, silentLogger, {});
      const t0 = performance.now();
      let last = 0;
      let ok = true;
      for (let i = 0; i < EVENTS; i++) {
        const d = device(i, 10);
        const env = makeEvent({
          ...d,
          kind: "op.completed",
          source: "agent",
          data: data(i),
          opId: `op-${i}`,
        });
        last = pub.publish(subjects.agentEvent(d.host, d.bdf, env.kind), env);
        if (i % 4000 === 3999) ok &&= await pub.waitFor(last - 2000, 120_000);
      }
      ok &&= await pub.waitFor(last, 120_000);
      const s = (performance.now() - t0) / 1000;
      const st = pub.stats();
      rows.push({
        name: "events published, agent outbox (64 in flight)",
        runs: EVENTS,
        value: Math.round(EVENTS / s),
        unit: "events/s",
        ratio: `${st.stored} stored, ${st.core} core, ${st.dropped} dropped${ok ? "" : ", NOT all acknowledged"}`,
      });
      await pub.close(5000);
    }

    // Consumption: every stored event, as `cxlrc watch` reads them (ordered consumer + schema check).
    const info = await jsm.streams.info(STREAMS.events.name);
    const total = info.state.last_seq - firstSeq + 1;
    const bytes = info.state.bytes;
    const t0 = performance.now();
    const feed = await openEvents(nc, eventFilter(), { from: "seq", seq: firstSeq });
    let got = 0;
    for await (const _e of feed) {
      if (++got >= total) break;
    }
    feed.stop();
    const s = (performance.now() - t0) / 1000;
    rows.push({
      name: "events consumed, ordered consumer + envelope check (cxlrc watch)",
      runs: got,
      value: Math.round(got / s),
      unit: "events/s",
      ratio: `${((bytes / s) * 1e-6).toFixed(1)} MB/s, ${Math.round(bytes / Math.max(1, total))} B/event stored`,
    });
    await nc.close();
  } catch (e) {
    rows.push(failedRow("events", e));
  } finally {
    await server.stop();
  }
  return rows;
}
