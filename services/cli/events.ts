// Reading the event stream CXLRC_EVENTS: an ordered (ephemeral, flow-controlled) consumer with one subject
// filter, starting at new messages, at a time, or at a stream sequence. Messages that are not valid event
// envelopes are skipped (counted), so one bad publisher cannot stop `watch`.
import { DeliverPolicy, jetstream, type OrderedConsumerOptions } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { getJsm } from "../../shared/bus/client.ts";
import { decodeJson, EventEnvelope } from "../../shared/bus/codec.ts";
import { bdfToken, checkHost, PREFIX, STREAMS } from "../../shared/bus/subjects.ts";
import { Unavailable } from "./bus.ts";

export type EventStart = { from: "new" } | { from: "time"; time: Date } | { from: "seq"; seq: number };

/** cxlrc.evt.<host|*>.<bdf-token|*>.> */
export function eventFilter(host?: string, bdf?: string): string {
  return `${PREFIX}.evt.${host ? checkHost(host) : "*"}.${bdf ? bdfToken(bdf) : "*"}.>`;
}

export interface EventFeed extends AsyncIterable<EventEnvelope> {
  /** End the iteration (the consumer is ephemeral: the server drops it). */
  stop(): void;
  /** Messages skipped because they were not event envelopes. */
  readonly skipped: number;
}

function streamMissing(e: unknown): boolean {
  return /stream not found/i.test((e as Error)?.message ?? "");
}

/** The stream's absence or a server without JetStream as Unavailable (exit 3); anything else unchanged. */
function unavailableOr(e: unknown): unknown {
  if (streamMissing(e)) return noStream();
  if (/jetstream is not enabled|JetStream not enabled|no responders/i.test((e as Error)?.message ?? "")) {
    return new Unavailable(
      "the NATS server has no JetStream (start nats-server with -js, as `cxlrc demo` does)",
    );
  }
  return e;
}

/** The sequence the next stored event will get (to follow a request from before it was sent). */
export async function nextEventSeq(nc: NatsConnection): Promise<number> {
  const jsm = await getJsm(nc);
  try {
    const info = await jsm.streams.info(STREAMS.events.name);
    return info.state.last_seq + 1;
  } catch (e) {
    throw unavailableOr(e);
  }
}

function noStream(): Unavailable {
  return new Unavailable(
    `no event stream ${STREAMS.events.name} on this server (start \`cxlrc serve coordinator\` or an agent first)`,
  );
}

export async function openEvents(nc: NatsConnection, filter: string, start: EventStart): Promise<EventFeed> {
  const opts: Partial<OrderedConsumerOptions> = { filter_subjects: filter };
  if (start.from === "new") opts.deliver_policy = DeliverPolicy.New;
  else if (start.from === "time") {
    opts.deliver_policy = DeliverPolicy.StartTime;
    opts.opt_start_time = start.time.toISOString();
  } else {
    opts.deliver_policy = DeliverPolicy.StartSequence;
    opts.opt_start_seq = start.seq;
  }
  const js = jetstream(nc);
  let consumer: Awaited<ReturnType<typeof js.consumers.get>>;
  try {
    consumer = await js.consumers.get(STREAMS.events.name, opts);
  } catch (e) {
    throw unavailableOr(e);
  }
  const messages = await consumer.consume();
  let skipped = 0;
  return {
    get skipped() {
      return skipped;
    },
    stop() {
      messages.stop();
    },
    async *[Symbol.asyncIterator]() {
      for await (const m of messages) {
        let value: unknown;
        try {
          value = decodeJson(m);
        } catch {
          skipped++;
          continue;
        }
        const env = EventEnvelope.safeParse(value);
        if (!env.success) {
          skipped++;
          continue;
        }
        yield env.data;
      }
    },
  };
}
