// The coordinator's line to the host agents: every agent operation it runs goes through call(), and the
// agents' operation events (cxlrc.agt.<host>.<device>.op.started|completed|failed) are believed only for the
// operations this coordinator has issued to that host and that are still outstanding.
//
// Why events at all: the agent publishes op.completed (with the result when it is small) and op.failed before
// it replies, so an outstanding call settles on whichever arrives first; both say the same. That makes the
// events as consequential as the replies, so neither is believed blindly (defence in depth behind the
// server's permissions, shared/bus/permissions.ts):
// - an event must come on its own host's agent subject (cxlrc.agt.<host>.>, which the server lets only that
//   host's agent publish on), name that host and device and kind (checkEventSubject), and carry an operation
//   id this coordinator issued to that host and has not finished with; anything else is dropped with a log
//   line and counted, and changes nothing;
// - a reply must name the operation it answers (AgentReply.opId); a reply for another operation is refused.
// An operation id is "issued" from the moment a step starts (issue()) until it ends, and for the duration of
// each call.
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { type AgentResult, parseAgentResult } from "../../shared/bus/agent-contract.ts";
import { AgentReply, ErrorBody, type Fence } from "../../shared/bus/agent-messages.ts";
import { type AgentCallParams, requestJson } from "../../shared/bus/client.ts";
import { decodeJson, EventEnvelope, encodeJson, errorFromBody } from "../../shared/bus/codec.ts";
import { afterThisTurn } from "../../shared/bus/deadline-check.ts";
import { createReplyMux } from "../../shared/bus/reply-mux.ts";
import { AGENT_OPS, type AgentOp, deviceKey, PREFIX, subjects } from "../../shared/bus/subjects.ts";
import { checkEventSubject } from "../../shared/bus/trust.ts";
import { CxlrcError, describeError, isCxlrcError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { trimOldest } from "../../shared/remember.ts";
import { backoffDelay } from "../../shared/retry.ts";
import { notHeld } from "./leases.ts";

/** What a reply read after the call was settled (by its event) rejects with: nobody reads it. */
const SETTLED = new Error("the call has its answer");

/**
 * The agent operation events that can settle a call, of every host, in the agents' own subject space: only
 * the terminal ones (op.started, and each operation's own events, would cost a message each for nothing).
 */
export const AGENT_OP_EVENTS = [`${PREFIX}.agt.*.*.op.completed`, `${PREFIX}.agt.*.*.op.failed`] as const;

/** Why an agent event was not believed. */
export type DropReason =
  | "malformed" // not an event envelope, or not an agent's operation event
  | "subject-mismatch" // the envelope's host, device or kind is not the subject's
  | "other-host" // the operation was issued here, but to another host
  | "stale" // issued here earlier, finished since
  | "unknown" // never issued by this coordinator (a peer's, or forged)
  | "wrong-op"; // the operation id is outstanding, for another operation

export const DROP_REASONS: readonly DropReason[] = [
  "malformed",
  "subject-mismatch",
  "other-host",
  "stale",
  "unknown",
  "wrong-op",
];

/** A believed outcome; a result is already checked against the contract for `op` (agent-contract.ts). */
type Terminal = { op: AgentOp; ok: true; result: unknown } | { op: AgentOp; ok: false; error: CxlrcError };

interface Outstanding {
  refs: number;
  /** The operation a call sends under this id (null while only a step holds it). */
  op: AgentOp | null;
  /** A believed op.completed (with its result) or op.failed, kept until a call consumes it. */
  terminal: Terminal | null;
  waiters: Set<(t: Terminal) => void>;
}

export interface AgentLinkOptions {
  nc: NatsConnection;
  log: Logger;
  /** The device is driven by this coordinator (its lease is held here): a stray event about it is suspicious. */
  drivenHere?: (host: string, bdf: string | null) => boolean;
  /** Every dropped event, by reason (metrics). */
  onDrop?: (reason: DropReason) => void;
  /** An event came on `host`'s own subject and agrees with it: that host's agent is alive (metrics). */
  onHeard?: (host: string) => void;
  /** Finished operation ids remembered to tell "stale" from "unknown" (up to an eighth more). Default 4096. */
  recentCapacity?: number;
  /**
   * Fencing: the token of the lease `leaseKey` while this coordinator holds it, and whether the lease is
   * confirmed fresh right now. A device operation under a held lease carries the token, and is not (re)sent
   * once the lease is no longer fresh.
   */
  fence?: (leaseKey: string) => FenceGrant | null;
  /** An agent refused an operation under `leaseKey` with "stale-epoch": another coordinator owns it. */
  onStaleEpoch?: (leaseKey: string, err: CxlrcError) => void;
}

export interface FenceGrant {
  fence: Fence;
  /** Renewed within half the lease time (no I/O). */
  fresh(): boolean;
  /** Renew now if needed; false once the lease is lost (waits while the bus is away, up to the lease time). */
  confirm(): Promise<boolean>;
}

/** Operations about no device (or chaos's fault injection, or the agent's ping): never fenced. */
const UNFENCED: ReadonlySet<AgentOp> = new Set(["inventory", "fault", "ping"]);

/** How long a ping waits for its agent: a live one answers from its event loop in milliseconds. */
const PING_MS = 500;

export interface AgentLink {
  /**
   * Run one agent operation: resolves with its result from the reply, or from a believed op.completed event
   * carrying it; rejects with the agent's error (reply or believed op.failed), a timeout, or a refused reply.
   * Either way the result is checked against the contract: a reply whose result does not match rejects with
   * "decode" naming the op and the first bad field; such an event is dropped as malformed (the reply decides).
   */
  call<Op extends AgentOp>(
    host: string,
    op: Op,
    opId: string,
    params: AgentCallParams<Op>,
    opts: {
      timeoutMs: number;
      /** The lease the operation runs under (default: the lease of the params' device). */
      leaseKey?: string;
      /**
       * Nobody answered (no responders: the agent restarting) and the call will wait `ms` before sending again,
       * or no reply came and the agent answers no ping either (frozen) and the call has waited `ms` for it: the
       * time the caller grants for that (its step's grace: step-budget.ts extend), which does not count against
       * the call's own. Without it, or once it grants nothing, the absence counts as before.
       */
      absent?: (ms: number) => number;
    },
  ): Promise<AgentResult<Op>>;
  /** Hold `opId` as issued to `host` (a step, from its start); the returned function lets it go. */
  issue(host: string, opId: string): () => void;
  /** Is `opId` outstanding to `host`? */
  issued(host: string, opId: string): boolean;
  stats(): { believed: number; dropped: Record<DropReason, number> };
  /** Resolves once the subscription is registered with the server. */
  ready(): Promise<void>;
  stop(): void;
}

export function createAgentLink(o: AgentLinkOptions): AgentLink {
  /** opId → host → outstanding entry. */
  const outstanding = new Map<string, Map<string, Outstanding>>();
  /** `${host} ${opId}` of finished operations, oldest first (bounded). */
  const recent = new Map<string, true>();
  const recentCapacity = o.recentCapacity ?? 4096;
  const dropped = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  let believed = 0;

  const entry = (host: string, opId: string): Outstanding | undefined => outstanding.get(opId)?.get(host);

  const issue = (host: string, opId: string): (() => void) => {
    let byHost = outstanding.get(opId);
    if (!byHost) {
      byHost = new Map();
      outstanding.set(opId, byHost);
    }
    let e = byHost.get(host);
    if (!e) {
      e = { refs: 0, op: null, terminal: null, waiters: new Set() };
      byHost.set(host, e);
      recent.delete(`${host} ${opId}`);
    }
    e.refs++;
    const held = e;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      held.refs--;
      if (held.refs > 0) return;
      const m = outstanding.get(opId);
      if (m?.get(host) === held) {
        m.delete(host);
        if (m.size === 0) outstanding.delete(opId);
      }
      recent.set(`${host} ${opId}`, true);
      trimOldest(recent, recentCapacity);
    };
  };

  const drop = (reason: DropReason, subject: string, env: Partial<EventEnvelope>, why: string) => {
    dropped[reason]++;
    o.onDrop?.(reason);
    const fields = {
      subject,
      reason,
      why,
      host: env.host,
      bdf: env.bdf,
      kind: env.kind,
      opId: env.opId,
    };
    // A finished operation's late event is what a slow event stream looks like (the agent replies after a
    // bounded wait for its events); an operation never issued here is what a peer coordinator's look like,
    // unless the device is driven here (nobody else runs operations on it): then it is suspicious.
    const quiet =
      reason === "stale" ||
      (reason === "unknown" && !(typeof env.host === "string" && o.drivenHere?.(env.host, env.bdf ?? null)));
    if (quiet) o.log.debug(fields, "agent event dropped: not an outstanding operation of this coordinator");
    else o.log.warn(fields, "agent event dropped: not believed");
  };

  const onEvent = (subject: string, data: Uint8Array) => {
    let env: EventEnvelope;
    try {
      const parsed = EventEnvelope.safeParse(decodeJson(data));
      if (!parsed.success) throw new Error("not an event envelope");
      env = parsed.data;
    } catch (e) {
      drop("malformed", subject, {}, describeError(e));
      return;
    }
    if (env.source !== "agent" || env.opId === undefined) {
      drop("malformed", subject, env, "not an agent's operation event (source or opId missing)");
      return;
    }
    const opId = env.opId;
    const mismatch = checkEventSubject(subject, env, "agent");
    if (mismatch !== null) {
      drop("subject-mismatch", subject, env, mismatch);
      return;
    }
    o.onHeard?.(env.host);
    if (entry(env.host, opId) === undefined) {
      let reason: DropReason;
      if ((outstanding.get(opId)?.size ?? 0) > 0) reason = "other-host";
      else if (recent.has(`${env.host} ${opId}`)) reason = "stale";
      else reason = "unknown";
      drop(reason, subject, env, `operation ${opId} was not issued to host ${env.host}, or has finished`);
      return;
    }
    const e = entry(env.host, opId)!;
    const op = AGENT_OPS.find((x) => x === env.data.op) ?? null;
    if (op === null || (e.op !== null && e.op !== op)) {
      drop(
        "wrong-op",
        subject,
        env,
        `event for operation ${String(env.data.op)}, the call is ${String(e.op)}`,
      );
      return;
    }
    let terminal: Terminal | null = null;
    if (env.kind === "op.completed" && "result" in env.data) {
      try {
        terminal = { op, ok: true, result: parseAgentResult(op, subject, env.data.result) };
      } catch (err) {
        drop("malformed", subject, env, describeError(err));
        return;
      }
    } else if (env.kind === "op.failed") {
      const body = ErrorBody.safeParse(env.data.error);
      if (!body.success) {
        drop("malformed", subject, env, "op.failed without an error body");
        return;
      }
      terminal = { op, ok: false, error: errorFromBody(body.data, { subject }) };
    }
    believed++;
    if (!terminal || e.terminal) return;
    e.terminal = terminal;
    for (const w of e.waiters) w(terminal);
  };

  // Agent calls share one reply subscription (reply-mux.ts): no request object or stack trace per call.
  const mux = createReplyMux(o.nc);
  const subs: Subscription[] = AGENT_OP_EVENTS.map((subject) =>
    o.nc.subscribe(subject, {
      callback: (err, m) => {
        if (err) {
          o.log.error({ err: err.message }, "agent event subscription failed");
          return;
        }
        try {
          onEvent(m.subject, m.data);
        } catch (e) {
          o.log.error({ err: describeError(e), subject: m.subject }, "agent event not handled");
        }
      },
    }),
  );

  /** The outcome of a call of `op`: t.op is op, and t.result was checked for it when it was believed. */
  const unwrap = <Op extends AgentOp>(t: Terminal, _op: Op): AgentResult<Op> => {
    if (t.ok) return t.result as AgentResult<Op>;
    throw t.error;
  };

  /**
   * Does `host`'s agent read its requests? true: it answered a ping; false: no answer within `ms` (frozen: a
   * SIGSTOP, a paused VM, a cgroup freezer, its event loop blocked); null: nobody serves pings there (an agent
   * from before the ping, or none at all: that shows as no responders on the call itself).
   */
  let pings = 0;
  const answersPing = async (host: string, ms: number): Promise<boolean | null> => {
    try {
      const body = encodeJson({ opId: `ping-${(pings++).toString(36)}` });
      await mux.request(subjects.agent(host, "ping"), body, { timeoutMs: ms });
      return true;
    } catch (err) {
      return isCxlrcError(err) && err.kind === "timeout" ? false : null;
    }
  };

  /**
   * One request, sent again (same opId: the agent acts once and answers every copy) when a third of the
   * time passes without a reply, or a moment after nobody answered: a message lost with a NATS node that
   * died or froze, or an agent reconnecting, costs a third of the call time instead of the whole phase.
   * `settled`: the call has its answer (the agent's op.completed or op.failed event came first): nothing more is
   * sent. A copy sent after that could reach an agent restarted since, which no longer knows the operation id,
   * and would run the operation a second time (a second reset for one request).
   */
  const resend = async (
    host: string,
    subject: string,
    body: Record<string, unknown>,
    timeoutMs: number,
    grant: FenceGrant | null,
    settled: { readonly aborted: boolean },
    absent?: (ms: number) => number,
  ) => {
    // The call's time counts as its sends' do (reply-mux.ts): from the end of the turn its first send is made
    // in, when that send leaves; a long turn does not use the call's time up before anything was asked.
    let deadline = null as number | null; // set after the turn (a callback: not narrowed)
    const leftAt = (now: number) => (deadline ?? now + timeoutMs) - now;
    /** Time the caller's grace grants for the agent's absence (0: none), which moves the call's deadline too. */
    const grace = (ms: number): number => {
      const granted = absent && !settled.aborted ? absent(ms) : 0;
      if (granted > 0 && deadline !== null) deadline += granted;
      return granted;
    };
    const slice = Math.max(250, Math.floor(timeoutMs / 3));
    const notSent = (sends: number) =>
      new CxlrcError("in-progress", `${subject}: not sent again: the call already has its answer`, {
        subject,
        sends,
      });
    for (let sends = 1; ; sends++) {
      if (settled.aborted) throw notSent(sends - 1);
      if (grant && !grant.fresh()) {
        // Silent before the lease can expire: a holder whose renewals fail sends nothing more under it until
        // a renewal gets through (the wait is the bus's, not the agent's: it does not count against the
        // call), and never again once the lease is lost.
        const t0 = performance.now();
        if (!(await grant.confirm())) {
          throw notHeld(`${subject}: not sent: the lease of epoch ${grant.fence.epoch} is no longer held`, {
            subject,
            epoch: grant.fence.epoch,
            sends: sends - 1,
          });
        }
        if (deadline !== null) deadline += performance.now() - t0;
        if (settled.aborted) throw notSent(sends - 1);
      }
      const sentAt = performance.now();
      const left = Math.round(leftAt(sentAt));
      if (sends === 1) {
        afterThisTurn(() => {
          deadline ??= performance.now() + timeoutMs;
        });
      }
      try {
        return await requestJson(o.nc, subject, body, {
          timeoutMs: Math.max(1, Math.min(left, slice)),
          mux,
          // Settled by the agent's event meanwhile: the reply says the same (an image, for a save), unread.
          unread: () => settled.aborted,
        });
      } catch (err) {
        if (!isCxlrcError(err)) throw err;
        const nobody = err.details.reason === "no-responders";
        // No responders (the agent restarting): sent again soon, the wait growing to 50-100 ms, jittered so that
        // the calls waiting for one agent do not all resend at once.
        const pause = nobody ? backoffDelay(sends - 1, { baseMs: 25, maxMs: 100, jitter: "equal" }) : 0;
        if (nobody) {
          // Nobody has the request (the agent is away): the wait granted by the caller's grace and not taken
          // from the call's own time.
          const granted = grace(pause);
          if (granted > 0) {
            await new Promise((r) => setTimeout(r, granted));
            continue;
          }
        }
        if (err.kind === "timeout" && absent && !settled.aborted) {
          // No reply within the slice. An agent that does not answer a ping either is not reading its requests
          // (frozen): waited for within the caller's grace, as an absent one is, the time since this send granted
          // and the request sent again (the same opId: the agent acts once). One that answers is there and its
          // operation is slow: no grace, the call's own time counts.
          const frozen = (await answersPing(host, Math.min(PING_MS, slice))) === false;
          if (frozen && grace(performance.now() - sentAt) > 0) continue;
        }
        const again = err.kind === "timeout" || nobody;
        const leftNow = leftAt(performance.now());
        if (!again || leftNow < 50) {
          if (err.kind === "timeout") {
            throw new CxlrcError(
              "timeout",
              `no reply on ${subject} within ${timeoutMs} ms (${sends} sends)`,
              { subject, timeoutMs, sends },
              { cause: err },
            );
          }
          throw err;
        }
        if (nobody) await new Promise((r) => setTimeout(r, Math.min(pause, leftNow / 2)));
      }
    }
  };

  return {
    async call(host, op, opId, params, opts) {
      const subject = subjects.agent(host, op);
      const bdf = (params as { bdf?: unknown }).bdf;
      let leaseKey: string | null = opts.leaseKey ?? null;
      if (leaseKey === null && typeof bdf === "string" && !UNFENCED.has(op)) {
        try {
          leaseKey = deviceKey(host, bdf);
        } catch {
          leaseKey = null; // a malformed address: the agent names it
        }
      }
      const grant = leaseKey !== null && !UNFENCED.has(op) ? (o.fence?.(leaseKey) ?? null) : null;
      const body: Record<string, unknown> = grant
        ? { opId, ...params, fence: grant.fence }
        : { opId, ...params };
      const release = issue(host, opId);
      const e = entry(host, opId)!;
      e.op = op;
      let waiter: ((t: Terminal) => void) | null = null;
      // A flag, not an AbortController: nothing listens, and a signal per call is an EventTarget to build.
      const settled = { aborted: false };
      try {
        if (e.terminal?.op === op) return unwrap(e.terminal, op);
        const fromEvent = new Promise<Terminal>((resolve) => {
          waiter = resolve;
          e.waiters.add(resolve);
        });
        const fromReply = resend(host, subject, body, opts.timeoutMs, grant, settled, opts.absent).then(
          (value) => {
            // Settled by the agent's event already (it comes first: the agent replies once its events are
            // stored): the reply says the same, and nobody reads it, so it is not checked again.
            if (settled.aborted) throw SETTLED;
            const r = AgentReply.safeParse(value);
            if (!r.success) {
              throw new CxlrcError("decode", `${subject}: reply is not an agent reply envelope`, {
                subject,
                op,
              });
            }
            if (r.data.opId !== null && r.data.opId !== opId) {
              o.log.warn(
                { subject, sent: opId, named: r.data.opId },
                "agent reply dropped: it answers another operation",
              );
              throw new CxlrcError(
                "internal",
                `${subject}: the reply names operation ${r.data.opId}, not ${opId}: not believed`,
                { subject, opId, replyOpId: r.data.opId },
              );
            }
            if (!r.data.ok) throw errorFromBody(r.data.error, { subject });
            return parseAgentResult(op, subject, r.data.result);
          },
        );
        const first = await Promise.race([
          fromReply.then((v) => ({ reply: v })),
          fromEvent.then((t) => ({ event: t })),
        ]);
        if ("reply" in first) return first.reply;
        fromReply.catch(() => undefined); // settled by the event; the reply says the same
        return unwrap(first.event, op);
      } catch (err) {
        if (leaseKey !== null && isCxlrcError(err) && err.kind === "stale-epoch") {
          o.log.warn(
            { host, op, opId, lease: leaseKey, ...err.details },
            "agent refused a stale epoch: another coordinator owns the device; dropping it",
          );
          o.onStaleEpoch?.(leaseKey, err);
        }
        throw err;
      } finally {
        settled.aborted = true;
        if (waiter) e.waiters.delete(waiter);
        release();
      }
    },
    issue,
    issued: (host, opId) => entry(host, opId) !== undefined,
    stats: () => ({ believed, dropped: { ...dropped } }),
    ready: () => o.nc.flush(),
    stop() {
      for (const sub of subs) sub.unsubscribe();
      mux.close();
    },
  };
}
