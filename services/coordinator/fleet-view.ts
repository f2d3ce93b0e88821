// The fleet as stored: every device whose actor is persisted in the actors bucket, whichever coordinator
// drives it. One headers-only consumer of the bucket keeps, per key, the latest revision and the summary its
// writer put in the headers (actor-index.ts: state, mid-operation or not, owner, running request), so no
// snapshot crosses the wire: recovery finds the devices left mid-operation, and status reports every device,
// from this alone. Records are read only where the headers do not say enough (an older writer, a quarantine's
// reason), cached by revision.
//
// The consumer is watched: a consumer lost with a NATS node (or deleted) leaves the iterator waiting for
// heartbeats that never come, for most of a minute. Every `checkMs` the view compares the bucket's last
// sequence with the last one it was delivered; behind at two checks in a row without moving, it starts its
// consumer again from where it stopped.
import { type ConsumerMessages, DeliverPolicy, type JetStreamManager } from "@nats-io/jetstream";
import type { LifecycleContext } from "../../machines/lifecycle-types.ts";
import { BUCKETS, keyParts } from "../../shared/bus/subjects.ts";
import { describeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { type ActorSummary, summaryFromHeaders } from "./actor-index.ts";
import { type ActorRecord, type CoordinatorStore, FLEET_KEY } from "./store.ts";

/** A device as its stored actor describes it. */
export interface StoredDevice {
  key: string;
  host: string;
  bdf: string;
  state: string;
  /** Coordinator that stored it last (the one driving it, while it is mid-operation). */
  owner: string;
  /** When it was stored (ISO; "" when known from the headers only). */
  savedAt: string;
  revision: number;
  active: boolean;
  requestId: string | null;
  scopeViolations: number;
  quarantineReason: string | null;
}

export interface FleetView {
  /** Resolves once the view holds every key stored when it started (then it follows the writes). */
  readonly synced: Promise<void>;
  /** Latest stored revision of a device key, as the watch has seen it (undefined: none seen). */
  revision(key: string): number | undefined;
  /** The summary in the latest revision's headers (null: none, read the record; undefined: key not seen). */
  summary(key: string): ActorSummary | null | undefined;
  /** Every device key stored, as the watch has seen them. */
  keys(): string[];
  /**
   * The headers of the key's latest revision seen said mid-operation, but the device is at rest here (the
   * watch is behind, or stalled after a node went away): its summary is dropped until the watch brings a newer
   * revision, so the next look reads the record instead of trusting the headers again.
   */
  suspect(key: string): void;
  /** The stored devices of these keys (read when the cached record is older than the watched revision). */
  read(keys: string[]): Promise<StoredDevice[]>;
  /** Times the consumer was found stalled behind the bucket and started again. */
  restarts(): number;
  stop(): void;
}

export interface FleetViewOptions {
  /** How often the view checks that its consumer keeps up with the bucket. Default 5000 ms. */
  checkMs?: number;
}

const READ_WIDTH = 32;

/** A device from the summary in its headers (null when the key does not name one). */
function fromSummary(key: string, revision: number, s: ActorSummary): StoredDevice | null {
  const { host, bdf } = keyParts(key);
  if (!host || bdf === null) return null;
  return {
    key,
    host,
    bdf,
    state: s.state,
    owner: s.owner,
    savedAt: "",
    revision,
    active: s.active,
    requestId: s.requestId,
    scopeViolations: s.scopeViolations,
    quarantineReason: null,
  };
}

export function summarizeRecord(key: string, revision: number, rec: ActorRecord): StoredDevice {
  const ctx = (rec.snapshot as { context?: Partial<LifecycleContext> } | null)?.context ?? {};
  return {
    key,
    host: rec.host,
    bdf: rec.bdf,
    state: rec.state,
    owner: rec.owner,
    savedAt: rec.savedAt,
    revision,
    active: rec.active,
    requestId: ctx.request && ctx.outcome === null ? ctx.request.requestId : null,
    scopeViolations: ctx.scopeViolations ?? 0,
    quarantineReason: ctx.quarantineReason ?? null,
  };
}

export async function startFleetView(
  store: CoordinatorStore,
  log: Logger,
  opts: FleetViewOptions = {},
): Promise<FleetView> {
  const latest = new Map<string, { revision: number; summary: ActorSummary | null }>();
  const cache = new Map<string, StoredDevice>();
  const prefix = `$KV.${BUCKETS.actors}.`;
  let messages: ConsumerMessages | null = null;
  let stopped = false;
  let lastSeq = 0;
  let markSynced: () => void = () => undefined;
  const synced = new Promise<void>((r) => {
    markSynced = r;
  });

  const follow = async () => {
    while (!stopped) {
      try {
        const consumer = await store.js.consumers.get(`KV_${BUCKETS.actors}`, {
          filter_subjects: `${prefix}>`,
          headers_only: true,
          ...(lastSeq > 0
            ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastSeq + 1 }
            : { deliver_policy: DeliverPolicy.LastPerSubject }),
        });
        if ((await consumer.info(true)).num_pending === 0) markSynced();
        messages = await consumer.consume({ max_messages: 4096 });
        for await (const m of messages) {
          lastSeq = m.seq;
          const key = m.subject.slice(prefix.length);
          if (key === FLEET_KEY) continue;
          const op = m.headers?.get("KV-Operation");
          if (op === "DEL" || op === "PURGE") {
            latest.delete(key);
            cache.delete(key);
          } else {
            latest.set(key, { revision: m.seq, summary: summaryFromHeaders(m.headers) });
          }
          if (m.info.pending === 0) markSynced();
        }
      } catch (err) {
        if (!stopped)
          log.warn({ err: describeError(err) }, "actors bucket consumer ended; starting it again");
      }
      messages = null;
      if (!stopped) await new Promise((r) => setTimeout(r, 250));
    }
  };
  void follow();

  // The watchdog: behind the bucket at two checks in a row, delivered nothing in between: start again.
  let restarts = 0;
  let behindAt: number | null = null;
  let jsm: JetStreamManager | null = null;
  let checking = false;
  const check = async () => {
    if (stopped || checking || messages === null) return;
    checking = true;
    try {
      const seen = lastSeq;
      jsm ??= await store.js.jetstreamManager(false);
      const last = (await jsm.streams.info(`KV_${BUCKETS.actors}`)).state.last_seq;
      if (last <= seen) behindAt = null;
      else if (behindAt !== seen) behindAt = seen;
      else if (!stopped && messages !== null) {
        restarts++;
        behindAt = null;
        log.warn(
          { delivered: seen, stored: last },
          "actors bucket consumer stalled behind the bucket; starting it again",
        );
        messages.stop();
      }
    } catch (err) {
      // The stream's info not answered (a node electing a leader): the next check asks again.
      log.debug({ err: describeError(err) }, "actors bucket not checked");
    } finally {
      checking = false;
    }
  };
  const watchdog = setInterval(() => void check(), opts.checkMs ?? 5000);
  watchdog.unref();

  const readOne = async (key: string): Promise<StoredDevice | null> => {
    const seen = latest.get(key);
    const cached = cache.get(key);
    if (cached && seen !== undefined && cached.revision >= seen.revision) return cached;
    // The headers say all status needs (a quarantine's reason excepted).
    if (seen?.summary && seen.summary.state !== "quarantined") {
      const sd = fromSummary(key, seen.revision, seen.summary);
      if (sd) return sd;
    }
    const rec = await store.loadActor(key);
    if (!rec) {
      cache.delete(key);
      return null;
    }
    const s = summarizeRecord(key, rec.revision, rec.value);
    cache.set(key, s);
    return s;
  };

  return {
    synced,
    revision: (key) => latest.get(key)?.revision,
    summary: (key) => {
      const seen = latest.get(key);
      return seen === undefined ? undefined : seen.summary;
    },
    keys: () => [...latest.keys()],
    suspect(key) {
      const seen = latest.get(key);
      if (seen) seen.summary = null;
    },
    async read(keys) {
      const out: StoredDevice[] = [];
      for (let i = 0; i < keys.length; i += READ_WIDTH) {
        const got = await Promise.all(
          keys.slice(i, i + READ_WIDTH).map((k) =>
            readOne(k).catch((err) => {
              log.warn({ key: k, err: describeError(err) }, "stored actor not read for status");
              return null;
            }),
          ),
        );
        for (const g of got) if (g) out.push(g);
      }
      return out;
    },
    restarts: () => restarts,
    stop() {
      stopped = true;
      clearInterval(watchdog);
      messages?.stop();
    },
  };
}
