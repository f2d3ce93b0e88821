// Poll-until with a deadline, on the backend's clock (virtual in tests). The last read happens at or
// after the deadline, so a condition that turns true just before it is never reported as a timeout.
import type { Clock } from "../../../shared/hw/backend.ts";

/** A poll interval of 0 would spin on a virtual clock: 10 µs is the floor. */
const MIN_POLL_MS = 0.01;

export interface PollOptions<T> {
  clock: Clock;
  read: () => Promise<T>;
  done: (value: T) => boolean;
  pollMs: number;
  /** Either a timeout from now, or an absolute deadline on clock.now(). */
  timeoutMs?: number;
  deadline?: number;
}

export interface PollResult<T> {
  ok: boolean;
  /** The last value read. */
  value: T;
  reads: number;
  elapsedMs: number;
}

export async function pollUntil<T>(o: PollOptions<T>): Promise<PollResult<T>> {
  const start = o.clock.now();
  const deadline = o.deadline ?? start + (o.timeoutMs ?? 0);
  let reads = 0;
  for (;;) {
    // Judge a timeout by when the read STARTED: on a real clock a read can begin just before the deadline
    // and return after it, and a condition that turned true in between must still be read once more.
    const readAt = o.clock.now();
    const value = await o.read();
    reads++;
    const now = o.clock.now();
    if (o.done(value)) return { ok: true, value, reads, elapsedMs: now - start };
    if (readAt >= deadline) return { ok: false, value, reads, elapsedMs: now - start };
    // Never sleep past the deadline (the final read lands on it); never spin without time passing.
    await o.clock.sleep(Math.max(0, Math.min(Math.max(o.pollMs, MIN_POLL_MS), deadline - now)));
  }
}
