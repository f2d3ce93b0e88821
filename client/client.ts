// cxlrc's client: what a fleet controller, an SRE tool or the CLI calls instead of speaking the bus protocol
// itself. One object over one NATS connection: submit or plan a reset (the coordinator's decision), reset
// (decision, progress events, outcome), watch events, read status and images, release a quarantined device.
// Every request is checked against the same schema the coordinator uses before anything is sent; every failure
// is a ClientError with a kind. Only the coordinator's subject space is believed about a request's progress.
import type { NatsConnection } from "@nats-io/transport-node";
import { errors as natsErrors, nuid } from "@nats-io/transport-node";
import type { z } from "zod";
import { connectBus, requestJson } from "../shared/bus/client.ts";
import type { EventEnvelope } from "../shared/bus/codec.ts";
import { BreakerResult } from "../shared/bus/control-replies.ts";
import {
  type AgentEvent,
  agentEventOf,
  type CoordinatorEvent,
  coordinatorEventOf,
} from "../shared/bus/event-data.ts";
import {
  BreakerResetRequest,
  EventsReply,
  ImageRequest,
  ReleaseRequest,
  type ReleaseRequestInput,
  type ResetRequestInput,
  ResetRequestMessage,
  type StoredEvent,
} from "../shared/bus/requests.ts";
import { subjects } from "../shared/bus/subjects.ts";
import { silentLogger } from "../shared/log.ts";
import { type Decision, decisionsOf } from "./decisions.ts";
import { ClientError, clientError } from "./errors.ts";
import { type EventFeed, type EventStart, eventFilter, openEvents } from "./feed.ts";
import { requestFollower } from "./follow.ts";
import { applyEvent, groupTimes, newTracked, OUTCOME_KINDS, type PhaseGroup } from "./track.ts";

export type { Decision } from "./decisions.ts";

/** A reset request as a caller writes it: `requestId` is made up when absent (and returned). */
export type ResetInput = Omit<ResetRequestInput, "requestId" | "dryRun"> & { requestId?: string };

export interface ClientOptions {
  /** NATS server(s). Default $CXLRC_NATS_URL, else nats://127.0.0.1:4222. */
  servers?: string | string[];
  /** Connection name the server shows. Default "cxlrc client". */
  name?: string;
  /** Credentials as the services take them; default the CXLRC_NATS_* environment (TLS, nkey, creds, user). */
  user?: string;
  pass?: string;
  token?: string;
  credsFile?: string;
  /** A control request's answer time. Default 10 s. */
  timeoutMs?: number;
  /** Who asks, kept in the audit trail of every request (default "client:<name>"). */
  requester?: string;
}

/** One event as the client hands it out: what the subject vouches for, and the envelope. */
export interface ClientEvent {
  /** coordinator: the coordinator's subject space; agent: a host agent's (never believed about outcomes). */
  source: "coordinator" | "agent";
  kind: string;
  host: string;
  bdf: string | null;
  requestId: string | null;
  time: string;
  data: Record<string, unknown>;
  /** The subject it came on, and the envelope as published. */
  subject: string;
  envelope: EventEnvelope;
  /**
   * The event with its data typed by the bus contract (shared/bus/event-data.ts, docs/asyncapi.yaml): switch on
   * `typed.kind`. null for a kind this version does not know, or data that does not match its schema.
   */
  typed: CoordinatorEvent | AgentEvent | null;
}

/** Closing the fleet circuit breaker: who closes it and why (kept in the `breaker.closed` event). */
export type BreakerCloseInput = z.input<typeof BreakerResetRequest>;
/** The breaker as the coordinator left it once closed (status, who closed it and when). */
export type BreakerCloseResult = BreakerResult;

export type OutcomeKind = "verified" | "failed" | "quarantined" | "refused" | "planned" | "rejected";

