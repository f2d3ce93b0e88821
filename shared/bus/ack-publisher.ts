// JetStream publishes on a reply mux (reply-mux.ts): the same wire message as js.publish (PUB with the
// Nats-Msg-Id header and a reply subject of ours), the PubAck or the stream's error read from the reply, but no
// request object, timer or stack trace per message.
import { type MsgHdrs, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { CxlrcError } from "../errors.ts";
import { createReplyMux, type ReplyMux } from "./reply-mux.ts";

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
  /** Headers to send (JetStream's expectations, a record's summary); the msgID is added to them. */
  headers?: MsgHdrs;
}

export interface AckPublisher {
  /**
   * Resolves with the stream's acknowledgement. Rejects with kind "backend" naming the stream's refusal (or
   * details.reason "no-responders" when no stream captures the subject), or "timeout".
   */
  publish(subject: string, data: Uint8Array, opts?: AckPublishOptions): Promise<PubAck>;
  /** Publishes waiting for their acknowledgement. */
  pending(): number;
  close(): void;
}

interface AckBody {
  stream?: unknown;
  seq?: unknown;
  duplicate?: unknown;
  error?: { code?: unknown; err_code?: unknown; description?: unknown };
}

export function createAckPublisher(
  nc: NatsConnection,
  opts: { timeoutMs?: number; mux?: ReplyMux } = {},
): AckPublisher {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const mux = opts.mux ?? createReplyMux(nc);
  const dec = new TextDecoder();
  return {
    async publish(subject, data, o = {}) {
      let headers = o.headers;
      if (o.msgID) {
        headers ??= natsHeaders();
        headers.set("Nats-Msg-Id", o.msgID);
      }
      const m = await mux.request(subject, data, {
        timeoutMs: o.timeoutMs ?? timeoutMs,
        ...(headers ? { headers } : {}),
      });
      let body: AckBody;
      try {
        body = JSON.parse(dec.decode(m.data)) as AckBody;
      } catch (e) {
        throw new CxlrcError(
          "decode",
          `${subject}: the acknowledgement is not JSON`,
          { subject },
          { cause: e },
        );
      }
      if (body.error) {
        throw new CxlrcError(
          "backend",
          `${subject}: ${String(body.error.description ?? "JetStream error")}`,
          {
            subject,
            code: body.error.code,
            errCode: body.error.err_code,
          },
        );
      }
      if (typeof body.stream !== "string" || typeof body.seq !== "number") {
        throw new CxlrcError("decode", `${subject}: the acknowledgement names no stream and sequence`, {
          subject,
        });
      }
      return { stream: body.stream, seq: body.seq, duplicate: body.duplicate === true };
    },
    pending: () => mux.pending(),
    close: () => mux.close(),
  };
}
