// A deadline that passed here is confirmed by the server before anyone acts on it. A busy process reads its
// socket late: a reply the server delivered in time can sit unread in this process's own queue while a timer
// fires first (Node runs expired timers before it reads the socket). The server answers a PING after every
// message it sent this connection before it, so once the PONG is read, any reply that was waiting has been
// handled; what is still missing then was really late. An overloaded coordinator queues; it does not fail a
// healthy device because of its own backlog (issue #16).
//
// The other end of the same backlog: what a busy turn publishes leaves the socket only when the turn ends (a
// coalesced connection uncorks in the check phase; nats.js flushes from a microtask). A deadline counted from
// the call would count this process's own turn, which at 1,000 resets at once lasted up to a second here:
// deadlines start after the turn (afterThisTurn).
import type { NatsConnection } from "@nats-io/transport-node";

let starting: Array<() => void> = [];

/**
 * Run `start` in the check phase after this turn: once what the turn wrote has gone to the socket. Callbacks of
 * one turn share one setImmediate.
 */
export function afterThisTurn(start: () => void): void {
  starting.push(start);
  if (starting.length > 1) return;
  setImmediate(() => {
    const now = starting;
    starting = [];
    for (const f of now) f();
  });
}

export interface DeadlineCheck {
  /**
   * Resolves once a PING sent at or after `passedAt` (performance.now() of when the deadline passed) has its
   * PONG, or `capMs` after the call (a connection that is down answers no PING: the deadline then stands
   * after at most capMs more).
   */
  confirm(passedAt: number, capMs: number): Promise<void>;
}

interface Flush {
  sentAt: number;
  done: Promise<void>;
}

const checks = new WeakMap<NatsConnection, DeadlineCheck>();

/** One check per connection: the deadlines that pass together share one PING. */
export function deadlineCheck(nc: NatsConnection): DeadlineCheck {
  let check = checks.get(nc);
  if (!check) {
    check = createDeadlineCheck(nc);
    checks.set(nc, check);
  }
  return check;
}

function createDeadlineCheck(nc: NatsConnection): DeadlineCheck {
  let latest: Flush | null = null;
  return {
    confirm(passedAt, capMs) {
      if (latest === null || latest.sentAt < passedAt) {
        const flush: Flush = { sentAt: performance.now(), done: Promise.resolve() };
        // A closed connection rejects the flush: the deadline stands at once.
        flush.done = nc.isClosed()
          ? Promise.resolve()
          : nc.flush().then(
              () => undefined,
              () => undefined,
            );
        const clear = () => {
          if (latest === flush) latest = null;
        };
        flush.done.then(clear, clear);
        latest = flush;
      }
      const pong = latest.done;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cap = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.max(0, capMs));
      });
      return Promise.race([pong, cap]).finally(() => clearTimeout(timer));
    },
  };
}