export interface Outcome {
  kind: OutcomeKind;
  requestId: string;
  host: string;
  bdf: string;
  /** A code: the refusal reason (device-busy, cooldown…), the failure's error kind, "quarantined", "bad-request". */
  reason: string | null;
  /** The sentence that goes with it (refusal message, error message, quarantine reason). */
  message: string | null;
  /** The outcome event itself (absent when the decision was the outcome, or a duplicate's stored one). */
  event: ClientEvent | null;
  /** Milliseconds spent per phase group (gate, save, reset, restore, verify), as seen by this client. */
  phases: Record<PhaseGroup, number | null>;
}

export interface ResetHandle {
  readonly requestId: string;
  readonly host: string;
  /** The device (function 0). */
  readonly bdf: string;
  /** What the coordinator decided when the request came in. */
  readonly decision: Decision;
  /** The request's progress events from the coordinator, as they come; ends after the outcome event. */
  readonly events: AsyncIterable<ClientEvent>;
  /**
   * How it ended. Rejects with ClientError "aborted" when the caller's signal fires: that only stops the
   * waiting, the reset itself goes on (a coordinator does not abort a reset it started).
   */
  readonly outcome: Promise<Outcome>;
}

export interface WatchOptions {
  host?: string;
  /** The device (function 0). */
  bdf?: string;
  /** Replay from this time or stream sequence first; default: live only. */
  since?: Date | number;
  /** Only these kinds. */
  kinds?: readonly string[];
  signal?: AbortSignal;
}

export interface CxlrcClient {
  readonly nc: NatsConnection;
  /** Hand a reset request to the coordinator: its decision (plan, refusal…); nothing beyond intake happened yet. */
  submit(request: ResetInput): Promise<Decision>;
  /** Dry run: the plan the coordinator would make, or its refusal. Touches nothing. */
  plan(request: ResetInput): Promise<Decision>;
  /**
   * Submit and follow. Idempotent by requestId: called again with the id of a request already submitted (the
   * caller crashed), it re-attaches to that request instead of resetting twice.
   */
  reset(request: ResetInput, opts?: { signal?: AbortSignal }): Promise<ResetHandle>;
  /** Events, live or replayed; stop by breaking out of the loop or with the signal. */
  watch(opts?: WatchOptions): AsyncIterable<ClientEvent>;
  /** The fleet as the coordinator sees it (devices, their state, breaker, leases). */
  status(opts?: { host?: string }): Promise<Record<string, unknown>>;
  /** The images of a function: the last saved one, or with verified the last known good one (null if none). */
  image(host: string, bdf: string, opts?: { verified?: boolean }): Promise<Record<string, unknown> | null>;
  /** Take a device out of quarantine (operators), optionally restoring its last known good image first. */
  release(request: ReleaseRequestInput): Promise<Record<string, unknown>>;
  /**
   * Close the fleet circuit breaker (operators): new resets are accepted again. Closing a closed breaker is
   * not an error; the reply says who closed it last.
   */
  breakerClose(request: BreakerCloseInput): Promise<BreakerCloseResult>;
  /** Close the connection (only one the client opened itself). */
  close(): Promise<void>;
}

const DEFAULT_SERVER = "nats://127.0.0.1:4222";

/** Connect to the bus and return a client that owns the connection. */
export async function connect(opts: ClientOptions = {}): Promise<CxlrcClient> {
  const servers = opts.servers ?? (process.env.CXLRC_NATS_URL || DEFAULT_SERVER);
  let nc: NatsConnection;
  try {
    nc = await connectBus({
      servers,
      name: opts.name ?? "cxlrc client",
      log: silentLogger,
      waitForServer: false,
      timeoutMs: 5000,
      ...(opts.user !== undefined ? { user: opts.user, pass: opts.pass ?? "" } : {}),
      ...(opts.token !== undefined ? { token: opts.token } : {}),
      ...(opts.credsFile !== undefined ? { credsFile: opts.credsFile } : {}),
    });
  } catch (e) {
    const why = (e as Error)?.message ?? String(e);
    if (e instanceof natsErrors.AuthorizationError || /authorization violation/i.test(why)) {
      throw new ClientError(
        "permission-denied",
        `the NATS server at ${String(servers)} refused the credentials: ${why}`,
        {},
        { cause: e },
      );
    }
    throw new ClientError(
      "unreachable",
      `cannot reach the NATS server at ${String(servers)}: ${why}`,
      {},
      { cause: e },
    );
  }
  return clientOn(nc, { ...opts, ownsConnection: true });
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : {});

