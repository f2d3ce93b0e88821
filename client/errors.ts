// The client's errors: one class, a kind a program can switch on, and what it was about (the subject, the
// field). Every failure of a client call is one of these; the cause (a NATS or cxlrc error) is kept.
import { errors as natsErrors } from "@nats-io/transport-node";
import { isCxlrcError } from "../shared/errors.ts";

export type ClientErrorKind =
  /** No NATS server answers, or no coordinator answers on the control subject. */
  | "unreachable"
  /** The server refused this principal the subject (publish or subscribe): `subject` names it. */
  | "permission-denied"
  /** Nothing answered in time (the coordinator may still act: a reset goes on). */
  | "timeout"
  /** The request is not valid: `field` names the first bad field. Nothing was sent, or the coordinator refused to read it. */
  | "bad-request"
  /** The coordinator answered with an error of its own (`remoteKind`). */
  | "remote"
  /** The caller stopped waiting (AbortSignal). */
  | "aborted";

export class ClientError extends Error {
  override name = "ClientError";
  readonly kind: ClientErrorKind;
  /** The subject the failure was about, when there was one. */
  readonly subject: string | undefined;
  /** The request field that is wrong (bad-request), as a dotted path. */
  readonly field: string | undefined;
  /** The coordinator's own error kind (remote). */
  readonly remoteKind: string | undefined;
  constructor(
    kind: ClientErrorKind,
    message: string,
    extra: { subject?: string; field?: string; remoteKind?: string } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.kind = kind;
    this.subject = extra.subject;
    this.field = extra.field;
    this.remoteKind = extra.remoteKind;
  }
}

const PERMISSION_RE = /permissions? violation for (publish|subscription) to "?([^"\s]+)"?/i;

/** The permission violation inside an error or its causes, with its subject. */
function permissionOf(e: unknown): { subject: string; operation: string } | null {
  for (let c: unknown = e, depth = 0; c && depth < 5; c = (c as { cause?: unknown }).cause, depth++) {
    if (c instanceof natsErrors.PermissionViolationError)
      return { subject: c.subject, operation: c.operation };
    const m = PERMISSION_RE.exec(String((c as Error).message ?? ""));
    if (m) return { operation: m[1]!.toLowerCase(), subject: m[2]! };
  }
  return null;
}

/** Any failure of a call about `subject`, as a ClientError (a ClientError passes through). */
export function clientError(e: unknown, subject?: string): ClientError {
  if (e instanceof ClientError) return e;
  const denied = permissionOf(e);
  if (denied) {
    return new ClientError(
      "permission-denied",
      `the server denies this principal ${denied.operation === "subscription" ? "subscribing to" : "publishing to"} ${denied.subject}`,
      { subject: denied.subject },
      { cause: e },
    );
  }
  if (isCxlrcError(e)) {
    const s = typeof e.details.subject === "string" ? e.details.subject : subject;
    if (e.details.reason === "no-responders") {
      return new ClientError(
        "unreachable",
        `no coordinator answers on ${s}`,
        { ...(s ? { subject: s } : {}) },
        { cause: e },
      );
    }
    if (e.kind === "timeout" && e.details.remote !== true) {
      return new ClientError("timeout", e.message, { ...(s ? { subject: s } : {}) }, { cause: e });
    }
    if (e.kind === "bad-input") {
      const field =
        typeof e.details.path === "string"
          ? e.details.path
          : typeof e.details.field === "string"
            ? e.details.field
            : undefined;
      return new ClientError(
        "bad-request",
        e.message,
        { ...(s ? { subject: s } : {}), ...(field ? { field } : {}) },
        { cause: e },
      );
    }
    return new ClientError(
      "remote",
      e.message,
      { ...(s ? { subject: s } : {}), remoteKind: e.kind },
      { cause: e },
    );
  }
  if (e instanceof natsErrors.TimeoutError) {
    return new ClientError(
      "timeout",
      `no answer${subject ? ` on ${subject}` : ""} in time`,
      { ...(subject ? { subject } : {}) },
      { cause: e },
    );
  }
  if (e instanceof natsErrors.ClosedConnectionError || (e as Error)?.name === "ClosedConnectionError") {
    return new ClientError(
      "unreachable",
      "the NATS connection is closed",
      { ...(subject ? { subject } : {}) },
      { cause: e },
    );
  }
  return new ClientError(
    "unreachable",
    `${subject ? `${subject}: ` : ""}${(e as Error)?.message ?? String(e)}`,
    { ...(subject ? { subject } : {}) },
    { cause: e },
  );
}
