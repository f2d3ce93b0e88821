// JetStream publishes without one request per message. nats.js's js.publish is a request: a timer, a mux
// entry and, on every reply, an Error with a stack trace (RequestOne.cancel after the resolve, nats-core 3.4),
// which is most of what an event costs the coordinator's CPU. This sends the same wire message (PUB with the
// Nats-Msg-Id header and a reply subject) with replies on one subscription under the connection's own inbox
// prefix (so a role's permissions still hold), matches each PubAck by the token ending its reply subject,
// and times out every waiting publish from one sweep timer.
import {
  createInbox,
  type Msg,
  type NatsConnection,
  headers as natsHeaders,
  type Subscription,
} from "@nats-io/transport-node";
import { CxlrcError } from "../errors.ts";

export interface PubAck {
  stream: string;
  seq: number;
  /** The stream already held a message with this msgID (within its duplicate window): not stored again. */
  duplicate: boolean;
}

export interface AckPublishOptions {
  /** Nats-Msg-Id: JetStream stores one message per id within the stream's duplicate window. */
  msgID?: string;
  /** Default: the publisher's. */
  timeoutMs?: number;
}

export interface AckPublisher {
  /** Resolves with the stream's acknowledgement; rejects with the stream's error, no stream, or timeout. */
  publish(subject: string, data: Uint8Array, opts?: AckPublishOptions): Promise<PubAck>;
  /** Publishes waiting for their acknowledgement. */
  pending(): number;
  /** Rejects what is waiting and stops listening. */
  close(): void;
}

interface Waiting {
  subject: string;
  deadline: number;
  resolve(ack: PubAck): void;
  reject(err: Error): void;
}

const SWEEP_MS = 50;

export function createAckPublisher(nc: NatsConnection, opts: { timeoutMs?: number } = {}): AckPublisher {
  const defaultTimeout = opts.timeoutMs ?? 5000;
  const inboxPrefix = (nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
  const prefix = createInbox(inboxPrefix);
  const waiting = new Map<string, Waiting>();
  let next = 0;
  let sweeper: ReturnType<typeof setInterval> | null = null;
  let closed = false;

  const settle = (token: string): Waiting | undefined => {
    const w = waiting.get(token);
    if (w) waiting.delete(token);
    if (waiting.size === 0 && sweeper) {
      clearInterval(sweeper);
      sweeper = null;
    }
    return w;
  };

  const onReply = (m: Msg) => {
    const token = m.subject.slice(prefix.length + 1);
    const w = settle(token);
    if (!w) return; // timed out already: its publisher has moved on
    if (m.data.length === 0 && m.headers?.code === 503) {
      w.reject(
        new CxlrcError("backend", `${w.subject}: no stream captures this subject`, {
          subject: w.subject,
          reason: "no-responders",
        }),
      );
      return;
    }
    let body: {
      stream?: unknown;
      seq?: unknown;
      duplicate?: unknown;
      error?: { code?: unknown; err_code?: unknown; description?: unknown };
    };
    try {
      body = JSON.parse(new TextDecoder().decode(m.data));
    } catch (e) {
      w.reject(
        new CxlrcError(
          "decode",
          `${w.subject}: the acknowledgement is not JSON`,
          { subject: w.subject },
          { cause: e },
        ),
      );
      return;
    }
    if (body.error) {
      w.reject(
        new CxlrcError("backend", `${w.subject}: ${String(body.error.description ?? "JetStream error")}`, {
          subject: w.subject,
          code: body.error.code,
          errCode: body.error.err_code,
        }),
      );
      return;
    }
    if (typeof body.stream !== "string" || typeof body.seq !== "number") {
      w.reject(
        new CxlrcError("decode", `${w.subject}: the acknowledgement names no stream and sequence`, {
          subject: w.subject,
        }),
      );
      return;
    }
    w.resolve({ stream: body.stream, seq: body.seq, duplicate: body.duplicate === true });
  };

  const sub: Subscription = nc.subscribe(`${prefix}.*`, {
    callback: (err, m) => {
      if (!err) onReply(m);
    },
  });

  const sweep = () => {
    const now = performance.now();
    for (const [token, w] of waiting) {
      if (w.deadline > now) continue;
      settle(token);
      w.reject(new CxlrcError("timeout", `${w.subject}: no acknowledgement in time`, { subject: w.subject }));
    }
  };

  return {
    publish(subject, data, o = {}) {
      if (closed)
        return Promise.reject(new CxlrcError("backend", `${subject}: the publisher is closed`, { subject }));
      const token = (next++).toString(36);
      const timeoutMs = o.timeoutMs ?? defaultTimeout;
      return new Promise<PubAck>((resolve, reject) => {
        waiting.set(token, { subject, deadline: performance.now() + timeoutMs, resolve, reject });
        sweeper ??= setInterval(sweep, SWEEP_MS);
        sweeper.unref?.();
        try {
          const reply = `${prefix}.${token}`;
          if (o.msgID) {
            const h = natsHeaders();
            h.set("Nats-Msg-Id", o.msgID);
            nc.publish(subject, data, { reply, headers: h });
          } else {
            nc.publish(subject, data, { reply });
          }
        } catch (e) {
          settle(token);
          reject(new CxlrcError("backend", `${subject}: not published`, { subject }, { cause: e }));
        }
      });
    },
    pending: () => waiting.size,
    close() {
      closed = true;
      sub.unsubscribe();
      for (const token of [...waiting.keys()]) {
        settle(token)?.reject(
          new CxlrcError("backend", "the publisher was closed before the acknowledgement"),
        );
      }
    },
  };
}
