// The fleet circuit breaker, fed by the outcome events. Every coordinator hears the same outcomes
// (cxlrc.evt.*.*.verified|failed|quarantined as they are published, and those of the last window from the
// events stream when it starts), and its own as it finishes them (so its next request sees them at once),
// counts each request once, keeps the window in memory, and applies
// machines/policy/breaker.ts's rule. What is stored is only the open/closed state in one small key (admission
// bucket, `breaker`), written when it flips: opened by whichever coordinator sees the threshold passed first,
// closed only by an operator (cxlrc.ctl.breaker). Every coordinator watches that key, so all refuse alike.
import type { KV, KvEntry, KvWatchEntry } from "@nats-io/kv";
import type { NatsConnection, QueuedIterator, Subscription } from "@nats-io/transport-node";
import {
  type BreakerOutcome,
  type BreakerState,
  closedBreaker,
  openReason,
} from "../../machines/policy/breaker.ts";
import type { Policy } from "../../machines/policy/defaults.ts";
import { envelopeOf } from "../../shared/bus/codec.ts";
import type { EventsRequest } from "../../shared/bus/requests.ts";
import { PREFIX } from "../../shared/bus/subjects.ts";
import { describeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { type ReplayDeps, readEventBatch } from "./event-replay.ts";

export const BREAKER_KEY = "breaker";
/** Outcome kinds the breaker counts (refusals and dry runs touched nothing). */
const COUNTED = { verified: false, failed: true, quarantined: true } as const;
/** Outcomes listed in the status reply (the window itself may hold many more). */
const STATUS_OUTCOMES = 100;
const RESTART_DELAY_MS = 500;
/** At most this many stored batches (1,000 outcomes each) per kind are read back at start. */
const BACKFILL_BATCHES = 100;

type BreakerLimits = Pick<Policy, "breakerWindowMs" | "breakerFailureRatio" | "breakerMinSamples">;
type Stored = Omit<BreakerState, "outcomes">;

export interface BreakerFeed {
  state(): BreakerState;
  /** An outcome of a request (counted once per request id, whoever reports it first). */
  record(requestId: string, failed: boolean, atMs: number): Promise<void>;
  /** Operator action: closed, and the window starts afresh. */
  close(operator: string, nowMs: number): Promise<BreakerState>;
  stop(): void;
}

export interface BreakerFeedOptions {
  kv: KV | null;
  /** Live outcomes; null: only this coordinator's own count. */
  nc: NatsConnection | null;
  /** Reading back the window's outcomes stored before this process started. */
  replay?: ReplayDeps;
  policy: BreakerLimits;
  log: Logger;
  now: () => number;
}

export async function startBreakerFeed(o: BreakerFeedOptions): Promise<BreakerFeed> {
  let stored: Stored = withoutOutcomes(closedBreaker());
  let revision: number | null = null;
  const window: Array<BreakerOutcome & { requestId: string }> = [];
  const seen = new Set<string>();
  let failures = 0;
  let stopped = false;
  /**
   * state() as last built: every gating reads it (guards, grant), and its outcome list is a hundred objects;
   * built again only after the window or the stored state changed.
   */
  let built: BreakerState | null = null;
  const iters: Array<QueuedIterator<KvWatchEntry>> = [];
  const subs: Subscription[] = [];

  const adopt = (e: KvEntry | null) => {
    if (!e) return;
    // The watch can deliver an entry after this feed wrote a newer one (a close, an opening): never go back.
    if (revision !== null && e.revision < revision) return;
    revision = e.revision;
    built = null;
    stored =
      e.operation === "PUT"
        ? { ...withoutOutcomes(closedBreaker()), ...e.json<Stored>() }
        : withoutOutcomes(closedBreaker());
    // Closed by an operator: what came before the close no longer counts.
    const since = stored.closedBy?.atMs ?? null;
    if (stored.status === "closed" && since !== null) {
      while (window.length > 0 && window[0]!.atMs <= since) drop();
    }
  };

  const drop = () => {
    built = null;
    const gone = window.shift()!;
    seen.delete(gone.requestId);
    if (gone.failed) failures--;
  };

  const prune = (nowMs: number) => {
    while (window.length > 0 && window[0]!.atMs <= nowMs - o.policy.breakerWindowMs) drop();
  };

  /** Write the flip; a lost compare-and-set means someone else wrote: read what holds. */
  const write = async (next: Stored) => {
    if (!o.kv) {
      stored = next;
      built = null;
      return;
    }
    try {
      const data = JSON.stringify(next);
      revision =
        revision === null
          ? await o.kv.create(BREAKER_KEY, data)
          : await o.kv.update(BREAKER_KEY, data, revision);
      stored = next;
      built = null;
    } catch (err) {
      adopt(await o.kv.get(BREAKER_KEY));
      if (stored.status === next.status) return;
      throw err;
    }
  };

  const isOpen = () => stored.status === "open";

  const evaluate = async (nowMs: number) => {
    if (isOpen()) return;
    prune(nowMs);
    const reason = openReason(failures, window.length, o.policy);
    if (reason === null) return;
    await write({ ...stored, status: "open", openedAtMs: nowMs, reason }).catch((err) =>
      o.log.warn({ err: describeError(err) }, "breaker opening not stored (the next outcome tries again)"),
    );
    if (isOpen()) o.log.warn({ reason }, "fleet circuit breaker opened");
  };

  const record = async (requestId: string, failed: boolean, atMs: number) => {
    if (seen.has(requestId)) return;
    if (atMs <= o.now() - o.policy.breakerWindowMs) return;
    if (stored.status === "closed" && stored.closedBy && atMs <= stored.closedBy.atMs) return;
    seen.add(requestId);
    window.push({ requestId, atMs, failed });
    built = null;
    if (failed) failures++;
    await evaluate(o.now());
  };

  if (o.kv) {
    adopt(await o.kv.get(BREAKER_KEY));
    const kv = o.kv;
    void (async () => {
      while (!stopped) {
        try {
          const it = await kv.watch({ key: BREAKER_KEY });
          iters.push(it);
          for await (const e of it) adopt(e);
        } catch (err) {
          if (!stopped) o.log.warn({ err: describeError(err) }, "breaker key watch ended; starting it again");
        }
        if (!stopped) await sleep(RESTART_DELAY_MS);
      }
    })();
  }

  // Live: a plain subscription per counted kind (every coordinator receives every outcome as it is published).
  // Then the window before this process started, from the stored events (one kind per read: a subject filter).
  if (o.nc) {
    const nc = o.nc;
    for (const [kind, failed] of Object.entries(COUNTED)) {
      const sub = nc.subscribe(`${PREFIX}.evt.*.*.${kind}`, {
        callback: (err, m) => {
          if (err) return;
          const env = envelopeOf(m.data);
          if (!env?.requestId || env.kind !== kind) return;
          void record(env.requestId, failed, Date.parse(env.time));
        },
      });
      subs.push(sub);
    }
    if (o.replay) {
      const replay = o.replay;
      const since = new Date(o.now() - o.policy.breakerWindowMs).toISOString();
      void (async () => {
        for (const [kind, failed] of Object.entries(COUNTED)) {
          try {
            let req: EventsRequest = { kinds: [kind], source: "coordinator", since, max: 1000 };
            for (let batch = 0; batch < BACKFILL_BATCHES && !stopped; batch++) {
              const r = await readEventBatch(replay, req);
              for (const e of r.events) {
                if (e.event.requestId && e.event.kind === kind) {
                  await record(e.event.requestId, failed, Date.parse(e.event.time));
                }
              }
              if (r.nextSeq > r.lastSeq || r.events.length === 0) break;
              req = { kinds: [kind], source: "coordinator", startSeq: r.nextSeq, max: 1000 };
            }
          } catch (err) {
            o.log.warn(
              { kind, err: describeError(err) },
              "earlier outcomes not read for the breaker's window",
            );
          }
        }
      })();
    }
  }

  return {
    state: () =>
      (built ??= Object.freeze({
        ...stored,
        outcomes: Object.freeze(
          window.slice(-STATUS_OUTCOMES).map(({ atMs, failed }) => ({ atMs, failed })),
        ) as BreakerState["outcomes"],
      })),
    record,
    async close(operator, nowMs) {
      if (o.kv) adopt(await o.kv.get(BREAKER_KEY));
      await write({
        ...stored,
        status: "closed",
        openedAtMs: null,
        reason: null,
        closedBy: { operator, atMs: nowMs },
      });
      while (window.length > 0) drop();
      return { ...stored, outcomes: [] };
    },
    stop() {
      stopped = true;
      for (const it of iters) it.stop();
      for (const sub of subs) sub.unsubscribe();
    },
  };
}

function withoutOutcomes(s: BreakerState): Stored {
  const { outcomes: _o, ...rest } = s;
  return rest;
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}
