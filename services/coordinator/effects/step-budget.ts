// A step's time budget (Temporal's startToCloseTimeout): declared once per phase by the lifecycle machine
// (input.timeoutMs), counted here from the moment the step's own work starts. Past it the step rejects with a
// CxlrcError of kind "timeout" naming the phase, and the work's stop flag is set so it issues no further call.
// `confirm`: the budget is spent only once the bus says so (shared/bus/deadline-check.ts): a reply this
// process has not read yet because it was busy still counts as in time.

import type { StepStop } from "../../../machines/steps.ts";
import { afterThisTurn } from "../../../shared/bus/deadline-check.ts";
import { CxlrcError } from "../../../shared/errors.ts";

/**
 * What a step's work checks before each call it issues: set once its budget is spent or its state was left. A
 * flag read on demand, not an AbortController: nothing listens, and a controller with its listener per step
 * was a measurable share of the coordinator's CPU per reset.
 */
export interface StopFlag {
  readonly aborted: boolean;
  /**
   * The step's agent is absent from the bus (nobody answered: restarting; or frozen: no reply and no answer to
   * its ping) and a call would wait `ms` from now before asking again, or has waited `ms` for it: the budget
   * grows by that time, within its grace (withBudget absentGraceMs).
   * Returns how much of the `ms` the caller may wait on the budget's account (0: no grace left, or none). The
   * grace counts wall time: calls of one step waiting at once (the functions of a plan) share what they cover.
   */
  extend?(ms: number): number;
  /**
   * Wait for the bus's store or lease bucket (the image to restore, a lease to confirm): the time `p` takes is not
   * the agent's, so it is not counted against the budget, whatever it is (a bucket electing a leader after a NATS
   * node was lost). A budget that runs out meanwhile ends only once `p` settles, counting the time after it.
   */
  outside?<T>(p: Promise<T>): Promise<T>;
}

/** A flag that never stops (work that must finish whatever its caller does). */
export const NEVER_STOPS: StopFlag = Object.freeze({ aborted: false });

export function withBudget<T>(
  phase: string,
  timeoutMs: number,
  parent: StopFlag,
  work: (stop: StopFlag) => Promise<T>,
  confirm?: (passedAt: number) => Promise<void>,
  absentGraceMs = 0,
): Promise<T> {
  let spent = false;
  let settled = false;
  /**
   * Grace for an absent agent still to grant, granted since the timer was armed, and the moment up to which
   * grants cover the wait already.
   */
  let graceLeft = absentGraceMs;
  let extraMs = 0;
  let coveredUntil = 0;
  /** Waits outside the budget running now, since when (the first of them), and the timer that fired meanwhile. */
  let outsideWaits = 0;
  let outsideSince = 0;
  let firedOutsideAt: number | null = null;
  let rearm: (afterMs: number) => void = () => undefined;
  const stop: StopFlag = {
    get aborted() {
      return spent || parent.aborted;
    },
    extend(ms) {
      if (settled || spent || parent.aborted || !(ms > 0)) return 0;
      const now = performance.now();
      const from = Math.max(now, coveredUntil);
      // Only what no earlier grant covers is taken from the grace (and added to the budget).
      const add = Math.min(Math.max(0, now + ms - from), graceLeft);
      graceLeft -= add;
      extraMs += add;
      coveredUntil = from + add;
      return Math.max(0, Math.min(ms, coveredUntil - now));
    },
    outside(p) {
      if (settled) return p;
      if (outsideWaits++ === 0) outsideSince = performance.now();
      const end = () => {
        if (--outsideWaits > 0) return;
        const now = performance.now();
        extraMs += now - outsideSince;
        if (firedOutsideAt !== null) {
          // The budget had what the timer found left when the wait began: that much, from now.
          const left = Math.max(0, extraMs - (now - firedOutsideAt));
          firedOutsideAt = null;
          extraMs = 0;
          rearm(left);
        }
      };
      // Watched beside, not wrapped: the caller awaits `p` itself, in as many turns as without a budget (the
      // order in which a step's calls leave depends on it: a save and the read right behind it).
      p.then(end, end);
      return p;
    },
  };
  let timer: NodeJS.Timeout | undefined;
  // One promise settled by whichever comes first, the work or its budget (not a race of two, with a third for
  // its clean-up: a step of every device runs through here, a dozen a reset).
  return new Promise<T>((resolve, reject) => {
    const settle = () => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      return true;
    };
    const onTimer = async () => {
      // A wait outside the budget is running: the budget ends after it, by what is left then.
      if (outsideWaits > 0) {
        firedOutsideAt = performance.now();
        return;
      }
      // Time granted to an absent agent, or spent outside the budget, meanwhile: it ends that much later.
      if (extraMs > 0) {
        const more = extraMs;
        extraMs = 0;
        rearm(more);
        return;
      }
      if (confirm) await confirm(performance.now());
      if (settled) return;
      spent = true;
      settle();
      const absentMs = Math.round(absentGraceMs - graceLeft);
      reject(
        new CxlrcError(
          "timeout",
          `${phase} passed its deadline (${timeoutMs} ms from the step's start${
            absentMs > 0 ? `, and ${absentMs} ms more while its agent was away` : ""
          }, no answer in time)`,
          absentMs > 0 ? { phase, timeoutMs, absentMs } : { phase, timeoutMs },
        ),
      );
    };
    rearm = (afterMs) => {
      clearTimeout(timer);
      if (!settled) timer = setTimeout(onTimer, afterMs);
    };
    const arm = () => rearm(timeoutMs);
    // With a confirmation (the bus's clock), counted like the step's calls: from the end of this turn, once
    // its first request has left (shared/bus/deadline-check.ts afterThisTurn).
    if (confirm) afterThisTurn(arm);
    else arm();
    let running: Promise<T>;
    try {
      running = work(stop);
    } catch (err) {
      running = Promise.reject(err);
    }
    running.then(
      (value) => {
        if (settle()) resolve(value);
      },
      (err: unknown) => {
        if (settle()) reject(err);
      },
    );
  });
}

/**
 * At most `limit` steps run at once; the others wait, in arrival order, before their budget starts. An
 * overloaded coordinator queues here instead of letting every step start and then miss its budget because
 * the event loop (or the agents) could not serve them all.
 */
export interface StepGate {
  /** `stop`: a step stopped while it waits leaves the queue (its state was left). */
  run<T>(stop: StepStop, work: () => Promise<T>): Promise<T>;
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
    async run(stop, work) {
      if (running >= limit || waiting.length > 0) {
        await new Promise<void>((resolve, reject) => {
          const go = () => {
            off();
            // Stopped without leaving its state (its actor stopped: no listener is told): its turn passes on.
            if (stop.aborted) {
              running--;
              next();
              reject(new Error("step stopped before it started"));
              return;
            }
            resolve();
          };
          const off = stop.onStop(() => {
            const i = waiting.indexOf(go);
            if (i >= 0) waiting.splice(i, 1);
            reject(new Error("step left before it started"));
          });
          waiting.push(go);
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