/** A client over a connection the caller owns (close() leaves it open unless ownsConnection). */
export function clientOn(
  nc: NatsConnection,
  opts: ClientOptions & { ownsConnection?: boolean } = {},
): CxlrcClient {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const follower = requestFollower(nc);
  const requester = opts.requester ?? `client:${opts.name ?? "cxlrc"}`.slice(0, 128);

  const ask = async (subject: string, body: unknown): Promise<unknown> => {
    let reply: unknown;
    try {
      reply = await requestJson(nc, subject, body, { timeoutMs });
    } catch (e) {
      throw clientError(e, subject);
    }
    const r = obj(reply);
    return r.ok === true && "result" in r ? r.result : reply;
  };

  /** The request as the coordinator will read it, checked here: a bad field is named before anything is sent. */
  const checked = (request: ResetInput, dryRun: boolean) => {
    const body = {
      requester,
      ...request,
      requestId: request.requestId ?? `client-${nuid.next()}`,
      dryRun,
    };
    return parsedOr(ResetRequestMessage, body, "reset");
  };

  const decide = (reply: unknown, requestId: string, bdf: string): Decision => {
    const [d] = decisionsOf(reply, { requestId, bdf });
    if (!d)
      throw new ClientError("remote", "the coordinator's reply holds no decision", { remoteKind: "decode" });
    return d;
  };

  /** The outcome event of a request among the device's stored events (the coordinator's replay endpoint). */
  const pastOutcome = async (host: string, bdf: string, requestId: string) => {
    for (let startSeq = 1, pages = 0; pages < 1000; pages++) {
      const reply = EventsReply.safeParse(
        await ask(subjects.events, { host, bdf, source: "coordinator", kinds: [...OUTCOME_KINDS], startSeq }),
      );
      if (!reply.success) return null;
      const hit = reply.data.events.find((e) => e.event.requestId === requestId);
      if (hit) return { kind: hit.event.kind, data: hit.event.data, stored: hit };
      if (reply.data.nextSeq > reply.data.lastSeq || reply.data.events.length === 0) return null;
      startSeq = reply.data.nextSeq;
    }
    return null;
  };
  const toEventStored = (p: { stored: StoredEvent }): ClientEvent =>
    toEvent({ subject: p.stored.subject, origin: { source: "coordinator" }, event: p.stored.event });

  const toEvent = (e: {
    subject: string;
    origin: { source: string };
    event: EventEnvelope;
  }): ClientEvent => ({
    typed: typedOf(e.origin.source === "coordinator", e.event),
    source: e.origin.source === "coordinator" ? "coordinator" : "agent",
    kind: e.event.kind,
    host: e.event.host,
    bdf: e.event.bdf ?? null,
    requestId: e.event.requestId ?? null,
    time: e.event.time,
    data: e.event.data,
    subject: e.subject,
    envelope: e.event,
  });

  const open = async (filter: { host?: string; bdf?: string }, start: EventStart): Promise<EventFeed> => {
    try {
      return await openEvents(nc, eventFilter(filter.host, filter.bdf), start);
    } catch (e) {
      throw clientError(e, subjects.events);
    }
  };

  return {
    nc,

    async submit(request) {
      const r = checked(request, false);
      return decide(await ask(subjects.submit(r.host), r), r.requestId, r.bdf ?? "");
    },

    async plan(request) {
      const r = checked(request, true);
      return decide(await ask(subjects.plan(r.host), r), r.requestId, r.bdf ?? "");
    },

    async reset(request, o = {}) {
      const r = checked(request, false);
      if (r.bdf === undefined) {
        throw new ClientError(
          "bad-request",
          "reset() follows one device: name its bdf (a selector is for submit())",
          { field: "bdf" },
        );
      }
      const bdf = r.bdf;
      const tracked = newTracked(r.requestId, r.host, bdf);
      const channel = new EventChannel<ClientEvent>();
      let settle: (o: Outcome | ClientError) => void = () => undefined;
      const settled = new Promise<Outcome | ClientError>((resolve) => {
        settle = resolve;
      });
      const ended = (
        kind: OutcomeKind,
        why: { reason: string | null; message: string | null },
        event: ClientEvent | null,
      ): Outcome => ({
        kind,
        requestId: r.requestId,
        host: r.host,
        bdf,
        ...why,
        event,
        phases: groupTimes(tracked),
      });
      // Subscribed (shared per host) before the request goes out: none of its events can be missed.
      const unfollow = await follower.follow(r.host, r.requestId, (item) => {
        // Only this device's events (the envelope agrees with its subject: checked by the follower).
        if (tracked.outcome !== null || item.event.bdf !== bdf) return;
        applyEvent(tracked, item);
        const ev = toEvent(item);
        channel.push(ev);
        if (tracked.outcome !== null)
          settle(ended(tracked.outcome as OutcomeKind, whyOf(ev.kind, ev.data), ev));
      });
      let decision: Decision;
      let reply: unknown;
      try {
        reply = await ask(subjects.submit(r.host), r);
        decision = decide(reply, r.requestId, bdf);
      } catch (e) {
        unfollow();
        throw e;
      }
      if (decision.kind === "refused") {
        settle(
          ended("refused", { reason: decision.refusal.reason, message: decision.refusal.message }, null),
        );
      } else if (decision.kind === "rejected") {
        settle(ended("rejected", { reason: "bad-request", message: decision.message }, null));
      } else if (decision.kind === "duplicate") {
        const stored = obj(obj(reply).outcome);
        if (typeof stored.outcome === "string") {
          // Submitted before and already ended: its stored outcome, no second reset.
          settle(ended(stored.outcome as OutcomeKind, whyOf(stored.outcome, stored), null));
        } else {
          // Still running, or ended where this coordinator did not see it (another one, before a restart): the
          // device's stored outcome events say which; the live subscription covers what comes from now on.
          void pastOutcome(r.host, bdf, r.requestId)
            .then((past) => {
              if (past && tracked.outcome === null) {
                tracked.outcome = past.kind;
                settle(ended(past.kind as OutcomeKind, whyOf(past.kind, past.data), toEventStored(past)));
              }
            })
            .catch(() => undefined);
        }
      }
      const onAbort = () =>
        settle(new ClientError("aborted", `stopped waiting for ${r.requestId} (the reset goes on)`));
      if (o.signal?.aborted) onAbort();
      o.signal?.addEventListener("abort", onAbort, { once: true });
      const outcome = settled.then((x) => {
        o.signal?.removeEventListener("abort", onAbort);
        unfollow();
        channel.close();
        if (x instanceof ClientError) throw x;
        return x;
      });
      outcome.catch(() => undefined);
      return { requestId: r.requestId, host: r.host, bdf, decision, events: channel, outcome };
    },

    watch(w = {}) {
      const start: EventStart =
        w.since === undefined
          ? { from: "new" }
          : typeof w.since === "number"
            ? { from: "seq", seq: w.since }
            : { from: "time", time: w.since };
      const kinds = w.kinds ? new Set(w.kinds) : null;
      const filter = { ...(w.host ? { host: w.host } : {}), ...(w.bdf ? { bdf: w.bdf } : {}) };
      return {
        async *[Symbol.asyncIterator]() {
          const feed = await open(filter, start);
          const onAbort = () => feed.stop();
          w.signal?.addEventListener("abort", onAbort, { once: true });
          try {
            for await (const item of feed) {
              if (kinds && !kinds.has(item.event.kind)) continue;
              yield toEvent(item);
            }
          } finally {
            w.signal?.removeEventListener("abort", onAbort);
            feed.stop();
          }
        },
      };
    },

    async status(s = {}) {
      return obj(await ask(subjects.status, s.host ? { host: s.host } : {}));
    },

    async image(host, bdf, i = {}) {
      const body = parsedOr(ImageRequest, { host, bdf }, "image");
      let reply: unknown;
      try {
        reply = await ask(subjects.image, body);
      } catch (e) {
        // A function never saved: no image, not an error.
        if (e instanceof ClientError && e.kind === "bad-request" && /no image stored/.test(e.message))
          return null;
        throw e;
      }
      if (reply === null || reply === undefined) return null;
      if (!i.verified) return obj(reply);
      const good = obj(reply).lastKnownGood;
      return good && typeof good === "object" ? (good as Json) : null;
    },

    async release(request) {
      return obj(await ask(subjects.release, parsedOr(ReleaseRequest, request, "release")));
    },

    async breakerClose(request) {
      const reply = await ask(subjects.breaker, parsedOr(BreakerResetRequest, request, "breaker"));
      const r = BreakerResult.safeParse(reply);
      if (!r.success) {
        throw new ClientError(
          "remote",
          `the coordinator's reply on ${subjects.breaker} is not a breaker state`,
          {
            subject: subjects.breaker,
            remoteKind: "decode",
          },
        );
      }
      return r.data;
    },

    async close() {
      follower.close();
      if (opts.ownsConnection) await nc.close().catch(() => undefined);
    },
  };
}

