// Reading events as a reader does. Readers (controllers, SREs, operators) have no JetStream API on a secure
// bus: live events reach them as plain subscriptions (their account imports cxlrc.evt.> and cxlrc.agt.>),
// the past through the coordinator's replay endpoint cxlrc.ctl.events. A feed therefore:
//   1. subscribes live to both subject spaces for the filter, buffering what arrives;
//   2. from a time or a sequence, pages through cxlrc.ctl.events until caught up;
//   3. yields the buffered live events the replay did not already give (by envelope id), then goes on live.
// On a development bus with a stream but no coordinator (nobody answers cxlrc.ctl.events) it reads the
// stream itself with an ordered consumer, as before. Every item carries the subject it came on (FeedEvent):
// what an event may be believed to say follows from that subject, not from the envelope.
import { DeliverPolicy, jetstream, type OrderedConsumerOptions } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { getJsm, requestJson } from "../shared/bus/client.ts";
import { EventsReply, type EventsRequestInput } from "../shared/bus/requests.ts";
import { bdfToken, checkHost, PREFIX, STREAMS, subjects } from "../shared/bus/subjects.ts";
import { CxlrcError, isCxlrcError } from "../shared/errors.ts";
import { trimOldest } from "../shared/remember.ts";
import { ClientError, clientError } from "./errors.ts";
import { type FeedEvent, feedEvent, feedEventOf } from "./feed-event.ts";

export type { FeedEvent } from "./feed-event.ts";

export type EventStart = { from: "new" } | { from: "time"; time: Date } | { from: "seq"; seq: number };

/** Which events: one host, one device (any host), both, or everything. */
export interface EventFilter {
  host?: string;
  bdf?: string;
}

export function eventFilter(host?: string, bdf?: string): EventFilter {
  if (host !== undefined) checkHost(host);
  if (bdf !== undefined) bdfToken(bdf);
  return { ...(host !== undefined ? { host } : {}), ...(bdf !== undefined ? { bdf } : {}) };
}

/** The live subjects of a filter: cxlrc.evt.<host|*>.<bdf-token|*>.> and the same under cxlrc.agt. */
export function liveSubjects(f: EventFilter): string[] {
  const tail = `${f.host ?? "*"}.${f.bdf !== undefined ? bdfToken(f.bdf) : "*"}.>`;
  return [`${PREFIX}.evt.${tail}`, `${PREFIX}.agt.${tail}`];
}

export interface EventFeed extends AsyncIterable<FeedEvent> {
  /** End the iteration (subscriptions and consumers are ephemeral: nothing is left on the server). */
  stop(): void;
  /** Messages skipped because they were not event envelopes on an event subject. */
  readonly skipped: number;
  /** How the past is read: through the coordinator (cxlrc.ctl.events) or the stream itself (development bus). */
  readonly via: "coordinator" | "jetstream";
}

/** A cxlrc.ctl.events request waits this long for its answer. */
const EVENTS_TIMEOUT_MS = 10_000;
/** Replayed ids remembered to drop the live copies of the same events (the newest ones matter). */
const REPLAYED_IDS_MAX = 10_000;

/** One cxlrc.ctl.events batch; null when nobody serves the endpoint. */
async function askEvents(nc: NatsConnection, body: EventsRequestInput): Promise<EventsReply | null> {
  let reply: unknown;
  try {
    reply = await requestJson(nc, subjects.events, body, { timeoutMs: EVENTS_TIMEOUT_MS });
  } catch (e) {
    if (isCxlrcError(e) && e.details.reason === "no-responders") return null;
    if (isCxlrcError(e) && e.kind === "timeout" && e.details.remote !== true) {
      throw new ClientError(
        "unreachable",
        `the coordinator did not answer on ${subjects.events} within ${EVENTS_TIMEOUT_MS} ms`,
      );
    }
    throw e;
  }
  const result = (reply as { ok?: unknown; result?: unknown } | null)?.result;
  const parsed = EventsReply.safeParse(result);
  if (!parsed.success) {
    throw new CxlrcError("decode", `the coordinator's reply on ${subjects.events} is not an events batch`, {
      subject: subjects.events,
    });
  }
  return parsed.data;
}

/** The sequence the next stored event will get (to follow a request from before it was sent). */
export async function nextEventSeq(nc: NatsConnection): Promise<number> {
  const reply = await askEvents(nc, {});
  if (reply) return reply.lastSeq + 1;
  const jsm = await getJsm(nc);
  try {
    const info = await jsm.streams.info(STREAMS.events.name);
    return info.state.last_seq + 1;
  } catch (e) {
    throw unavailableOr(e);
  }
}

