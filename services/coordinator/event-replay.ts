// cxlrc.ctl.events: stored events replayed to readers (controllers, SREs, operators), who get no JetStream
// API of their own (they could otherwise choose a consumer's delivery subject, or touch another reader's
// consumer). One batch per request, read with the coordinator's own JetStream access through a short-lived
// consumer whose filter is built only from validated fields:
// - source coordinator → cxlrc.evt.<host|*>.<bdf-token|*>.<kind|>>, agent → cxlrc.agt.…, both → one consumer
//   per space, merged by stream sequence (nats-server 2.9 has no filter_subjects, and refuses a wildcard in
//   the space token: "cxlrc.*.H.>" is not a subset of the stream's subjects);
// - several kinds are filtered here, as is anything whose envelope disagrees with its subject (checkEventSubject:
//   a reader is never handed an event its subject does not vouch for) or that is not an event envelope.
// Bounded: at most `max` (≤ 1000) events, a reply below the server's max_payload, and at most SCAN_LIMIT
// stored messages looked at per space and batch; the reply's nextSeq says where to go on.
import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { type NatsConnection, nanos } from "@nats-io/transport-node";
import { envelopeOf } from "../../shared/bus/codec.ts";
import type { EventsReply, EventsRequest, StoredEvent } from "../../shared/bus/requests.ts";
import { bdfToken, PREFIX, STREAMS } from "../../shared/bus/subjects.ts";
import { checkEventSubject } from "../../shared/bus/trust.ts";
import { CxlrcError, describeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";

export const REPLAY_LIMITS = {
  /** Stored messages looked at per subject space and batch (kinds filtered here can skip many). */
  scanLimit: 5000,
  /** Messages pulled per fetch. */
  fetchChunk: 256,
  /** A fetch that delivers nothing for this long ends the batch. */
  fetchExpiresMs: 2000,
  /** Reply size budget: this share of the server's max_payload, less a margin for the reply wrapper. */
  payloadShare: 0.9,
  wrapperBytes: 1024,
  /** The consumer is removed after the batch; should that fail, the server drops it after this. */
  inactiveMs: 30_000,
} as const;

export interface ReplayDeps {
  js: JetStreamClient;
  jsm: JetStreamManager;
  nc: NatsConnection;
  log: Logger;
}

/** The consumer filters of a request: one per subject space ("" = the whole stream). */
export function replayFilters(req: Pick<EventsRequest, "host" | "bdf" | "kinds" | "source">): string[] {
  const host = req.host ?? "*";
  const device = req.bdf !== undefined ? bdfToken(req.bdf) : "*";
  const tail = req.kinds?.length === 1 ? req.kinds[0]! : ">";
  const spaces = req.source === "coordinator" ? ["evt"] : req.source === "agent" ? ["agt"] : ["evt", "agt"];
  if (spaces.length === 2 && host === "*" && device === "*" && tail === ">") return [""];
  return spaces.map((space) => `${PREFIX}.${space}.${host}.${device}.${tail}`);
}

interface Scanned {
  events: Array<{ item: StoredEvent; bytes: number }>;
  /** Every stored message of this filter up to here has been looked at. */
  coverage: number;
}

/** One batch of stored events (see the file comment). */
export async function readEventBatch(deps: ReplayDeps, req: EventsRequest): Promise<EventsReply> {
  const info = await deps.jsm.streams.info(STREAMS.events.name);
  const lastSeq = info.state.last_seq;
  if (req.startSeq === undefined && req.since === undefined) {
    return { events: [], nextSeq: lastSeq + 1, lastSeq };
  }
  if (req.startSeq !== undefined && req.startSeq > lastSeq) {
    return { events: [], nextSeq: req.startSeq, lastSeq };
  }
  const maxPayload = deps.nc.info?.max_payload ?? 1024 * 1024;
  const budget = Math.floor(maxPayload * REPLAY_LIMITS.payloadShare) - REPLAY_LIMITS.wrapperBytes;
  const kinds = req.kinds && req.kinds.length > 1 ? new Set(req.kinds) : null;
  const scans = await Promise.all(
    replayFilters(req).map((f) => scan(deps, req, f, { lastSeq, budget, kinds })),
  );
  // Merge by sequence up to where every space has been read; whatever lies beyond comes with the next batch.
  const cutoff = Math.min(...scans.map((s) => s.coverage));
  const merged = scans
    .flatMap((s) => s.events)
    .filter((e) => e.item.seq <= cutoff)
    .sort((a, b) => a.item.seq - b.item.seq);
  const events: StoredEvent[] = [];
  let bytes = 0;
  let nextSeq = cutoff + 1;
  for (const e of merged) {
    if (events.length >= req.max || bytes + e.bytes > budget) {
      nextSeq = e.item.seq;
      break;
    }
    events.push(e.item);
    bytes += e.bytes;
  }
  return { events, nextSeq: Math.max(1, nextSeq), lastSeq };
}

/** Read one filter's stored events from the request's start, within the limits. */
async function scan(
  deps: ReplayDeps,
  req: EventsRequest,
  filter: string,
  o: { lastSeq: number; budget: number; kinds: Set<string> | null },
): Promise<Scanned> {
  const stream = STREAMS.events.name;
  const start =
    req.startSeq !== undefined
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: req.startSeq }
      : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: req.since! };
  const ci = await deps.jsm.consumers.add(stream, {
    ...start,
    ack_policy: AckPolicy.None,
    ...(filter ? { filter_subject: filter } : {}),
    mem_storage: true,
    inactive_threshold: nanos(REPLAY_LIMITS.inactiveMs),
  });
  const out: Scanned = { events: [], coverage: (req.startSeq ?? 1) - 1 };
  try {
    let pending = ci.num_pending;
    if (pending === 0) {
      out.coverage = Math.max(out.coverage, o.lastSeq);
      return out;
    }
    const consumer = await deps.js.consumers.get(stream, ci.name);
    let scanned = 0;
    let bytes = 0;
    let full = false;
    let caughtUp = false;
    while (!full && !caughtUp && scanned < REPLAY_LIMITS.scanLimit) {
      const want = Math.min(REPLAY_LIMITS.fetchChunk, pending, REPLAY_LIMITS.scanLimit - scanned);
      const batch = await consumer.fetch({ max_messages: want, expires: REPLAY_LIMITS.fetchExpiresMs });
      let got = 0;
      for await (const m of batch) {
        got++;
        scanned++;
        out.coverage = m.seq;
        pending = m.info.pending;
        const item = storedEvent(m.seq, m.subject, m.data, o.kinds);
        if (item) {
          let size = jsonBytes(item);
          if (size > o.budget) {
            // Larger than a whole reply: its data is left out (the envelope still says what happened).
            item.event = {
              ...item.event,
              data: { omitted: "event too large for a replay batch", bytes: m.data.length },
            };
            size = jsonBytes(item);
          }
          out.events.push({ item, bytes: size });
          bytes += size;
          if (out.events.length >= req.max || bytes > o.budget) full = true;
        }
        // Read through the stream's last sequence of this batch: what arrived since comes with the next batch
        // (otherwise a filter with steady traffic, heartbeats say, keeps a fetch waiting for more).
        if (pending === 0 || m.seq >= o.lastSeq) caughtUp = true;
        if (full || caughtUp) break;
      }
      if (full || caughtUp) break;
      if (got === 0) {
        // Nothing came (messages removed by the stream's limits meanwhile?): ask the consumer where it is.
        const now = await deps.jsm.consumers.info(stream, ci.name);
        if (now.num_pending === 0) caughtUp = true;
        else {
          throw new CxlrcError("timeout", `events stream ${stream} delivered nothing for ${filter || ">"}`, {
            stream,
            filter,
          });
        }
      }
    }
    if (caughtUp) out.coverage = Math.max(out.coverage, o.lastSeq);
    return out;
  } finally {
    deps.jsm.consumers.delete(stream, ci.name).catch((err) => {
      deps.log.debug({ consumer: ci.name, err: describeError(err) }, "replay consumer not removed");
    });
  }
}

const encoder = new TextEncoder();
function jsonBytes(v: unknown): number {
  return encoder.encode(JSON.stringify(v)).length + 1;
}

/** A stored message as a StoredEvent, or null when it is not one a reader may be given (or not wanted). */
function storedEvent(
  seq: number,
  subject: string,
  data: Uint8Array,
  kinds: Set<string> | null,
): StoredEvent | null {
  const event = envelopeOf(data);
  if (event === null || checkEventSubject(subject, event) !== null) return null;
  if (kinds && !kinds.has(event.kind)) return null;
  return { seq, subject, event };
}
