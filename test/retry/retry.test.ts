// shared/retry.ts: the one backoff schedule (exponential, jittered) and the retry loop around it.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { backoffDelay, retry, sleepBackoff } from "../../shared/retry.ts";

describe("backoffDelay", () => {
  it("full jitter: the n-th wait lies in [0, min(max, base·2^n)] for any random number", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2000 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 0, max: 100_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (n, baseMs, extra, r) => {
          const maxMs = baseMs + extra;
          const d = backoffDelay(n, { baseMs, maxMs }, () => r);
          expect(d).toBeGreaterThanOrEqual(0);
          // (base 0: 0·2^n, which the oracle must not read as 0·Infinity.)
          expect(d).toBeLessThanOrEqual(baseMs === 0 ? 0 : Math.min(maxMs, baseMs * 2 ** n));
        },
      ),
    );
  });

  it("equal jitter: the n-th wait lies in [cap/2, cap]", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 60 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (n, r) => {
          const cap = Math.min(5000, 100 * 2 ** n);
          const d = backoffDelay(n, { baseMs: 100, maxMs: 5000, jitter: "equal" }, () => r);
          expect(d).toBeGreaterThanOrEqual(cap / 2);
          expect(d).toBeLessThanOrEqual(cap);
        },
      ),
    );
  });

  it("grows by doubling up to the max: the random number's extremes give the cap's bounds", () => {
    const opts = { baseMs: 50, maxMs: 1000 };
    const top = (n: number) => backoffDelay(n, opts, () => 1 - Number.EPSILON);
    expect([0, 1, 2, 3, 4, 5, 40].map((n) => Math.round(top(n)))).toEqual([
      50, 100, 200, 400, 800, 1000, 1000,
    ]);
    expect(backoffDelay(3, opts, () => 0)).toBe(0);
    expect(backoffDelay(3, { ...opts, jitter: "equal" }, () => 0)).toBe(200);
  });

  it("spreads callers: a thousand draws of one attempt are not one value", () => {
    const draws = new Set(
      Array.from({ length: 1000 }, () => backoffDelay(4, { baseMs: 100, maxMs: 10_000 })),
    );
    expect(draws.size).toBeGreaterThan(900);
  });
});

describe("retry", () => {
  it("returns the first success, after the failures before it", async () => {
    let calls = 0;
    const v = await retry(
      async () => {
        calls++;
        if (calls < 3) throw new Error(`fail ${calls}`);
        return "ok";
      },
      { attempts: 5, baseMs: 1, maxMs: 2 },
    );
    expect(v).toBe("ok");
    expect(calls).toBe(3);
  });

  it("honours attempts: the last error itself after exactly that many calls, each wait reported", async () => {
    const seen: Array<[number, number]> = [];
    let calls = 0;
    const errors: Error[] = [];
    const p = retry(
      () => {
        calls++;
        const e = new Error(`fail ${calls}`);
        errors.push(e);
        return Promise.reject(e);
      },
      { attempts: 4, baseMs: 4, maxMs: 8, onRetry: (_e, attempt, delayMs) => seen.push([attempt, delayMs]) },
    );
    await expect(p).rejects.toThrow("fail 4");
    await p.catch((e: unknown) => expect(e).toBe(errors[3]));
    expect(calls).toBe(4);
    expect(seen.map(([a]) => a)).toEqual([1, 2, 3]);
    seen.forEach(([a, d]) => {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(Math.min(8, 4 * 2 ** (a - 1)));
    });
  });

  it("honours the deadline: stops once it has passed, the last wait cut short to meet it", async () => {
    let calls = 0;
    const t0 = performance.now();
    await expect(
      retry(
        () => {
          calls++;
          return Promise.reject(new Error("down"));
        },
        { deadlineMs: 150, baseMs: 40, maxMs: 40, jitter: "equal" },
      ),
    ).rejects.toThrow("down");
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(145);
    expect(took).toBeLessThan(600);
    // Waits of 20-40 ms within 150 ms: at least 4 attempts, at most 9.
    expect(calls).toBeGreaterThanOrEqual(4);
    expect(calls).toBeLessThanOrEqual(9);
  });

  it("retryIf false stops at once with that error, its cause preserved", async () => {
    const cause = new Error("root cause");
    const fatal = Object.assign(new Error("not worth retrying", { cause }), { kind: "bad-input" });
    let calls = 0;
    let retried = 0;
    const p = retry(
      () => {
        calls++;
        return Promise.reject(fatal);
      },
      {
        attempts: 10,
        baseMs: 1000,
        maxMs: 1000,
        retryIf: (e: { kind?: string }) => e.kind !== "bad-input",
        onRetry: () => retried++,
      },
    );
    const t0 = performance.now();
    const got = await p.then(
      () => null,
      (e: unknown) => e,
    );
    expect(got).toBe(fatal);
    expect((got as Error).cause).toBe(cause);
    expect(calls).toBe(1);
    expect(retried).toBe(0);
    expect(performance.now() - t0).toBeLessThan(500);
  });

  it("abort stops the wait at once and rejects with the signal's reason", async () => {
    const ctl = new AbortController();
    let calls = 0;
    const p = retry(
      () => {
        calls++;
        return Promise.reject(new Error("busy"));
      },
      {
        attempts: Number.POSITIVE_INFINITY,
        baseMs: 10_000,
        maxMs: 10_000,
        jitter: "equal",
        signal: ctl.signal,
      },
    );
    const reason = new Error("stopping");
    const t0 = performance.now();
    setTimeout(() => ctl.abort(reason), 30);
    await expect(p).rejects.toBe(reason);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(calls).toBe(1);
  });

  it("an aborted signal stops before the next attempt", async () => {
    const ctl = new AbortController();
    ctl.abort(new Error("gone"));
    let calls = 0;
    await expect(
      retry(
        async () => {
          calls++;
          return 1;
        },
        { attempts: 3, baseMs: 1, maxMs: 1, signal: ctl.signal },
      ),
    ).rejects.toThrow("gone");
    expect(calls).toBe(0);
  });
});

describe("sleepBackoff", () => {
  it("waits the drawn delay and says how long", async () => {
    const t0 = performance.now();
    const d = await sleepBackoff(2, { baseMs: 20, maxMs: 1000, random: () => 0.5 });
    expect(d).toBe(40);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(35);
  });

  it("rejects with the abort reason instead of waiting", async () => {
    const ctl = new AbortController();
    const p = sleepBackoff(0, { baseMs: 60_000, maxMs: 60_000, jitter: "equal", signal: ctl.signal });
    ctl.abort(new Error("stop"));
    await expect(p).rejects.toThrow("stop");
  });
});