export async function openEvents(
  nc: NatsConnection,
  filter: EventFilter,
  start: EventStart,
): Promise<EventFeed> {
  const live = new Channel<FeedEvent>();
  let skipped = 0;
  // A subscription the server refuses (a principal without read rights) ends the feed with that reason.
  let refused: ClientError | null = null;
  const onMessage = (err: Error | null, m: { subject: string; data: Uint8Array }) => {
    if (err) {
      refused ??= clientError(err);
      if (refused.kind === "unreachable") {
        refused = new ClientError(
          "unreachable",
          `cannot read live events: ${err.message}`,
          {},
          { cause: err },
        );
      }
      live.close();
      return;
    }
    const item = feedEventOf(m.subject, m.data);
    if (item) live.push(item);
    else skipped++;
  };
  const subs: Subscription[] = liveSubjects(filter).map((s) => nc.subscribe(s, { callback: onMessage }));
  const unsubscribe = () => {
    for (const s of subs) s.unsubscribe();
  };
  let first: EventsReply | null;
  try {
    // The subscriptions are in place at the server before the past is asked for: nothing falls in between.
    await nc.flush();
    if (refused) throw refused;
    first = await askEvents(nc, { ...filter, ...startOf(start) });
  } catch (e) {
    unsubscribe();
    throw e;
  }
  if (first === null) {
    unsubscribe();
    return openStreamEvents(nc, filter, start);
  }

  let stopped = false;
  const replayed = new Set<string>();
  const remember = (id: string) => {
    replayed.add(id);
    trimOldest(replayed, REPLAYED_IDS_MAX);
  };
  async function* iterate(): AsyncGenerator<FeedEvent> {
    if (start.from !== "new") {
      let batch: EventsReply = first!;
      let from = start.from === "seq" ? start.seq : 0;
      for (;;) {
        for (const s of batch.events) {
          remember(s.event.id);
          const item = feedEvent(s.subject, s.event);
          if (!item) {
            skipped++;
            continue;
          }
          yield item;
          if (stopped) return;
        }
        // Caught up, or no progress (nothing more to read however often it is asked).
        if (batch.nextSeq > batch.lastSeq || (batch.events.length === 0 && batch.nextSeq <= from)) break;
        from = batch.nextSeq;
        const next = await askEvents(nc, { ...filter, startSeq: from });
        if (stopped) return;
        if (next === null)
          throw new ClientError("unreachable", `the coordinator stopped answering on ${subjects.events}`);
        batch = next;
      }
    }
    for await (const item of live) {
      if (replayed.has(item.event.id)) continue;
      yield item;
    }
    if (refused && !stopped) throw refused;
  }
  return {
    get skipped() {
      return skipped;
    },
    via: "coordinator",
    stop() {
      stopped = true;
      unsubscribe();
      live.close();
    },
    [Symbol.asyncIterator]: iterate,
  };
}

function startOf(start: EventStart): Pick<EventsRequestInput, "startSeq" | "since"> {
  if (start.from === "seq") return { startSeq: Math.max(1, start.seq) };
  if (start.from === "time") return { since: start.time.toISOString() };
  return {};
}

// ---------------------------------------------------------------------------------------------------
// Development bus: the stream itself.

function streamMissing(e: unknown): boolean {
  return /stream not found/i.test((e as Error)?.message ?? "");
}

/** The stream's absence or a server without JetStream as ClientError "unreachable" (the CLI: exit 3); anything else unchanged. */
function unavailableOr(e: unknown): unknown {
  if (streamMissing(e)) {
    return new ClientError(
      "unreachable",
      `no event stream ${STREAMS.events.name} on this server (start \`cxlrc serve coordinator\` or an agent first)`,
    );
  }
  if (/jetstream is not enabled|JetStream not enabled|no responders/i.test((e as Error)?.message ?? "")) {
    return new ClientError(
      "unreachable",
      "the NATS server has no JetStream (start nats-server with -js, as `cxlrc demo` does)",
    );
  }
  return e;
}

/**
 * An ordered consumer on CXLRC_EVENTS. nats-server 2.9 takes one filter subject and none spanning both
 * subject spaces, so the consumer reads both and the host/device filter is applied here.
 */
async function openStreamEvents(
  nc: NatsConnection,
  filter: EventFilter,
  start: EventStart,
): Promise<EventFeed> {
  const opts: Partial<OrderedConsumerOptions> = {};
  if (start.from === "new") opts.deliver_policy = DeliverPolicy.New;
  else if (start.from === "time") {
    opts.deliver_policy = DeliverPolicy.StartTime;
    opts.opt_start_time = start.time.toISOString();
  } else {
    opts.deliver_policy = DeliverPolicy.StartSequence;
    opts.opt_start_seq = Math.max(1, start.seq);
  }
  const js = jetstream(nc);
  let consumer: Awaited<ReturnType<typeof js.consumers.get>>;
  try {
    consumer = await js.consumers.get(STREAMS.events.name, opts);
  } catch (e) {
    throw unavailableOr(e);
  }
  const messages = await consumer.consume();
  const device = filter.bdf !== undefined ? bdfToken(filter.bdf) : undefined;
  let skipped = 0;
  return {
    get skipped() {
      return skipped;
    },
    via: "jetstream",
    stop() {
      messages.stop();
    },
    async *[Symbol.asyncIterator]() {
      for await (const m of messages) {
        const item = feedEventOf(m.subject, m.data);
        if (!item) {
          skipped++;
          continue;
        }
        if (filter.host !== undefined && item.origin.host !== filter.host) continue;
        if (device !== undefined && item.origin.device !== device) continue;
        yield item;
      }
    },
  };
}

/** An unbounded queue read by one async iterator; close() drops what is queued and ends the iteration. */
class Channel<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private head = 0;
  private wake: (() => void) | null = null;
  private closed = false;

  push(item: T): void {
    if (this.closed) return;
    this.items.push(item);
    this.wake?.();
  }

  close(): void {
    this.closed = true;
    this.items = [];
    this.head = 0;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      while (this.head < this.items.length) {
        const item = this.items[this.head++]!;
        // Compact now and then: the buffer may have grown large while a long replay was read.
        if (this.head >= 1024 && this.head * 2 >= this.items.length) {
          this.items = this.items.slice(this.head);
          this.head = 0;
        }
        yield item;
        if (this.closed) return;
      }
      if (this.closed) return;
      await new Promise<void>((r) => {
        this.wake = r;
      });
      this.wake = null;
    }
  }
}
