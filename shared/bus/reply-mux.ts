// Requests without nats.js's per-request machinery: one reply subscription under the connection's own inbox
// prefix (a role's permissions still hold, and responders that answer only a caller's inbox still answer),
// replies matched by the token that ends their subject, and every waiting request timed out from one sweep
// timer. nats.js's nc.request arms a timer and a mux entry per request and, on every reply, builds an Error
// with a stack trace (RequestOne.cancel after the resolve, nats-core 3.4): on the coordinator's hot paths
// (events, agent calls) that was a large share of its CPU per reset. A request past its deadline times out only
// once the server confirms that nothing it sent before is still unread here (deadline-check.ts).
import { createInbox, type Msg, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { CxlrcError } from "../errors.ts";
import { afterThisTurn, deadlineCheck } from "./deadline-check.ts";

export interface ReplyMux {
  /**
   * Publish `data` on `subject` with a reply subject of ours; resolves with the first reply. Rejects with
   * kind "timeout" after timeoutMs, or "backend" with details.reason "no-responders" when nobody listens.
   */
  request(subject: string, data: Uint8Array, opts: { timeoutMs: number; headers?: MsgHdrs }): Promise<Msg>;
  /** Requests waiting for their reply. */
  pending(): number;
  /** Rejects what is waiting and stops listening. */
  close(): void;
}

interface Waiting {
  subject: string;
  timeoutMs: number;
  deadline: number;
  /** Past its deadline, waiting for the server's confirmation (deadline-check.ts). */
  confirming: boolean;
  resolve(m: Msg): void;
  reject(err: Error): void;
}

const SWEEP_MS = 25;

export function createReplyMux(nc: NatsConnection): ReplyMux {
  const inboxPrefix = (nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
  const prefix = createInbox(inboxPrefix);
  const waiting = new Map<string, Waiting>();
  const check = deadlineCheck(nc);
  let next = 0;
  let sweeper: ReturnType<typeof setInterval> | null = null;
  let closed = false;

  const take = (token: string): Waiting | undefined => {
    const w = waiting.get(token);
    if (w) waiting.delete(token);
    if (waiting.size === 0 && sweeper) {
      clearInterval(sweeper);
      sweeper = null;
    }
    return w;
  };

  const sub = nc.subscribe(`${prefix}.*`, {
    callback: (err, m) => {
      if (err) return;
      const w = take(m.subject.slice(prefix.length + 1));
      if (!w) return; // timed out already: its caller has moved on
      if (m.data.length === 0 && m.headers?.code === 503) {
        w.reject(
          new CxlrcError("backend", `nobody answers on ${w.subject}`, {
            subject: w.subject,
            reason: "no-responders",
          }),
        );
        return;
      }
      w.resolve(m);
    },
  });

  const timedOut = (token: string, w: Waiting) => {
    if (waiting.get(token) !== w) return; // answered (or closed) while the server confirmed
    take(token);
    w.reject(
      new CxlrcError("timeout", `no reply on ${w.subject} within ${w.timeoutMs} ms`, {
        subject: w.subject,
        timeoutMs: w.timeoutMs,
      }),
    );
  };

  const sweep = () => {
    const now = performance.now();
    for (const [token, w] of waiting) {
      if (w.confirming || w.deadline > now) continue;
      w.confirming = true;
      void check.confirm(now, w.timeoutMs).then(() => timedOut(token, w));
    }
  };

  return {
    request(subject, data, opts) {
      if (closed || nc.isClosed()) {
        return Promise.reject(new CxlrcError("backend", `${subject}: the connection is closed`, { subject }));
      }
      const token = (next++).toString(36);
      return new Promise<Msg>((resolve, reject) => {
        const w: Waiting = {
          subject,
          timeoutMs: opts.timeoutMs,
          // Counted once the request has left this process (deadline-check.ts afterThisTurn).
          deadline: Number.POSITIVE_INFINITY,
          confirming: false,
          resolve,
          reject,
        };
        waiting.set(token, w);
        afterThisTurn(() => {
          w.deadline = performance.now() + opts.timeoutMs;
        });
        if (!sweeper) {
          sweeper = setInterval(sweep, SWEEP_MS);
          sweeper.unref?.();
        }
        try {
          const reply = `${prefix}.${token}`;
          nc.publish(subject, data, opts.headers ? { reply, headers: opts.headers } : { reply });
        } catch (e) {
          take(token);
          reject(new CxlrcError("backend", `request on ${subject} failed`, { subject }, { cause: e }));
        }
      });
    },
    pending: () => waiting.size,
    close() {
      closed = true;
      sub.unsubscribe();
      for (const token of [...waiting.keys()]) {
        take(token)?.reject(
          new CxlrcError("backend", "the request was abandoned: its reply listener closed"),
        );
      }
    },
  };
}
