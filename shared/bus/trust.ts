// Who sent a message, and what may be believed of it, is what the bus enforces, never what the message says.
// - The caller of a request is the authenticated principal the server names in the Nats-Request-Info header
//   of a message that crossed an account import (`share: true`; the server overwrites any header a client
//   set). Without it (one-account development bus, or a message from inside the coordinators' account) the
//   caller is "local".
// - A responder answers only on a reply subject of the caller's inbox form: `_INBOX.<token>...` (a client's
//   own inbox) or `_R_.<token>...` (the server's rewrite of a reply that crossed an import). Anything else
//   (a `$JS.API` or `$KV` subject, another service's request subject) is refused without an answer.
// - An event is believed from its subject: the coordinator's events live under cxlrc.evt.>, an agent's under
//   cxlrc.agt.<its host>.>, and the server lets nobody else publish there. The envelope must agree with the
//   subject it came on (host, device, kind, source).
import type { MsgHdrs } from "@nats-io/transport-node";
import type { EventEnvelope } from "./codec.ts";
import { HOST_RE, PREFIX } from "./subjects.ts";

/** `_INBOX.<token>(.<token>)*` or `_R_.<token>(.<token>)*`, tokens without wildcards. */
const CALLER_INBOX_RE = /^(?:_INBOX|_R_)(?:\.[A-Za-z0-9_-]+)+$/;

/** May a responder answer on this reply subject? */
export function isCallerInbox(reply: string | undefined | null): reply is string {
  return typeof reply === "string" && reply.length <= 256 && CALLER_INBOX_RE.test(reply);
}

/** The server's record of who sent a message across an import (nats-server's ClientInfo, the fields we use). */
export interface RequestInfo {
  acc: string;
  user: string;
}

/** Header the server sets on messages that cross a `share: true` service import. */
export const REQUEST_INFO_HEADER = "Nats-Request-Info";

/** The authenticated sender of a message, as the server stated it; null when the server said nothing. */
export function requestInfo(headers: MsgHdrs | undefined): RequestInfo | null {
  const raw = headers?.get(REQUEST_INFO_HEADER);
  if (!raw) return null;
  try {
    const v = JSON.parse(raw) as { acc?: unknown; user?: unknown };
    if (typeof v.acc !== "string" || v.acc.length === 0) return null;
    return { acc: v.acc, user: typeof v.user === "string" ? v.user : "" };
  } catch {
    return null;
  }
}

/** A stable key for the caller (rate limits, logs): "ACCOUNT/user", or "local" inside one account. */
export function callerOf(msg: { headers?: MsgHdrs | undefined }): string {
  const info = requestInfo(msg.headers);
  return info ? `${info.acc}/${info.user}` : "local";
}

export type EventSource = "coordinator" | "agent";

export interface EventOrigin {
  source: EventSource;
  host: string;
  /** BDF token, or "agent" for a host-level event. */
  device: string;
  kind: string;
}

/** Where an event came from, by its subject: cxlrc.evt.H.D.kind (coordinator) or cxlrc.agt.H.D.kind (agent). */
export function eventOrigin(subject: string): EventOrigin | null {
  const parts = subject.split(".");
  if (parts.length < 5 || parts[0] !== PREFIX) return null;
  const source: EventSource | null = parts[1] === "evt" ? "coordinator" : parts[1] === "agt" ? "agent" : null;
  if (source === null) return null;
  const [, , host, device, ...kind] = parts as [string, string, string, string, ...string[]];
  if (!HOST_RE.test(host) || device.length === 0 || kind.some((k) => k.length === 0)) return null;
  return { source, host, device, kind: kind.join(".") };
}

/**
 * Does the envelope agree with the subject it came on? Returns why not, or null. `expect` narrows the source
 * (an outcome is believed only from the coordinator's subject space).
 */
export function checkEventSubject(
  subject: string,
  env: Pick<EventEnvelope, "host" | "bdf" | "kind" | "source">,
  expect?: EventSource,
): string | null {
  const o = eventOrigin(subject);
  if (!o) return `subject ${JSON.stringify(subject)} is not an event subject`;
  if (expect !== undefined && o.source !== expect) {
    return `a ${expect} event cannot come on ${o.source} subject ${subject}`;
  }
  if (env.source !== undefined && env.source !== o.source) {
    return `event says source ${JSON.stringify(env.source)} but came on a ${o.source} subject`;
  }
  if (env.host !== o.host)
    return `event names host ${JSON.stringify(env.host)} but came on ${o.host}'s subject`;
  const device = env.bdf === null ? "agent" : env.bdf.replace(/[:.]/g, "-");
  if (device !== o.device) return `event names device ${String(env.bdf)} but came on ${o.device}'s subject`;
  if (o.kind !== env.kind)
    return `event kind ${JSON.stringify(env.kind)} differs from the subject's ${o.kind}`;
  return null;
}

/** C0/C1 control characters and DEL (terminal escapes, new lines): what a one-line printer of untrusted text strips. */
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/g;

/** Untrusted text made safe for a terminal: control characters (ESC included) become U+FFFD. */
export function stripControl(text: string): string {
  return text.replace(CONTROL_RE, "\uFFFD");
}
