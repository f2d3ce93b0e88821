// How each request ended, as this coordinator saw it: exactly one outcome per request id (the lifecycle's
// terminal events, or the intake's rejection). Callers (tests, the submit endpoint) wait on it.
import type { Plan, Refusal } from "../../machines/policy/types.ts";
import { trimOldest } from "../../shared/remember.ts";

export type RequestOutcomeKind = "verified" | "refused" | "failed" | "quarantined" | "planned" | "rejected";

export interface RequestOutcome {
  requestId: string;
  host: string | null;
  bdf: string | null;
  outcome: RequestOutcomeKind;
  plan?: Plan;
  refusal?: Refusal;
  /** failed / quarantined / rejected: what went wrong, in one sentence. */
  message?: string;
  /** verified after repairing a scope violation. */
  repaired?: boolean;
  atMs: number;
}

export interface Outcomes {
  record(o: RequestOutcome): void;
  get(requestId: string): RequestOutcome | undefined;
  wait(requestId: string, timeoutMs?: number): Promise<RequestOutcome>;
  /** Reject every pending wait (coordinator stopping). */
  close(reason: string): void;
}

export function createOutcomes(limit = 10_000): Outcomes {
  const done = new Map<string, RequestOutcome>();
  const waiters = new Map<
    string,
    Array<{ resolve: (o: RequestOutcome) => void; reject: (e: Error) => void }>
  >();
  return {
    record(o) {
      if (done.has(o.requestId)) return;
      done.set(o.requestId, o);
      trimOldest(done, limit);
      for (const w of waiters.get(o.requestId) ?? []) w.resolve(o);
      waiters.delete(o.requestId);
    },
    get: (id) => done.get(id),
    wait(requestId, timeoutMs) {
      const known = done.get(requestId);
      if (known) return Promise.resolve(known);
      return new Promise<RequestOutcome>((resolve, reject) => {
        const list = waiters.get(requestId) ?? [];
        let timer: NodeJS.Timeout | undefined;
        const entry = {
          resolve: (o: RequestOutcome) => {
            if (timer) clearTimeout(timer);
            resolve(o);
          },
          reject: (e: Error) => {
            if (timer) clearTimeout(timer);
            reject(e);
          },
        };
        list.push(entry);
        waiters.set(requestId, list);
        if (timeoutMs !== undefined) {
          timer = setTimeout(() => {
            const l = waiters.get(requestId)?.filter((w) => w !== entry) ?? [];
            if (l.length > 0) waiters.set(requestId, l);
            else waiters.delete(requestId);
            reject(new Error(`no outcome for request ${requestId} within ${timeoutMs} ms`));
          }, timeoutMs);
        }
      });
    },
    close(reason) {
      for (const list of waiters.values()) for (const w of list) w.reject(new Error(reason));
      waiters.clear();
    },
  };
}
