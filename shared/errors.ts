// Errors are values with a kind and a cause; the edge (CLI, bus reply) turns them into one human sentence.

export type ErrorKind =
  | "bad-input" // malformed file, flag, message or config
  | "decode" // config space or register block that cannot be decoded
  | "device-absent" // reads all-ones
  | "not-ready" // device did not answer in time after a reset
  | "register" // a register read back a value that breaks a rule
  | "commit-timeout"
  | "commit-error"
  | "reset-timeout"
  | "reset-error"
  | "cache-flush-timeout"
  | "verify-mismatch"
  | "locked" // CONFIG_LOCK or Lock On Commit prevents the write
  | "device-busy"
  | "sibling-busy"
  | "in-progress"
  | "unsupported"
  | "backend" // I/O failure in a backend (errno, socket, process)
  | "timeout"
  | "rate-limited" // too many requests from one requester (or all together): retry after details.retryAfterMs
  | "stale-epoch" // a fenced agent operation from an owner older than the one the agent last served
  | "driver-rebind" // the driver a reset took from the device could not be bound again
  | "internal";

export interface CxlrcErrorDetails {
  /** Device address, when the error is about one. */
  bdf?: string;
  /** Register name (as in shared/cxl/registers.ts), e.g. "decoder0.control". */
  register?: string;
  /** Raw register value as read back, lowercase hex. */
  value?: string;
  [key: string]: unknown;
}

export class CxlrcError extends Error {
  readonly kind: ErrorKind;
  readonly details: CxlrcErrorDetails;
  constructor(
    kind: ErrorKind,
    message: string,
    details: CxlrcErrorDetails = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "CxlrcError";
    this.kind = kind;
    this.details = details;
  }

  toJSON(): { kind: ErrorKind; message: string; details: CxlrcErrorDetails; cause?: string } {
    const cause =
      this.cause instanceof Error
        ? this.cause.message
        : this.cause === undefined
          ? undefined
          : String(this.cause);
    return { kind: this.kind, message: this.message, details: this.details, ...(cause ? { cause } : {}) };
  }
}

export function isCxlrcError(e: unknown): e is CxlrcError {
  return e instanceof CxlrcError;
}

/** One line for humans: the message and the chain of causes. */
export function describeError(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    parts.push(cur instanceof Error ? cur.message : String(cur));
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return parts.join(": ");
}
