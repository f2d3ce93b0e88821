// One schedule for every retry: exponential backoff with jitter (AWS Architecture Blog, "Exponential Backoff
// and Jitter"). Without jitter, coordinators and agents that failed together (a stream electing a leader, a
// peer's write winning a compare-and-set) all come back at the same instant and collide again.
// `retry` runs an operation again; a compare-and-set loop keeps its own read → compute → write shape and
// takes only the wait between rounds from here (`sleepBackoff`).

export interface BackoffOptions {
  /** The first wait's upper bound; each later one doubles, up to maxMs. */
  baseMs: number;
  maxMs: number;
  /**
   * full: uniform in [0, cap] (spreads callers the most); equal: uniform in [cap/2, cap] (keeps about the same
   * total time as the plain schedule, for loops that must ride out an outage of known length). Default full.
   */
  jitter?: "full" | "equal";
}

interface RetryCommon<E> extends BackoffOptions {
  /** Whether an error is worth another attempt. Default: every error. A false stops at once with it. */
  retryIf?: (e: E) => boolean;
  /** Aborting stops the wait; retry rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called before each wait: the error, the number of the attempt that failed (from 1), the wait. */
  onRetry?: (e: E, attempt: number, delayMs: number) => void;
  /** Random numbers in [0, 1) (tests make the schedule deterministic). Default Math.random. */
  random?: () => number;
}

/** A retry is bounded: by attempts, by a deadline, or both (Infinity says "until aborted" on purpose). */
export type RetryOptions<E = unknown> = RetryCommon<E> &
  (
    | {
        /** Attempts in all, the first included. */
        attempts: number;
        /** No attempt starts after this long from the first; the last wait is cut short to meet it. */
        deadlineMs?: number;
      }
    | { attempts?: number; deadlineMs: number }
  );

/**
 * The wait after the failure numbered `attempt` (0 for the first wait): jittered within
 * min(maxMs, baseMs·2^attempt). Pure: `random` gives a number in [0, 1).
 */
export function backoffDelay(
  attempt: number,
  opts: BackoffOptions,
  random: () => number = Math.random,
): number {
  // 2^1023 is the largest power of two a double holds; base·2^n then stays finite (no Infinity·0 = NaN).
  const cap = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(Math.max(0, attempt), 1023));
  const r = random();
  return opts.jitter === "equal" ? cap / 2 + r * (cap / 2) : r * cap;
}

/**
 * Wait backoffDelay(attempt, opts); resolves with the wait, rejects with the signal's reason when aborted
 * (at once if it already is). The timer does not hold the process open.
 */
export function sleepBackoff(
  attempt: number,
  opts: BackoffOptions & { signal?: AbortSignal; random?: () => number },
): Promise<number> {
  return sleep(backoffDelay(attempt, opts, opts.random), opts.signal);
}

function sleep(ms: number, signal?: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(ms);
    }, ms);
    timer.unref?.();
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Run `fn` until it resolves, waiting backoffDelay between attempts. Rejects with the last error itself (its
 * kind and cause intact) once retryIf says no, the attempts are spent or the deadline has passed; with the
 * signal's reason when aborted.
 */
export async function retry<T, E = unknown>(
  fn: (attempt: number) => Promise<T>,
  opts: RetryOptions<E>,
): Promise<T> {
  const attempts = opts.attempts ?? Number.POSITIVE_INFINITY;
  const end = opts.deadlineMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + opts.deadlineMs;
  for (let attempt = 1; ; attempt++) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    try {
      return await fn(attempt);
    } catch (e) {
      const err = e as E;
      if (opts.retryIf && !opts.retryIf(err)) throw e;
      const left = end - performance.now();
      if (attempt >= attempts || left <= 0) throw e;
      const delayMs = Math.min(backoffDelay(attempt - 1, opts, opts.random), left);
      opts.onRetry?.(err, attempt, delayMs);
      await sleep(delayMs, opts.signal);
    }
  }
}
