// What a chaos run saw on the bus: every event of CXLRC_EVENTS in stream order (an ordered consumer, the
// durable record the invariants are checked on), and the same events live as they are published (core
// subscriptions to cxlrc.evt.> and cxlrc.agt.>: low latency, for triggers).
//
// NATS nodes die under it: the ordered consumer is watched (no progress while the stream grows → it is
// recreated after the last sequence read), and catchUp() reads whatever is still missing message by message,
// so the record is complete even when a consumer stalled through a leader change.
import {
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
} from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { decodeJson, type EventEnvelope } from "../../shared/bus/codec.ts";
import { STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { checkEventSubject } from "../../shared/bus/trust.ts";

export interface RecordedEvent {
  seq: number;
  subject: string;
  event: EventEnvelope;
}

export interface Recorder {
  /** Stream events so far, in stream order. */
  readonly events: readonly RecordedEvent[];
  /** Called for every event seen live (core NATS, as published). */
  onLive(fn: (e: EventEnvelope) => void): () => void;
  /** Called for every event stored (stream order). */
  onStored(fn: (e: RecordedEvent) => void): () => void;
  /**
   * Until every message the stream holds now has been read: waits for the consumer (bounded), then reads
   * the rest directly. Returns false when the stream could not be read to its end.
   */
  catchUp(jsm: JetStreamManager, timeoutMs: number): Promise<boolean>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function startRecorder(
  nc: NatsConnection,
  js: JetStreamClient,
  jsm: JetStreamManager,
): Promise<Recorder> {
  const events: RecordedEvent[] = [];
  const live = new Set<(e: EventEnvelope) => void>();
  const stored = new Set<(e: RecordedEvent) => void>();
  let lastSeq = 0;
  let lastProgress = performance.now();
  let stopped = false;

  // Live: the coordinators' events and the agents' (their own subject space), as the stream captures both.
  const onLiveMsg = (_err: unknown, m: { subject: string; data: Uint8Array }) => {
    if (m.subject.endsWith(".heartbeat")) return;
    let e: EventEnvelope;
    try {
      e = decodeJson(m) as EventEnvelope;
    } catch {
      return;
    }
    // A trigger fires on what the subject vouches for (source, host, device, kind), never on a claim.
    if (checkEventSubject(m.subject, e) !== null) return;
    for (const fn of live) {
      try {
        fn(e);
      } catch {
        // a listener's problem is its own
      }
    }
  };
  const subs: Subscription[] = [subjects.eventsAll, subjects.agentEventsAll].map((subject) =>
    nc.subscribe(subject, { callback: onLiveMsg }),
  );

  /** Take one stream message in order (a sequence already taken is ignored). */
  const take = (seq: number, subject: string, data: Uint8Array) => {
    if (seq <= lastSeq) return;
    lastSeq = seq;
    lastProgress = performance.now();
    if (subject.endsWith(".heartbeat")) return;
    let event: EventEnvelope;
    try {
      event = decodeJson(data) as EventEnvelope;
    } catch {
      return;
    }
    const r = { seq, subject, event };
    events.push(r);
    for (const fn of stored) {
      try {
        fn(r);
      } catch {
        // ignore
      }
    }
  };

  let messages: ConsumerMessages | null = null;
  const loop = (async () => {
    while (!stopped) {
      try {
        const consumer = await js.consumers.get(STREAMS.events.name, {
          ...(lastSeq > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastSeq + 1 } : {}),
        });
        messages = await consumer.consume({ max_messages: 1024 });
        lastProgress = performance.now();
        for await (const m of messages) take(m.seq, m.subject, m.data);
      } catch {
        // stream not there yet, or the consumer broke during a failover: start again after the last seq
      }
      messages = null;
      if (!stopped) await sleep(250);
    }
  })();

  // Watchdog: a consumer that stopped delivering while the stream grew is replaced.
  const watchdog = setInterval(() => {
    if (stopped || performance.now() - lastProgress < 3000) return;
    void jsm.streams
      .info(STREAMS.events.name)
      .then((info) => {
        if (!stopped && info.state.last_seq > lastSeq && performance.now() - lastProgress >= 3000) {
          lastProgress = performance.now();
          messages?.stop();
        }
      })
      .catch(() => undefined);
  }, 1000);
  watchdog.unref();

  return {
    events,
    onLive(fn) {
      live.add(fn);
      return () => live.delete(fn);
    },
    onStored(fn) {
      stored.add(fn);
      return () => stored.delete(fn);
    },
    async catchUp(admin, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      let last = 0;
      for (;;) {
        try {
          last = (await admin.streams.info(STREAMS.events.name)).state.last_seq;
          if (lastSeq >= last) return true;
          break;
        } catch {
          if (Date.now() > deadline) return false;
          await sleep(200);
        }
      }
      // Give the consumer a moment, then read the rest one by one (in order).
      const waitUntil = Math.min(deadline, Date.now() + 2000);
      while (lastSeq < last && Date.now() < waitUntil) await sleep(100);
      while (lastSeq < last && Date.now() < deadline) {
        const seq = lastSeq + 1;
        try {
          const m = await admin.streams.getMessage(STREAMS.events.name, { seq });
          if (m) take(seq, m.subject, m.data);
          else lastSeq = Math.max(lastSeq, seq);
        } catch (e) {
          // A sequence that is gone (deleted, limits) is skipped; anything else is retried.
          if (/no message found|not found/i.test((e as Error).message)) lastSeq = Math.max(lastSeq, seq);
          else await sleep(100);
        }
      }
      return lastSeq >= last;
    },
    async stop() {
      stopped = true;
      clearInterval(watchdog);
      for (const sub of subs) sub.unsubscribe();
      messages?.stop();
      await Promise.race([loop, sleep(2000)]);
    },
  };
}
