// Request intake: reset requests from the JetStream stream CXLRC_REQUESTS (durable pull consumer on
// cxlrc.req.reset.*, shared by every coordinator), and the request/reply control endpoints cxlrc.ctl.*.
//
// A stream message is acknowledged once its device actor has planned or refused it and that decision is in
// the stored snapshot; a message that is not a valid request (not JSON, a bad field, a body naming another
// host than its subject) is terminated with a plain +TERM (nats-server 2.9.10 ignores "+TERM <reason>" and
// redelivers it for ever) and announced once by a "request.rejected" event naming the problem. Fleet
// controllers publish with Nats-Msg-Id = requestId, so a re-sent request inside the stream's duplicate window
// is dropped by JetStream; one redelivered after a coordinator restart is recognised by its device (request
// ids are stored with the actor).
//
// Request/reply (queue group "cxlrc-coordinator": one coordinator answers):
// - cxlrc.ctl.plan.<host>   a dry run: the plan or the refusal, from a fresh probe; touches nothing.
// - cxlrc.ctl.submit.<host> a real request: written to the stream (same dedup), answered with the decision of
//                     the coordinator that takes it (plan, refusal, rejection, or "waiting" for a host slot),
//                     read from the event stream, so it works whichever coordinator consumes it.
// - cxlrc.ctl.status, .release, .image, .breaker: fleet view, operator release (optionally restoring the
//                     device from its last known good image first), the images of a function (last saved and
//                     last known good), breaker close.
// - cxlrc.ctl.events  stored events replayed in batches (event-replay.ts): readers have no JetStream API.
// plan and submit name the host in their subject (so the server can scope a controller to its hosts); the body
// must name the same host. Every control message is first checked for its reply subject: an answer goes only
// to a caller's inbox (_INBOX.… or the server's _R_.… rewrite), never to a $JS.API or $KV subject or anything
// else a sender chose; such a message gets no answer at all, a log line and a metric. Then it is rate-limited
// per caller (the authenticated principal the server names, shared/bus/trust.ts callerOf) and size-checked
// before it is decoded, then schema-checked; a refusal or bad input gets an error reply naming the limit or
// the field.
import { setMaxListeners } from "node:events";
import {
  AckPolicy,
  type ConsumerMessages,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { type Msg, type NatsConnection, nanos, type Subscription } from "@nats-io/transport-node";
import type { ResetRequest } from "../../machines/facts.ts";
import type { Plan, Refusal } from "../../machines/policy/types.ts";
import {
  decodeJson,
  decodeWith,
  EventEnvelope,
  encodeJson,
  errorToBody,
  formatZodIssues,
} from "../../shared/bus/codec.ts";
import { RateLimiter, rateLimitedError } from "../../shared/bus/rate-limit.ts";
import {
  BreakerResetRequest,
  EventsRequest,
  ImageRequest,
  ReleaseRequest,
  ResetRequestMessage,
  StatusRequest,
} from "../../shared/bus/requests.ts";
import { bdfToken, HOST_RE, hostOfSubject, STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { callerOf, checkEventSubject, isCallerInbox, stripControl } from "../../shared/bus/trust.ts";
import { CxlrcError, describeError, isCxlrcError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { backoffDelay } from "../../shared/retry.ts";
import { waitAtMost } from "../../shared/wait.ts";
import { CONTROL_LIMITS_DEFAULT, type ControlLimits } from "./config.ts";
import type { DeviceActors } from "./device-actors.ts";
import { readEventBatch } from "./event-replay.ts";
import { EVENT, type EventPublisher } from "./events.ts";
import type { FleetStore } from "./fleet-state.ts";
import type { InventoryCache } from "./inventory.ts";
import type { CoordinatorMetrics } from "./metrics.ts";
import type { Outcomes } from "./outcomes.ts";
import type { CoordinatorStore, ImageRecord, Stored, VerifiedImageRecord } from "./store.ts";

/** Host token of events about messages that name no valid host ('_' never appears in a DNS host name). */
export const NO_HOST = "_coordinator";
/**
 * The durable request consumer (filter cxlrc.req.reset.*). Named anew for the host-scoped request subjects:
 * nats-server 2.9 cannot change a durable's filter, so the one of the bare cxlrc.req.reset is left behind
 * (LEGACY_CONSUMER_NAME, deleted at start).
 */
export const CONSUMER_NAME = "cxlrc-intake";
export const LEGACY_CONSUMER_NAME = "cxlrc-coordinator";
export const QUEUE_GROUP = "cxlrc-coordinator";

export interface IntakeOptions {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  actors: DeviceActors;
  store: CoordinatorStore;
  fleet: FleetStore;
  events: EventPublisher;
  outcomes: Outcomes;
  inventory: InventoryCache;
  log: Logger;
  now: () => number;
  /** Status of the whole coordinator (service.ts), optionally of one host's devices. */
  status: (host?: string) => Promise<unknown>;
  metrics?: CoordinatorMetrics;
  /** Size and rate limits of the control endpoints. Default CONTROL_LIMITS_DEFAULT. */
  control?: ControlLimits;
  /** Redelivery after this long without an ack (waiting requests send progress). Default 30 s. */
  ackWaitMs?: number;
  maxDeliver?: number;
  /** submit: how long to wait for the decision before answering "queued". Default 10 s. */
  submitWaitMs?: number;
}

export interface Intake {
  stop(): Promise<void>;
}

type Target = { request: ResetRequest };

/** Answer a control message; only ever on a caller's inbox (serve() refuses the rest before any work). */
function reply(msg: Msg, body: unknown): void {
  if (isCallerInbox(msg.reply)) msg.respond(encodeJson(body));
}
const ok = (result: unknown) => ({ ok: true, result });
const fail = (e: unknown) => ({ ok: false, error: errorToBody(e) });

/** Every device the message names, as the lifecycle's ResetRequest (selectors resolved by inventory). */
export async function resolveTargets(m: ResetRequestMessage, inventory: InventoryCache): Promise<Target[]> {
  let inv: Awaited<ReturnType<InventoryCache["get"]>>;
  try {
    inv = await inventory.get(m.host);
  } catch (e) {
    if (isCxlrcError(e) && e.details.reason === "no-responders") {
      throw new CxlrcError(
        "bad-input",
        `unknown host "${m.host}": no agent answers on ${subjects.agent(m.host, "inventory")}`,
        {
          fields: ["host"],
          host: m.host,
        },
      );
    }
    throw e;
  }
  const base = {
    host: m.host,
    scope: m.scope,
    allowEscalation: m.allowEscalation,
    memClear: m.memClear,
    reason: m.reason,
    dryRun: m.dryRun,
    ...(m.deadline ? { deadline: m.deadline } : {}),
    ...(m.method ? { method: m.method } : {}),
  };
  // SBR siblings join the plan only when the request names every one of them (never silently more).
  const withSiblings = (siblings: string[]) => {
    const includeSiblings =
      (m.siblings ?? []).length > 0 && siblings.every((s) => (m.siblings ?? []).includes(s));
    return includeSiblings ? { includeSiblings: true } : {};
  };
  if (m.bdf) {
    const dev = inv.devices.find((d) => d.bdf === m.bdf || d.functions.includes(m.bdf!));
    if (!dev) {
      throw new CxlrcError("bad-input", `no device ${m.bdf} on host ${m.host}`, {
        fields: ["bdf"],
        bdf: m.bdf,
      });
    }
    return [{ request: { ...base, requestId: m.requestId, bdf: m.bdf, ...withSiblings(dev.siblings) } }];
  }
  const sel = m.deviceSelector!;
  const chosen = inv.devices.filter(
    (d) =>
      d.cxl &&
      (sel.vendorId === undefined || d.vendorId === sel.vendorId) &&
      (sel.deviceId === undefined || d.deviceId === sel.deviceId),
  );
  if (sel.serial !== undefined) {
    throw new CxlrcError(
      "bad-input",
      "deviceSelector.serial is not supported by the inventory yet; name the bdf",
      {
        fields: ["deviceSelector.serial"],
      },
    );
  }
  if (chosen.length === 0) {
    throw new CxlrcError("bad-input", `deviceSelector matches no CXL device on host ${m.host}`, {
      fields: ["deviceSelector"],
    });
  }
  return chosen.map((d) => ({
    request: {
      ...base,
      requestId: `${m.requestId}@${bdfToken(d.bdf)}`,
      bdf: d.bdf,
      ...withSiblings(d.siblings),
    },
  }));
}

/**
 * The image endpoint's answer: the last saved image at the top level (as before: record fields, revision,
 * image), `verified` saying whether that very image is the last known good one, and `lastKnownGood`: the
 * last image a reset verified on the device (null when none was ever verified).
 */
export function imageReply(
  host: string,
  bdf: string,
  latest: Stored<ImageRecord> | null,
  good: Stored<VerifiedImageRecord> | null,
): Record<string, unknown> {
  const goodImage = good?.value.images[bdf];
  const lastKnownGood =
    good && goodImage !== undefined
      ? {
          revision: good.revision,
          savedAt: good.value.savedAt,
          requestId: good.value.requestId,
          opId: good.value.opId,
          verified: good.value.verified,
          image: goodImage,
        }
      : null;
  const image = latest?.value.images[bdf];
  if (!latest || image === undefined) {
    if (!lastKnownGood) {
      throw new CxlrcError("bad-input", `no image stored for ${bdf} on host ${host}`, { fields: ["bdf"] });
    }
    const { images: _all, ...meta } = good!.value;
    return { ...meta, bdf, revision: good!.revision, image: goodImage, verified: true, lastKnownGood };
  }
  const { images: _all, ...meta } = latest.value;
  const verified = lastKnownGood !== null && lastKnownGood.opId === latest.value.opId;
  return { ...meta, bdf, revision: latest.revision, image, verified, lastKnownGood };
}

/** A best-effort look at a message that failed validation: its requestId and host, when they are usable. */
function salvage(raw: unknown): { requestId: string | null; host: string } {
  const o = raw && typeof raw === "object" ? (raw as Record<string, unknown>) : {};
  const requestId =
    typeof o.requestId === "string" && o.requestId.length > 0 && o.requestId.length <= 128
      ? o.requestId
      : null;
  const host = typeof o.host === "string" && HOST_RE.test(o.host) ? o.host : NO_HOST;
  return { requestId, host };
}

export async function startIntake(o: IntakeOptions): Promise<Intake> {
  const ackWaitMs = o.ackWaitMs ?? 30_000;
  const maxDeliver = o.maxDeliver ?? 20;
  /**
   * Tried again after a growing pause: a bus fail-over (4-6 s, longer for a restarted node) is waited out.
   * Equal jitter: never under half the schedule, so the deliveries (maxDeliver) outlast a fail-over.
   */
  const retryDelay = (m: JsMsg) =>
    Math.round(backoffDelay(m.info.deliveryCount - 1, { baseMs: 500, maxMs: 5000, jitter: "equal" }));
  const config = {
    durable_name: CONSUMER_NAME,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: subjects.requestsOfAnyHost,
    ack_wait: nanos(ackWaitMs),
    // Unbounded on the server: a message delivered to a coordinator that then died or froze counts as a
    // delivery, and a server-side limit would drop a request without a word. The coordinator gives up itself
    // (maxDeliver), with a request.rejected event naming why.
    max_deliver: -1,
    max_ack_pending: 10_000,
  };
  // The durable of the bare cxlrc.req.reset subject (before requests named their host) would keep nothing but
  // space: nothing is published there any more.
  await o.jsm.consumers.delete(STREAMS.requests.name, LEGACY_CONSUMER_NAME).then(
    () => o.log.info({ consumer: LEGACY_CONSUMER_NAME }, "removed the request consumer of cxlrc.req.reset"),
    () => undefined,
  );
  try {
    await o.jsm.consumers.add(STREAMS.requests.name, config);
  } catch (e) {
    // Exists with other settings: bring it in line.
    o.log.warn({ err: describeError(e) }, "request consumer exists with other settings; updating it");
    await o.jsm.consumers.update(STREAMS.requests.name, CONSUMER_NAME, {
      ack_wait: config.ack_wait,
      max_deliver: config.max_deliver,
      max_ack_pending: config.max_ack_pending,
    });
  }
  const consumer = await o.js.consumers.get(STREAMS.requests.name, CONSUMER_NAME);
  const inFlight = new Set<Promise<void>>();
  let stopped = false;
  /** Aborts requests still waiting for a host slot when the coordinator stops (they are redelivered). */
  const stopping = new AbortController();
  setMaxListeners(0, stopping.signal); // one listener per request waiting for a slot

  /** Rejections logged since the last line (a flood of bad requests is summed up, not logged one by one). */
  let rejectLog = { atMs: 0, suppressed: 0 };
  const reject = (m: JsMsg | null, raw: unknown, err: unknown, hostOverride?: string) => {
    const salvaged = salvage(raw);
    const requestId = salvaged.requestId;
    const host = hostOverride ?? salvaged.host;
    const body = errorToBody(err);
    const t = performance.now();
    if (t - rejectLog.atMs >= 1000) {
      o.log.warn(
        {
          requestId,
          host,
          err: body.message,
          ...(rejectLog.suppressed > 0 ? { alsoRejected: rejectLog.suppressed } : {}),
        },
        "request rejected",
      );
      rejectLog = { atMs: t, suppressed: 0 };
    } else rejectLog.suppressed++;
    // A plain +TERM: nats-server 2.9.10 does not honour "+TERM <reason>" (it redelivers such a message every
    // ack_wait, for ever). The reason travels in the event instead.
    m?.term();
    // One rejection per request on the events stream however often it is handled: the request's outcome id,
    // or for a message without a usable request id one derived from its stream sequence ('#' never appears
    // in a request id).
    const id = requestId ? o.store.outcomeId(requestId) : m ? o.store.outcomeId(`#${m.seq}`) : undefined;
    void o.events
      .publish({
        host,
        bdf: null,
        kind: EVENT.requestRejected,
        ...(requestId ? { requestId } : {}),
        ...(id ? { id } : {}),
        data: { error: body, ...(m ? { streamSeq: m.seq, subject: m.subject } : {}) },
      })
      .then(() => {
        if (requestId) {
          o.outcomes.record({
            requestId,
            host: host === NO_HOST ? null : host,
            bdf: null,
            outcome: "rejected",
            message: body.message,
            atMs: o.now(),
          });
        }
      });
  };

  const publishDryRun = async (t: ResetRequest, r: Plan | Refusal) => {
    await o.events.publish({
      host: t.host,
      bdf: t.bdf,
      kind: r.kind === "plan" ? EVENT.plan : EVENT.refused,
      requestId: t.requestId,
      // A dry run answered again (its acknowledgement lost) is still one answer on the stream.
      id: o.store.outcomeId(t.requestId),
      data: r.kind === "plan" ? { plan: r, dryRun: true } : { outcome: "refused", refusal: r, dryRun: true },
    });
    o.outcomes.record({
      requestId: t.requestId,
      host: t.host,
      bdf: t.bdf,
      outcome: r.kind === "plan" ? "planned" : "refused",
      ...(r.kind === "plan" ? { plan: r } : { refusal: r, message: r.message }),
      atMs: o.now(),
    });
  };

  /** A host an agent has served on this bus (its agent.started is in the events stream, or its devices are stored). */
  const knownHost = async (host: string): Promise<boolean> => {
    if (await o.events.last({ host, bdf: null }, "agent.started", "agent").catch(() => null)) return true;
    const keys = await o.store.listActorKeys().catch(() => [] as string[]);
    return keys.some((k) => k.startsWith(`${host}.`));
  };

  const handle = async (m: JsMsg) => {
    const tIn = performance.now();
    const queuedMs = Date.now() - m.info.timestampNanos / 1e6;
    let raw: unknown;
    let req: ResetRequestMessage;
    const subjectHost = hostOfSubject(m.subject);
    try {
      if (subjectHost === null) {
        throw new CxlrcError(
          "bad-input",
          `reset request on ${JSON.stringify(m.subject)}: the subject names no valid host (cxlrc.req.reset.<host>)`,
          { fields: ["subject"], subject: m.subject },
        );
      }
      raw = decodeJson(m);
      const r = ResetRequestMessage.safeParse(raw);
      if (!r.success)
        throw new CxlrcError("bad-input", `reset request: ${formatZodIssues(r.error)}`, {
          fields: r.error.issues.map((i) => i.path.map(String).join(".")),
        });
      req = r.data;
      if (req.host !== subjectHost) {
        throw new CxlrcError(
          "bad-input",
          `reset request names host "${req.host}" but was published on host "${subjectHost}"'s subject ${m.subject}`,
          { fields: ["host"], host: req.host, subjectHost },
        );
      }
    } catch (e) {
      // Announced under the subject's host (the one the publisher may speak for), not the body's.
      reject(m, raw, e, subjectHost ?? NO_HOST);
      return;
    }
    let targets: Target[];
    try {
      targets = await resolveTargets(req, o.inventory);
    } catch (e) {
      // An agent being restarted looks like an unknown host: a host known to this bus is tried again (bounded
      // by maxDeliver) instead of rejecting a valid request for good.
      const host = isCxlrcError(e) && e.kind === "bad-input" ? e.details.host : undefined;
      if (typeof host === "string" && m.info.deliveryCount < maxDeliver && (await knownHost(host))) {
        o.log.warn({ requestId: req.requestId, host }, "host's agent not answering; will retry");
        m.nak(Math.max(2000, retryDelay(m)));
        return;
      }
      if (isCxlrcError(e) && e.kind === "bad-input") reject(m, raw, e);
      else if (m.info.deliveryCount >= maxDeliver) reject(m, raw, e);
      else {
        o.log.warn({ requestId: req.requestId, err: describeError(e) }, "request not resolved; will retry");
        m.nak(retryDelay(m));
      }
      return;
    }
    if (o.log.isLevelEnabled("debug")) {
      // Where a request's time went before its device's chain: in the stream, then resolving its targets.
      const ms = (x: number) => Math.round(x * 100) / 100;
      o.log.debug(
        {
          requestId: req.requestId,
          host: req.host,
          streamSeq: m.seq,
          queuedMs: ms(queuedMs),
          resolveMs: ms(performance.now() - tIn),
        },
        "request taken",
      );
    }
    if (req.dryRun) {
      for (const t of targets) {
        try {
          await publishDryRun(t.request, await o.actors.dryRun(t.request));
        } catch (e) {
          reject(null, { requestId: t.request.requestId, host: t.request.host }, e);
        }
      }
      m.ack();
      return;
    }
    // Progress while a request waits for a host slot, so it is not redelivered meanwhile.
    // A request queued for a host slot is kept as long as it waits. Anything else stuck here (a device chain
    // waiting on a store that does not answer) is let go after a while: redelivered to another coordinator,
    // which the stored requests and decisions keep from acting twice.
    const since = performance.now();
    let queued = false;
    const keepAlive = setInterval(
      () => {
        if (queued || performance.now() - since < Math.max(30_000, 4 * ackWaitMs)) m.working();
      },
      Math.max(1000, ackWaitMs / 3),
    );
    try {
      const decisions = await Promise.all(
        targets.map((t) =>
          o.actors.dispatch(t.request, {
            signal: stopping.signal,
            onWaiting: () => {
              queued = true;
            },
          }),
        ),
      );
      decisions.forEach((d, i) => {
        if (d.kind !== "duplicate") return;
        const t = targets[i]!.request;
        void o.events.publish({
          host: t.host,
          bdf: t.bdf,
          kind: EVENT.requestDuplicate,
          requestId: t.requestId,
          data: { streamSeq: m.seq, redelivered: m.redelivered },
        });
      });
      m.ack();
    } catch (e) {
      if (stopped) return; // redelivered to whoever runs next
      if (m.info.deliveryCount >= maxDeliver) {
        reject(
          m,
          raw,
          new CxlrcError(
            "internal",
            `request not dispatched after ${maxDeliver} deliveries: ${describeError(e)}`,
          ),
        );
        return;
      }
      o.log.warn(
        { requestId: req.requestId, delivery: m.info.deliveryCount, err: describeError(e) },
        "request not dispatched; will retry",
      );
      m.nak(retryDelay(m));
    } finally {
      clearInterval(keepAlive);
    }
  };

  // Short pull requests: a coordinator that stops answering (SIGSTOP, a partition) keeps none open for long, so
  // new requests go to the live ones within seconds, not after the default 30 s.
  const messages: ConsumerMessages = await consumer.consume({ max_messages: 512, expires: 5000 });
  const loop = (async () => {
    for await (const m of messages) {
      if (stopped) break;
      const p = handle(m).catch((e) => o.log.error({ err: describeError(e) }, "request handler failed"));
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    }
  })();

  // ---------------------------------------------------------------------------------------------------
  // Control endpoints

  const subs: Subscription[] = [];
  const limits = o.control ?? CONTROL_LIMITS_DEFAULT;
  const limiter = new RateLimiter({
    perRequesterPerSec: limits.perRequesterPerSec,
    perRequesterBurst: limits.perRequesterBurst,
    globalPerSec: limits.globalPerSec,
    globalBurst: limits.globalBurst,
  });
  /** Requesters refused since their last allowed request (one log line per episode, not per message). */
  const limited = new Set<string>();
  /** Callers refused for their reply subject: when each was last logged, and how many since (bounded). */
  const refusedLog = new Map<string, { atMs: number; suppressed: number }>();
  /**
   * The reply subject must be the caller's inbox: anything else (a $JS.API or $KV subject, another service's
   * request subject) would make this coordinator's answer an action of its own. Refused without an answer.
   */
  const replyAllowed = (subject: string, msg: Msg): boolean => {
    if (isCallerInbox(msg.reply)) return true;
    o.metrics?.controlRefused.inc({ subject, reason: "reply-subject" });
    const caller = callerOf(msg);
    const t = performance.now();
    const seen = refusedLog.get(caller);
    if (seen && t - seen.atMs < 1000) {
      seen.suppressed++;
      return false;
    }
    if (refusedLog.size >= 10_000) refusedLog.clear();
    refusedLog.set(caller, { atMs: t, suppressed: 0 });
    o.log.warn(
      {
        subject: msg.subject,
        reply: typeof msg.reply === "string" ? stripControl(String(msg.reply).slice(0, 300)) : null,
        caller,
        ...(seen && seen.suppressed > 0 ? { alsoRefused: seen.suppressed } : {}),
      },
      "control request refused: its reply subject is not a caller's inbox; not answered",
    );
    return false;
  };
  /** Rate limit, then size, both before a byte is decoded: true when the message may be handled. */
  const admit = (subject: string, msg: Msg): boolean => {
    const requester = callerOf(msg);
    const d = limiter.take(requester);
    if (!d.ok) {
      o.metrics?.controlRefused.inc({ subject, reason: "rate-limited" });
      if (!limited.has(requester)) {
        if (limited.size >= 10_000) limited.clear(); // bounded like the limiter's own table
        limited.add(requester);
        o.log.warn(
          { subject, requester, scope: d.scope, retryAfterMs: d.retryAfterMs },
          "control requests rate-limited",
        );
      }
      const e = rateLimitedError(subject, requester, d);
      reply(msg, fail(new CxlrcError("rate-limited", e.message, e.details)));
      return false;
    }
    limited.delete(requester);
    if (msg.data.length > limits.maxBytes) {
      o.metrics?.controlRefused.inc({ subject, reason: "too-large" });
      o.log.warn(
        { subject, requester, bytes: msg.data.length, limit: limits.maxBytes },
        "control message too large",
      );
      reply(
        msg,
        fail(
          new CxlrcError(
            "bad-input",
            `${subject}: message of ${msg.data.length} bytes is over the limit of ${limits.maxBytes} bytes; not read`,
            { reason: "too-large", bytes: msg.data.length, limit: limits.maxBytes },
          ),
        ),
      );
      return false;
    }
    return true;
  };
  const serve = (subject: string, fn: (msg: Msg) => Promise<unknown>) => {
    subs.push(
      o.nc.subscribe(subject, {
        queue: QUEUE_GROUP,
        callback: (err, msg) => {
          if (err) {
            o.log.error({ subject, err: err.message }, "control subscription failed");
            return;
          }
          if (!replyAllowed(subject, msg) || !admit(subject, msg)) return;
          fn(msg)
            .then((result) => reply(msg, ok(result)))
            .catch((e) => {
              if (!isCxlrcError(e) || e.kind !== "bad-input")
                o.log.warn({ subject, err: describeError(e) }, "control request failed");
              reply(msg, fail(e));
            });
        },
      }),
    );
  };

  /** plan and submit: the body names the host of the subject it came on (a controller's scope is its subjects). */
  const sameHost = (msg: Msg, req: { host: string }, what: string) => {
    const subjectHost = hostOfSubject(msg.subject);
    if (subjectHost !== req.host) {
      throw new CxlrcError(
        "bad-input",
        `${what} names host "${req.host}" but was sent on ${subjectHost === null ? "no host's subject" : `host "${subjectHost}"'s subject`} ${msg.subject}`,
        { fields: ["host"], host: req.host, subjectHost },
      );
    }
  };

  serve(subjects.planAll, async (msg) => {
    const req = decodeWith(msg, ResetRequestMessage, "plan request");
    sameHost(msg, req, "plan request");
    const targets = await resolveTargets({ ...req, dryRun: true }, o.inventory);
    const decisions = [];
    for (const t of targets) {
      const r = await o.actors.dryRun({ ...t.request, dryRun: true });
      decisions.push(
        r.kind === "plan" ? { bdf: t.request.bdf, plan: r } : { bdf: t.request.bdf, refusal: r },
      );
    }
    return { requestId: req.requestId, decisions };
  });

  serve(subjects.submitAll, async (msg) => {
    const req = decodeWith(msg, ResetRequestMessage, "reset request");
    sameHost(msg, req, "reset request");
    const targets = await resolveTargets(req, o.inventory);
    const ids = new Set(targets.map((t) => t.request.requestId));
    const decided = new Map<string, EventEnvelope>();
    const kinds = new Set<string>([
      EVENT.plan,
      EVENT.refused,
      EVENT.requestRejected,
      EVENT.requestDuplicate,
      "request.waiting",
    ]);
    let done: () => void = () => undefined;
    const allDecided = new Promise<void>((r) => {
      done = r;
    });
    const sub = o.nc.subscribe(subjects.eventsOfHost(req.host), {
      callback: (_e, m) => {
        try {
          const parsed = EventEnvelope.safeParse(decodeJson(m));
          if (!parsed.success) return;
          const env = parsed.data;
          if (!env.requestId || !ids.has(env.requestId) || !kinds.has(env.kind)) return;
          // A decision is believed only from the coordinators' subject space (cxlrc.evt.>, where no agent may
          // publish) and from the subject it belongs on (its host, its device, its kind).
          const refused = checkEventSubject(m.subject, env, "coordinator");
          if (refused !== null) {
            o.log.warn(
              { subject: m.subject, requestId: env.requestId, why: refused },
              "decision event dropped",
            );
            return;
          }
          if (decided.has(env.requestId) && env.kind === "request.waiting") return;
          decided.set(env.requestId, env);
          if (decided.size === ids.size) done();
        } catch {
          // not an event envelope: not ours to judge here
        }
      },
    });
    try {
      await o.nc.flush();
      const ack = await o.js.publish(subjects.request(req.host), msg.data, { msgID: req.requestId });
      if (ack.duplicate) {
        return {
          requestId: req.requestId,
          duplicate: true,
          streamSeq: ack.seq,
          outcome: o.outcomes.get(req.requestId) ?? null,
        };
      }
      const allIn = await waitAtMost(allDecided, o.submitWaitMs ?? 10_000);
      return {
        requestId: req.requestId,
        streamSeq: ack.seq,
        queued: !allIn,
        decisions: targets.map((t) => {
          const env = decided.get(t.request.requestId);
          return {
            bdf: t.request.bdf,
            requestId: t.request.requestId,
            kind: env?.kind ?? "queued",
            data: env?.data ?? {},
          };
        }),
      };
    } finally {
      sub.unsubscribe();
    }
  });

  serve(subjects.status, async (msg) => {
    const req = msg.data.length > 0 ? decodeWith(msg, StatusRequest, "status request") : {};
    return o.status(req.host);
  });

  serve(subjects.release, async (msg) => {
    const req = decodeWith(msg, ReleaseRequest, "release request");
    const r = await o.actors.releaseDevice(req.host, req.bdf, {
      operator: req.operator,
      reason: req.reason,
      restore: req.restore,
    });
    return { host: req.host, bdf: req.bdf, state: r.state, ...(req.restore ? { restore: r.restore } : {}) };
  });

  serve(subjects.image, async (msg) => {
    const req = decodeWith(msg, ImageRequest, "image request");
    const [latest, good] = await Promise.all([
      o.store.getImage(req.host, req.bdf),
      o.store.getVerifiedImage(req.host, req.bdf),
    ]);
    return imageReply(req.host, req.bdf, latest, good);
  });

  serve(subjects.events, async (msg) => {
    const req = decodeWith(msg, EventsRequest, "events request");
    return readEventBatch({ js: o.js, jsm: o.jsm, nc: o.nc, log: o.log }, req);
  });

  serve(subjects.breaker, async (msg) => {
    const req = decodeWith(msg, BreakerResetRequest, "breaker request");
    const state = await o.fleet.closeBreaker(req.operator, o.now());
    void o.events.publish({
      host: NO_HOST,
      bdf: null,
      kind: "breaker.closed",
      data: { operator: req.operator, reason: req.reason },
    });
    return { breaker: state.breaker };
  });

  return {
    async stop() {
      stopped = true;
      stopping.abort();
      for (const s of subs) s.unsubscribe();
      await messages.close().catch(() => undefined);
      await loop.catch(() => undefined);
      // Give in-flight requests up to 5 s to settle (the bound's timer does not keep a stopped process up).
      await waitAtMost(Promise.all([...inFlight]), 5000);
    },
  };
}
