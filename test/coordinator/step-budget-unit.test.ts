// withBudget: the step's budget counted from the start of its work; past it, a timeout naming the phase and
// the work's signal aborted (so it issues no further agent call). createStepGate: the queue before it.
import { describe, expect, it } from "vitest";
import type { StepStop } from "../../machines/steps.ts";
import { createStepGate, type StopFlag, withBudget } from "../../services/coordinator/effects/step-budget.ts";
import { isCxlrcError } from "../../shared/errors.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("withBudget", () => {
  it("passes the work's result through when it ends in time", async () => {
    const parent = new AbortController();
    const work = async () => {
      await sleep(5);
      return 42;
    };
    await expect(withBudget("saving", 200, parent.signal, work)).resolves.toBe(42);
  });

  it("rejects silent work with kind timeout naming the phase and the budget, and aborts its signal", async () => {
    const parent = new AbortController();
    let inner: StopFlag | null = null;
    const started = performance.now();
    const err = await withBudget("resetting", 60, parent.signal, (signal) => {
      inner = signal;
      return new Promise(() => undefined);
    }).catch((e: unknown) => e);
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
    expect(isCxlrcError(err) && err.kind).toBe("timeout");
    expect((err as Error).message).toMatch(/^resetting passed its deadline \(60 ms from the step's start/);
    expect(inner!.aborted).toBe(true);
  });

  it("work that fails on its own keeps its error; the budget's timer does not fire after", async () => {
    const parent = new AbortController();
    const boom = new Error("agent said no");
    await expect(withBudget("verifying", 50, parent.signal, () => Promise.reject(boom))).rejects.toBe(boom);
    await sleep(80); // an unhandled rejection from a left-over timer would fail the run
  });

  it("the parent's abort (the state was left) reaches the work before its next call", async () => {
    const parent = new AbortController();
    const run = withBudget("quiescing", 10_000, parent.signal, async (stop) => {
      expect(stop.aborted).toBe(false);
      await sleep(20);
      if (stop.aborted) throw new Error("stopped");
      return "went on";
    });
    parent.abort();
    await expect(run).rejects.toThrow("stopped");
  });

  it("with a confirmation, work that ends while the bus confirms the deadline keeps its result", async () => {
    const parent = new AbortController();
    const confirmed: number[] = [];
    // The deadline passes at 40 ms; the bus confirms 60 ms later; the work ends at 70 ms (its reply was
    // waiting unread in this process).
    const confirm = async (passedAt: number) => {
      confirmed.push(passedAt);
      await sleep(60);
    };
    const work = async () => {
      await sleep(70);
      return "read late";
    };
    await expect(withBudget("savingImage", 40, parent.signal, work, confirm)).resolves.toBe("read late");
    expect(confirmed).toHaveLength(1);
  });

  it("with a confirmation, the budget counts from the end of the turn that started the step", async () => {
    const parent = new AbortController();
    // The work's request can leave only when this turn ends; its answer comes 30 ms after that.
    const work = () =>
      new Promise<string>((resolve) => setImmediate(() => setTimeout(() => resolve("answered"), 30)));
    const run = withBudget("probing", 50, parent.signal, work, async () => undefined);
    const until = performance.now() + 100;
    while (performance.now() < until) {
      // this turn runs past the whole budget
    }
    await expect(run).resolves.toBe("answered");
  });

  it("with a confirmation, silent work still times out once the bus confirms", async () => {
    const parent = new AbortController();
    let inner: StopFlag | null = null;
    const started = performance.now();
    const err = await withBudget(
      "restoring",
      30,
      parent.signal,
      (signal) => {
        inner = signal;
        return new Promise(() => undefined);
      },
      async () => {
        await sleep(40);
      },
    ).catch((e: unknown) => e);
    expect(performance.now() - started).toBeGreaterThanOrEqual(65);
    expect(isCxlrcError(err) && err.kind).toBe("timeout");
    expect(inner!.aborted).toBe(true);
  });

  it("time granted to an absent agent moves the deadline on, up to the grace; the error says how much", async () => {
    const parent = new AbortController();
    const grants: number[] = [];
    const started = performance.now();
    const err = await withBudget(
      "savingImage",
      50,
      parent.signal,
      async (signal) => {
        // The agent away: 40 ms asked for four times, with 100 ms of grace in all.
        for (let i = 0; i < 4; i++) {
          grants.push(signal.extend!(40));
          await sleep(40);
        }
        return new Promise(() => undefined);
      },
      undefined,
      100,
    ).catch((e: unknown) => e);
    // 40, 40, the 20 left (give or take a timer firing a little early), then nothing.
    expect(grants[0]).toBe(40);
    expect(grants[3]).toBe(0);
    const total = grants.reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThanOrEqual(100);
    expect(total).toBeLessThan(103);
    // The budget's 50 ms and the 100 ms granted.
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
    expect(isCxlrcError(err) && err.kind).toBe("timeout");
    expect((err as Error).message).toBe(
      "savingImage passed its deadline (50 ms from the step's start, and 100 ms more while its agent was away, no answer in time)",
    );
    expect(isCxlrcError(err) && err.details).toEqual({ phase: "savingImage", timeoutMs: 50, absentMs: 100 });
  });

  it("calls of one step waiting for an absent agent at once share the grace: it counts wall time", async () => {
    const parent = new AbortController();
    const started = performance.now();
    const seen: number[][] = [];
    const err = await withBudget(
      "savingImage",
      50,
      parent.signal,
      async (signal) => {
        // Four functions' saves, each waiting 40 ms at a time for the same agent, 100 ms of grace in all.
        const one = async () => {
          const got: number[] = [];
          for (let i = 0; i < 4; i++) {
            const g = signal.extend!(40);
            got.push(g);
            await sleep(g > 0 ? g : 40);
          }
          seen.push(got);
        };
        await Promise.all([one(), one(), one(), one()]);
        return new Promise(() => undefined);
      },
      undefined,
      100,
    ).catch((e: unknown) => e);
    // Every one of them waited on the grace for about as long as one alone would have (not a quarter of it).
    expect(seen).toHaveLength(4);
    for (const got of seen) expect(got.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(80);
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
    expect(isCxlrcError(err) && err.details).toEqual({ phase: "savingImage", timeoutMs: 50, absentMs: 100 });
  });

  it("work that ends within the granted time keeps its result; nothing is granted without a grace", async () => {
    const parent = new AbortController();
    let none = -1;
    await expect(
      withBudget("restoring", 30, parent.signal, async (signal) => {
        none = signal.extend!(10);
        return 1;
      }),
    ).resolves.toBe(1);
    expect(none).toBe(0);
    await expect(
      withBudget(
        "restoring",
        30,
        parent.signal,
        async (signal) => {
          signal.extend!(60);
          await sleep(60);
          return 2;
        },
        undefined,
        1000,
      ),
    ).resolves.toBe(2);
  });

  it("a wait outside the budget (the store electing a leader) does not count: the work ends in time", async () => {
    const parent = new AbortController();
    const started = performance.now();
    // 60 ms budget; 150 ms waiting for the store (past the deadline), then 40 ms of the agent's own time.
    const out = await withBudget("restoring", 60, parent.signal, async (signal) => {
      await sleep(10);
      const image = await signal.outside!(sleep(150).then(() => "image"));
      await sleep(40);
      return image;
    });
    expect(out).toBe("image");
    expect(performance.now() - started).toBeGreaterThanOrEqual(195);
  });

  it("after a wait outside the budget only what was left of it counts: silent work still times out", async () => {
    const parent = new AbortController();
    const started = performance.now();
    // 10 ms used, 100 ms outside (the timer fires meanwhile), 50 ms left after it: a timeout near 160 ms.
    const err = await withBudget("verifying", 60, parent.signal, async (signal) => {
      await sleep(10);
      await signal.outside!(sleep(100));
      return new Promise(() => undefined);
    }).catch((e: unknown) => e);
    const took = performance.now() - started;
    expect(isCxlrcError(err) && err.kind).toBe("timeout");
    expect(took).toBeGreaterThanOrEqual(150);
    expect(took).toBeLessThan(400);
  });

  it("a wait outside the budget that fails hands its error to the work, and the budget goes on", async () => {
    const parent = new AbortController();
    const boom = new Error("images bucket: no leader");
    const err = await withBudget("restoring", 50, parent.signal, async (signal) => {
      await signal.outside!(sleep(80).then(() => Promise.reject(boom)));
      return "unreached";
    }).catch((e: unknown) => e);
    expect(err).toBe(boom);
  });
});

/** A step's stop flag as the step runner gives it (machines/steps.ts StepStop), stopped by hand. */
function stopFlag(): StepStop & { stop(): void } {
  const listeners: Array<() => void> = [];
  let aborted = false;
  return {
    get aborted() {
      return aborted;
    },
    onStop(fn) {
      listeners.push(fn);
      return () => {
        const i = listeners.indexOf(fn);
        if (i >= 0) listeners.splice(i, 1);
      };
    },
    stop() {
      aborted = true;
      for (const fn of listeners.splice(0)) fn();
    },
  };
}

describe("createStepGate", () => {
  it("runs at most `limit` steps at once, the rest in arrival order, and a step left while waiting never runs", async () => {
    const gate = createStepGate(2);
    const started: number[] = [];
    const finish: Array<() => void> = [];
    const step = (i: number, stop = stopFlag()) =>
      gate.run(stop, async () => {
        started.push(i);
        await new Promise<void>((r) => finish.push(r));
        return i;
      });
    const left = stopFlag();
    const runs = [step(1), step(2), step(3, left), step(4)];
    await sleep(5);
    expect(started).toEqual([1, 2]);
    expect(gate.load()).toEqual({ running: 2, waiting: 2 });
    left.stop();
    await expect(runs[2]).rejects.toBeDefined();
    finish.shift()!();
    await sleep(5);
    expect(started).toEqual([1, 2, 4]);
    while (finish.length > 0) finish.shift()!();
    await expect(Promise.all([runs[0], runs[1], runs[3]])).resolves.toEqual([1, 2, 4]);
    expect(gate.load()).toEqual({ running: 0, waiting: 0 });
  });

  it("a waiting step whose actor stopped (aborted, no listener told) passes its turn on and never runs", async () => {
    const gate = createStepGate(1);
    const started: number[] = [];
    const finish: Array<() => void> = [];
    let actorStopped = false;
    const ofStoppedActor: StepStop = {
      get aborted() {
        return actorStopped;
      },
      onStop: () => () => undefined,
    };
    const step = (i: number, stop: StepStop = stopFlag()) =>
      gate.run(stop, async () => {
        started.push(i);
        await new Promise<void>((r) => finish.push(r));
        return i;
      });
    const runs = [step(1), step(2, ofStoppedActor), step(3)];
    await sleep(5);
    actorStopped = true;
    finish.shift()!();
    await expect(runs[1]).rejects.toThrow(/stopped before it started/);
    await sleep(5);
    expect(started).toEqual([1, 3]);
    finish.shift()!();
    await expect(Promise.all([runs[0], runs[2]])).resolves.toEqual([1, 3]);
    expect(gate.load()).toEqual({ running: 0, waiting: 0 });
  });
});