/** `body` as `schema` reads it; else "bad-request" naming the first bad field (nothing is sent). */
function parsedOr<S extends z.ZodType>(schema: S, body: unknown, what: string): z.output<S> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue?.path.map(String).join(".") || "request";
  throw new ClientError("bad-request", `bad ${what} request: ${field}: ${issue?.message}`, { field });
}

/** The envelope typed by the contract, or null (unknown kind, or data that does not match). */
function typedOf(coordinator: boolean, env: EventEnvelope): CoordinatorEvent | AgentEvent | null {
  try {
    return coordinator ? coordinatorEventOf(env) : agentEventOf(env);
  } catch {
    return null;
  }
}

const str = (v: unknown): string | null => (typeof v === "string" && v.length > 0 ? v : null);

/** The reason code and sentence of an outcome, from its event's data (or a stored outcome). */
function whyOf(kind: string, data: Json): { reason: string | null; message: string | null } {
  const refusal = obj(data.refusal);
  const error = obj(data.error);
  switch (kind) {
    case "refused":
      return {
        reason: str(refusal.reason) ?? str(data.reason),
        message: str(refusal.message) ?? str(data.message),
      };
    case "failed":
      return { reason: str(error.kind), message: str(error.message) ?? str(data.message) };
    case "quarantined":
      return { reason: "quarantined", message: str(data.reason) ?? str(error.message) ?? str(data.message) };
    default:
      return { reason: null, message: null };
  }
}

/** An async iterable fed by push(): what reset() hands out as `events` (one reader). */
class EventChannel<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiting: ((r: IteratorResult<T>) => void) | null = null;
  private closed = false;
  push(item: T): void {
    if (this.closed) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w({ value: item, done: false });
    } else this.items.push(item);
  }
  close(): void {
    this.closed = true;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w({ value: undefined, done: true });
    }
  }
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const item = this.items.shift();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.waiting = resolve;
        });
      },
    };
  }
}
