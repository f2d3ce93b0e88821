// A step's time budget (Temporal's startToCloseTimeout): declared once per phase by the lifecycle machine
// (input.timeoutMs), counted here from the moment the step's own work starts. Past it the step rejects with a
// CxlrcError of kind "timeout" naming the phase, and the work's signal is aborted so it stops issuing calls.
import { CxlrcError } from "../../../shared/errors.ts";

export function withBudget<T>(
  phase: string,
  timeoutMs: number,
  parent: AbortSignal,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const budget = new AbortController();
  const cancel = () => budget.abort();
  parent.addEventListener("abort", cancel, { once: true });
  if (parent.aborted) budget.abort();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      budget.abort();
      reject(
        new CxlrcError(
          "timeout",
          `${phase} passed its deadline (${timeoutMs} ms from the step's start; agent silent)`,
          { phase, timeoutMs },
        ),
      );
    }, timeoutMs);
  });
  return Promise.race([work(budget.signal), expired]).finally(() => {
    clearTimeout(timer);
    parent.removeEventListener("abort", cancel);
  });
}

/**
 * At most `limit` steps run at once; the others wait, in arrival order, before their budget starts. An
 * overloaded coordinator queues here instead of letting every step start and then miss its budget because
 * the event loop (or the agents) could not serve them all.
 */
export interface StepGate {
  run<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T>;
  /** Steps running now, and waiting. */
  load(): { running: number; waiting: number };
}

/** Steps a coordinator runs at once (agent calls and stores); the others queue. */
export const MAX_RUNNING_STEPS = 64;

export function createStepGate(limit: number): StepGate {
  let running = 0;
  const waiting: Array<() => void> = [];
  const next = () => {
    while (running < limit && waiting.length > 0) {
      running++;
      waiting.shift()!();
    }
  };
  return {
    async run(signal, work) {
      if (running >= limit || waiting.length > 0) {
        await new Promise<void>((resolve, reject) => {
          const go = () => {
            signal.removeEventListener("abort", quit);
            resolve();
          };
          const quit = () => {
            const i = waiting.indexOf(go);
            if (i >= 0) waiting.splice(i, 1);
            reject(signal.reason ?? new Error("step left before it started"));
          };
          waiting.push(go);
          signal.addEventListener("abort", quit, { once: true });
        });
      } else {
        running++;
      }
      try {
        return await work();
      } finally {
        running--;
        next();
      }
    },
    load: () => ({ running, waiting: waiting.length }),
  };
}
