// JSON on the wire: encode/decode with clear errors, the event envelope every cxlrc.evt.> message
// carries, and the mapping between thrown errors and the ErrorBody of a reply.
import { nuid } from "@nats-io/transport-node";
import { z } from "zod";
import { CxlrcError, type ErrorKind } from "../errors.ts";
import { Bdf, type ErrorBody } from "./agent-messages.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** What decodeJson accepts: a NATS message (anything with `data` and `subject`) or raw bytes. */
export type JsonSource = { data: Uint8Array; subject?: string } | Uint8Array;

/**
 * Decode a JSON payload. Empty, non-UTF-8 or non-JSON payloads throw CxlrcError("bad-input") naming
 * the subject, the size and the parser's complaint, with the first bytes quoted.
 */
export function decodeJson(src: JsonSource): unknown {
  const data = src instanceof Uint8Array ? src : src.data;
  const where = src instanceof Uint8Array || !src.subject ? "message" : `message on ${src.subject}`;
  if (data.length === 0) {
    throw new CxlrcError("bad-input", `${where} is empty: expected a JSON object`);
  }
  let text: string;
  try {
    text = decoder.decode(data);
  } catch {
    throw new CxlrcError("bad-input", `${where} is not valid UTF-8 (${data.length} bytes): expected JSON`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    const head = text.length > 40 ? `${text.slice(0, 40)}…` : text;
    throw new CxlrcError(
      "bad-input",
      `${where} is not JSON (${data.length} bytes, starts ${JSON.stringify(head)}): ${(e as Error).message}`,
    );
  }
}

/** Decode and validate with a zod schema; schema problems become bad-input naming each field. */
export function decodeWith<S extends z.ZodType>(src: JsonSource, schema: S, what = "message"): z.infer<S> {
  const value = decodeJson(src);
  const r = schema.safeParse(value);
  if (!r.success) throw badInputFromZod(r.error, what);
  return r.data;
}

/** One line naming every problem: `field "method": Invalid option...; unknown field "foo"`. */
export function formatZodIssues(err: z.ZodError): string {
  return err.issues
    .map((i) => {
      const path = i.path.map(String).join(".");
      if (i.code === "unrecognized_keys") {
        const keys = (i as { keys?: string[] }).keys ?? [];
        const at = path ? ` in "${path}"` : "";
        return `unknown field${keys.length > 1 ? "s" : ""} ${keys.map((k) => JSON.stringify(k)).join(", ")}${at}`;
      }
      return path ? `field "${path}": ${i.message}` : i.message;
    })
    .join("; ");
}

export function badInputFromZod(err: z.ZodError, what: string): CxlrcError {
  const fields = err.issues.map((i) => i.path.map(String).join(".")).filter((p) => p.length > 0);
  return new CxlrcError("bad-input", `${what}: ${formatZodIssues(err)}`, {
    fields,
    issues: err.issues.map((i) => ({ path: i.path.map(String), code: i.code, message: i.message })),
  });
}

/** Any thrown value as the ErrorBody of a reply. */
export function errorToBody(e: unknown): ErrorBody {
  if (e instanceof CxlrcError) {
    const j = e.toJSON();
    return {
      kind: j.kind,
      message: j.message,
      details: { ...j.details },
      ...(j.cause ? { cause: j.cause } : {}),
    };
  }
  if (e instanceof z.ZodError) return errorToBody(badInputFromZod(e, "invalid value"));
  if (e instanceof Error) return { kind: "internal", message: e.message, details: { name: e.name } };
  return { kind: "internal", message: String(e), details: {} };
}

/** An ErrorBody from a remote reply as a CxlrcError (kind, message and details kept; `remote: true`). */
export function errorFromBody(body: ErrorBody, context?: { subject?: string }): CxlrcError {
  // The kind comes from another cxlrc process, which only produces ErrorKind values.
  return new CxlrcError(
    body.kind as ErrorKind,
    body.message,
    { ...body.details, remote: true, ...(context?.subject ? { subject: context.subject } : {}) },
    body.cause ? { cause: body.cause } : undefined,
  );
}

// ---------------------------------------------------------------------------------------------------
// Events

/**
 * Every message on cxlrc.evt.> (device events, op lifecycle, heartbeats). CloudEvents-like names:
 * `id` is unique (and the JetStream msgID, so a re-published event is deduplicated), `time` is ISO 8601.
 */
export const EventEnvelope = z.object({
  v: z.literal(1),
  id: z.string().min(1).max(128),
  time: z.iso.datetime({ offset: true }),
  /** Who published: "agent", "coordinator", ... */
  source: z.string().min(1).max(64).optional(),
  host: z.string().min(1),
  bdf: Bdf.nullable(),
  kind: z.string().min(1).max(128),
  opId: z.string().min(1).max(128).optional(),
  requestId: z.string().min(1).max(128).optional(),
  /** Coordinator events about a device: the fencing epoch of the lease it published under (v stays 1). */
  epoch: z.number().int().positive().optional(),
  data: z.record(z.string(), z.unknown()),
});
export type EventEnvelope = z.infer<typeof EventEnvelope>;

/** The event envelope in raw bytes, or null when they hold none (never throws: a reader skips what is not one). */
export function envelopeOf(data: Uint8Array): EventEnvelope | null {
  let value: unknown;
  try {
    value = decodeJson(data);
  } catch {
    return null;
  }
  const r = EventEnvelope.safeParse(value);
  return r.success ? r.data : null;
}

/** Event kinds become subject tokens (dots allowed: "op.started"); no spaces or wildcards. */
export const EVENT_KIND_RE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export function makeEvent(e: {
  host: string;
  bdf: string | null;
  kind: string;
  data?: Record<string, unknown>;
  opId?: string;
  requestId?: string;
  source?: string;
  id?: string;
  time?: Date;
  epoch?: number;
}): EventEnvelope {
  if (!EVENT_KIND_RE.test(e.kind)) {
    throw new CxlrcError("bad-input", `event kind ${JSON.stringify(e.kind)} is not a valid subject token`);
  }
  return {
    v: 1,
    id: e.id ?? nuid.next(),
    time: (e.time ?? new Date()).toISOString(),
    ...(e.source ? { source: e.source } : {}),
    host: e.host,
    bdf: e.bdf,
    kind: e.kind,
    ...(e.opId ? { opId: e.opId } : {}),
    ...(e.requestId ? { requestId: e.requestId } : {}),
    ...(e.epoch !== undefined ? { epoch: e.epoch } : {}),
    data: e.data ?? {},
  };
}
