// A step's time budget (Temporal's startToCloseTimeout): declared once per phase by the lifecycle machine
// (input.timeoutMs), counted here from the moment the step's own work starts. Past it the step rejects with a
// CxlrcError of kind "timeout" naming the phase, and the work's signal is aborted so it stops issuing calls.
import { CxlrcError } from "../../shared/errors.ts";

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
