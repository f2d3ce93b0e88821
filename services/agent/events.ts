// The agent's event outbox: every event goes to JetStream with msgID = event id (durable, deduplicated on
// retry), in emission order, without blocking the caller. Publishes that time out (server down, reconnect
// in progress) are retried with the same msgID until they land; when no stream captures the subject (no
// JetStream, or no CXLRC_EVENTS: asked of JetStream, re-checked every streamCheckMs and after a failed
// publish) the event is sent with a core publish instead and counted as such. Not while a stream was seen
// within streamGraceMs: a server just restarted answers "no responders" for the stream and its API until
// JetStream has recovered, and an event sent as core then is lost; it is retried like a timeout instead.
//
// Events emitted in one turn of the event loop go out together on the next (setImmediate): one batch, one
// write to the socket, and an operation's register work is not interleaved with publishing its events. The
// outbox is pipelined: a turn's events go out while earlier ones still wait for their PubAcks (up to
// maxInFlight), so an operation's op.completed never waits for the acknowledgements of its op.started.
//
// nats.js drops whatever is published while disconnected, so the outbox watches the connection status:
// it pauses while the connection is down and re-sends the head event as soon as it is back (same msgID,
// so an attempt that did land before the outage is stored once).
import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import { type NatsConnection, errors as natsErrors } from "@nats-io/transport-node";
import { type AckPublisher, createAckPublisher } from "../../shared/bus/ack-publisher.ts";
import { type EventEnvelope, encodeJson } from "../../shared/bus/codec.ts";
import { isCxlrcError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { backoffDelay } from "../../shared/retry.ts";

export interface EventPublisherOptions {
  /** PubAck timeout per attempt. Default 2000 ms. */
  publishTimeoutMs?: number;
  /** Outbox bound; beyond it the oldest unsent events are dropped (counted, logged). Default 10,000. */
  maxQueue?: number;
  /** "jetstream" (default: JetStream when a stream captures events, else core publish) or "core" only. */
  mode?: "jetstream" | "core";
  /** How long the answer to "does a stream capture events?" is trusted. Default 10 s. */
  streamCheckMs?: number;
  /**
   * After a stream was last seen capturing events, how long a "no stream" answer is taken for JetStream
   * still starting (retried) rather than for no stream (core publish). Default 30 s.
   */
  streamGraceMs?: number;
  /** Publishes awaiting their PubAck at once. Default 64. */
  maxInFlight?: number;
}

export interface EventPublisherStats {
  /** Acknowledged by a stream. */
  stored: number;
  /** Sent with a core publish (no stream answered). */
  core: number;
  /** Stored copies the stream reported as duplicates (a retry whose first attempt had landed). */
  duplicates: number;
  retries: number;
  dropped: number;
  pending: number;
  /** Published and awaiting their PubAck. */
  inFlight: number;
}

interface Pending {
  seq: number;
  subject: string;
  id: string;
  data: Uint8Array;
  /** Published, its PubAck awaited. */
  sending: boolean;
}

export class EventPublisher {
  /** PubAcks on one reply subscription (no request object, timer or stack trace per event); made at the first. */
  private acks: AckPublisher | null = null;
  private readonly queue: Pending[] = [];
  private nextSeq = 1;
  /** Every seq below this is settled (sent or dropped). */
  private settledBelow = 1;
  /** A pump is due on the next turn of the event loop. */
  private pumpDue = false;
  /** Events published and awaiting their PubAck. */
  private inFlight = 0;
  /** Failed publishes in a row; while a retry waits out its backoff nothing new is sent. */
  private failures = 0;
  private backoff: NodeJS.Timeout | null = null;
  private readonly maxInFlight: number;
  private closed = false;
  private stream: { checkedAt: number; present: boolean } | undefined;
  private checking: Promise<boolean> | undefined;
  private jsm: Promise<JetStreamManager> | undefined;
  private waiters: Array<{ seq: number; resolve: (ok: boolean) => void }> = [];
  private readonly counters = { stored: 0, core: 0, duplicates: 0, retries: 0, dropped: 0 };
  private readonly publishTimeoutMs: number;
  private readonly maxQueue: number;
  private readonly mode: "jetstream" | "core";
  private readonly streamCheckMs: number;
  private readonly streamGraceMs: number;
  /** When a stream was last seen capturing events (a PubAck, or JetStream said so); 0: never. */
  private streamSeenAt = 0;
  private connected = true;
  /** Resolved (and replaced) on every connect/disconnect. */
  private change = signal();

  constructor(
    private readonly nc: NatsConnection,
    private readonly log: Logger,
    opts: EventPublisherOptions = {},
  ) {
    this.publishTimeoutMs = opts.publishTimeoutMs ?? 2000;
    this.maxQueue = opts.maxQueue ?? 10_000;
    this.mode = opts.mode ?? "jetstream";
    this.streamCheckMs = opts.streamCheckMs ?? 10_000;
    this.streamGraceMs = opts.streamGraceMs ?? 30_000;
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 64);
    void (async () => {
      for await (const st of nc.status()) {
        if (st.type === "disconnect" || st.type === "reconnect" || st.type === "close") {
          this.connected = st.type === "reconnect";
          const old = this.change;
          this.change = signal();
          old.fire();
        }
      }
    })().catch(() => undefined);
  }

  /** Queue one event; returns its sequence number (for waitFor). Never throws, never blocks. */
  publish(subject: string, event: EventEnvelope): number {
    const seq = this.nextSeq++;
    if (this.closed) {
      this.counters.dropped++;
      this.settle();
      return seq;
    }
    this.queue.push({ seq, subject, id: event.id, data: encodeJson(event), sending: false });
    if (this.queue.length > this.maxQueue) {
      // Never drop what is being sent right now; drop the oldest of the rest.
      let excess = this.queue.length - this.maxQueue;
      const lost: Pending[] = [];
      for (let i = 0; i < this.queue.length && excess > 0; ) {
        if (this.queue[i]!.sending) {
          i++;
          continue;
        }
        lost.push(...this.queue.splice(i, 1));
        excess--;
      }
      this.counters.dropped += lost.length;
      this.settle();
      this.log.warn(
        { dropped: lost.length, maxQueue: this.maxQueue },
        "event outbox full: oldest events dropped",
      );
    }
    this.schedulePump();
    return seq;
  }

  /** Pump on the next turn: whatever else is emitted until then joins the same batch. */
  private schedulePump(): void {
    if (this.pumpDue || this.backoff) return;
    this.pumpDue = true;
    setImmediate(() => {
      this.pumpDue = false;
      this.pump();
    });
  }

  /** Resolves true once every event up to seq is sent, false after maxWaitMs. */
  waitFor(seq: number, maxWaitMs: number): Promise<boolean> {
    if (this.settledBelow > seq) return Promise.resolve(true);
    return new Promise((resolve) => {
      const w = { seq, resolve };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        resolve(false);
      }, maxWaitMs);
      w.resolve = (ok) => {
        clearTimeout(timer);
        resolve(ok);
      };
      this.waiters.push(w);
    });
  }

  /** Wait (bounded) for the outbox to empty, then refuse new events. */
  async close(maxWaitMs: number): Promise<void> {
    await this.waitFor(this.nextSeq - 1, maxWaitMs);
    this.closed = true;
    this.acks?.close();
    if (this.backoff) clearTimeout(this.backoff);
    this.backoff = null;
    const left = this.queue.length;
    if (left > 0) {
      this.counters.dropped += left;
      this.log.warn({ left }, "agent stopped with unsent events");
      this.queue.length = 0;
      this.settle();
    }
  }

  stats(): EventPublisherStats {
    return { ...this.counters, pending: this.queue.length, inFlight: this.inFlight };
  }

  private settle(): void {
    this.settledBelow = this.queue[0]?.seq ?? this.nextSeq;
    if (this.waiters.length === 0) return;
    const ready = this.waiters.filter((w) => this.settledBelow > w.seq);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => this.settledBelow <= w.seq);
    for (const w of ready) w.resolve(true);
  }

  /**
   * Publishes the outbox in order, up to maxInFlight awaiting their PubAcks at once, without waiting for one
   * batch to be acknowledged before the next goes out (one connection: the stream stores them in the order
   * sent). A failed publish stays in its place and goes again after a backoff, before anything newer; only
   * publishes already in flight when it failed can land ahead of it.
   */
  private pump(): void {
    if (this.closed || this.backoff) return;
    for (const ev of this.queue) {
      if (this.inFlight >= this.maxInFlight) break;
      if (ev.sending) continue;
      ev.sending = true;
      this.inFlight++;
      this.sendOne(ev).then(
        () => this.sent(ev),
        (e: unknown) => this.failed(ev, e),
      );
    }
  }

  private sent(ev: Pending): void {
    this.inFlight--;
    this.failures = 0;
    const i = this.queue.indexOf(ev);
    if (i >= 0) this.queue.splice(i, 1);
    this.settle();
    if (this.queue.length > 0) this.schedulePump();
  }

  private failed(ev: Pending, e: unknown): void {
    this.inFlight--;
    ev.sending = false;
    if (!this.queue.includes(ev)) return;
    if (this.nc.isClosed() || e instanceof natsErrors.ClosedConnectionError) {
      if (this.queue.length > 0) {
        this.log.error({ pending: this.queue.length }, "NATS connection closed: pending events lost");
      }
      this.counters.dropped += this.queue.length;
      this.queue.length = 0;
      this.settle();
      return;
    }
    this.failures++;
    this.counters.retries++;
    if (this.failures === 1 || this.failures % 10 === 0) {
      this.log.warn(
        { err: (e as Error)?.message, eventId: ev.id, failures: this.failures },
        "event publish failed; retrying",
      );
    }
    if (this.backoff) return;
    const delay = this.connected ? backoffDelay(this.failures, { baseMs: 25, maxMs: 1000 }) : 0;
    this.backoff = setTimeout(() => {
      this.backoff = null;
      this.pump();
    }, delay);
  }

  /**
   * Whether a stream captures event subjects, asked of JetStream (STREAM.NAMES) and remembered for
   * streamCheckMs. A publish cannot tell: with no stream but a core subscriber on the subject (someone
   * following events) the publish simply times out, as it would if the server were slow.
   */
  private streamPresent(subject: string): Promise<boolean> {
    const known = this.stream;
    if (known && Date.now() - known.checkedAt < this.streamCheckMs) return Promise.resolve(known.present);
    this.checking ??= (async () => {
      let present: boolean;
      try {
        this.jsm ??= jetstreamManager(this.nc, { checkAPI: false, timeout: this.publishTimeoutMs });
        await (await this.jsm).streams.find(subject);
        present = true;
      } catch (e) {
        if (e instanceof natsErrors.PermissionViolationError || /permissions violation/i.test(String(e))) {
          // An agent in its own account has no JetStream API (deploy/nats: it publishes events through the
          // coordinators' account, which stores them and sends the PubAck back): publish with acks.
          if (known?.present !== true) {
            this.log.info({ subject }, "no JetStream API for this agent: publishing events with acks");
          }
          this.stream = { checkedAt: Date.now(), present: true };
          this.streamSeenAt = Date.now();
          this.checking = undefined;
          return true;
        }
        const timedOut = e instanceof natsErrors.TimeoutError || /timeout/i.test((e as Error)?.message ?? "");
        // A timeout says nothing (slow server, leader election): keep what we knew, else try JetStream.
        present = timedOut ? (known?.present ?? true) : false;
        if (timedOut) {
          this.checking = undefined;
          return present;
        }
      }
      if (known?.present !== present) {
        if (present) this.log.info({ subject }, "a JetStream stream captures events: publishing with acks");
        else this.log.warn({ subject }, "no JetStream stream captures events: they go out as core NATS");
      }
      this.stream = { checkedAt: Date.now(), present };
      if (present) this.streamSeenAt = Date.now();
      this.checking = undefined;
      return present;
    })();
    return this.checking;
  }

  private async sendOne(ev: Pending): Promise<void> {
    while (!this.connected) {
      if (this.nc.isClosed()) throw new natsErrors.ClosedConnectionError();
      await this.change.promise;
    }
    if (this.mode === "core" || !(await this.streamPresent(ev.subject))) {
      this.notRecentlyStored();
      this.nc.publish(ev.subject, ev.data);
      this.counters.core++;
      return;
    }
    try {
      this.acks ??= createAckPublisher(this.nc, { timeoutMs: this.publishTimeoutMs });
      const pub = this.acks.publish(ev.subject, ev.data, { msgID: ev.id });
      pub.catch(() => undefined);
      const interrupted = this.change.promise.then(() => {
        throw new Error("NATS connection state changed while publishing; retrying");
      });
      interrupted.catch(() => undefined);
      const ack = await Promise.race([pub, interrupted]);
      if (ack.duplicate) this.counters.duplicates++;
      this.counters.stored++;
      this.streamSeenAt = Date.now();
    } catch (e) {
      // Ask again before the retry: the stream may have been deleted (then the retry goes out as core).
      this.stream = undefined;
      // No responder at all on the subject: no JetStream, or no stream and no subscriber. Core instead.
      if (isCxlrcError(e) && e.details.reason === "no-responders") {
        this.notRecentlyStored();
        this.nc.publish(ev.subject, ev.data);
        this.counters.core++;
        return;
      }
      throw e;
    }
  }

  /**
   * Throws (the event is retried, same msgID) while a stream was seen within streamGraceMs: a "no stream"
   * answer then is a server whose JetStream is still recovering, and a core publish would lose the event.
   */
  private notRecentlyStored(): void {
    if (this.mode === "core" || this.streamSeenAt === 0) return;
    if (Date.now() - this.streamSeenAt >= this.streamGraceMs) return;
    this.stream = undefined;
    throw new Error("no stream answers events yet (JetStream recovering?); retrying");
  }
}

function signal(): { promise: Promise<void>; fire: () => void } {
  let fire!: () => void;
  const promise = new Promise<void>((r) => {
    fire = r;
  });
  return { promise, fire };
}
