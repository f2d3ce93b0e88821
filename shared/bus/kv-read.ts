// Reads of a KV key's latest entry on a reply mux (reply-mux.ts): the request kv.get makes when the bucket
// does not allow direct gets (a STREAM.MSG.GET to the stream's leader, by the key's subject), its answer
// decoded here, but no request object, timer or stack trace per read, and none for a key that is absent (the
// stream's 404, which nats.js turns into an error with its stack before it returns null).
import { CxlrcError } from "../errors.ts";
import type { ReplyMux } from "./reply-mux.ts";

/** A key's latest entry, as kv.get gives it: a value, or the marker of a delete or purge. */
export interface KvRead {
  operation: "PUT" | "DEL" | "PURGE";
  revision: number;
  value: Uint8Array;
  json<T>(): T;
}

interface MsgGetReply {
  message?: { subject?: unknown; seq?: unknown; hdrs?: unknown; data?: unknown };
  error?: { code?: unknown; err_code?: unknown; description?: unknown };
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const OPERATION = /^KV-Operation:\s*(DEL|PURGE)\s*$/im;
/** JetStream's error code for a subject with no message in the stream. */
const NO_MESSAGE_FOUND = 10037;

export interface KvReader {
  /** The key's latest entry in the bucket, or null when the key never held one (nor a marker). */
  get(bucket: string, key: string): Promise<KvRead | null>;
}

export function createKvReader(mux: ReplyMux, opts: { timeoutMs: number }): KvReader {
  return {
    async get(bucket, key) {
      const subject = `$KV.${bucket}.${key}`;
      const api = `$JS.API.STREAM.MSG.GET.KV_${bucket}`;
      const m = await mux.request(api, enc.encode(JSON.stringify({ last_by_subj: subject })), {
        timeoutMs: opts.timeoutMs,
      });
      let body: MsgGetReply;
      try {
        body = JSON.parse(dec.decode(m.data)) as MsgGetReply;
      } catch (e) {
        throw new CxlrcError("decode", `${api}: the answer is not JSON`, { subject }, { cause: e });
      }
      if (body.error) {
        // No message for the subject (10037): the key was never written. Any other 404 (10059: no such
        // stream) is an error, as kv.get makes it.
        if (body.error.err_code === NO_MESSAGE_FOUND) return null;
        throw new CxlrcError("backend", `${api}: ${String(body.error.description ?? "JetStream error")}`, {
          subject,
          code: body.error.code,
          errCode: body.error.err_code,
        });
      }
      const msg = body.message;
      if (!msg || msg.subject !== subject || typeof msg.seq !== "number") {
        throw new CxlrcError("decode", `${api}: the answer names no message of ${subject}`, { subject });
      }
      const value =
        typeof msg.data === "string" ? new Uint8Array(Buffer.from(msg.data, "base64")) : new Uint8Array(0);
      const headers = typeof msg.hdrs === "string" ? Buffer.from(msg.hdrs, "base64").toString("latin1") : "";
      const op = OPERATION.exec(headers)?.[1] as "DEL" | "PURGE" | undefined;
      return {
        operation: op ?? "PUT",
        revision: msg.seq,
        value,
        json: <T>() => JSON.parse(dec.decode(value)) as T,
      };
    },
  };
}
