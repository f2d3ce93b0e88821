import { describe, expect, it } from "vitest";
import { pollUntil } from "../../services/agent/ops/wait.ts";
import type { Clock } from "../../shared/hw/backend.ts";

/** A clock under the test's control: sleep advances it, and each read takes `readMs`. */
function manualClock(): Clock & { t: number } {
  const c = {
    t: 0,
    now: () => c.t,
    sleep: async (ms: number) => {
      c.t += ms;
    },
  };
  return c;
}

describe("pollUntil", () => {
  it("reads once more when the last read started before the deadline but returned after it", async () => {
    const clock = manualClock();
    // The condition turns true at t=98; each read sees the state at its start and takes 10 ms.
    const read = async () => {
      const seen = clock.t >= 98;
      clock.t += 10;
      return seen;
    };
    clock.t = 95; // e.g. a timer that fired early: first read starts 5 ms before the deadline
    const r = await pollUntil({ clock, read, done: (v) => v, pollMs: 20, deadline: 100 });
    expect(r.ok).toBe(true);
    expect(r.reads).toBe(2);
  });

  it("times out only after a read that started at or after the deadline", async () => {
    const clock = manualClock();
    const starts: number[] = [];
    const read = async () => {
      starts.push(clock.t);
      clock.t += 1;
      return false;
    };
    const r = await pollUntil({ clock, read, done: (v) => v, pollMs: 20, deadline: 50 });
    expect(r.ok).toBe(false);
    expect(starts.at(-1)).toBeGreaterThanOrEqual(50);
    expect(starts.filter((s) => s >= 50)).toHaveLength(1);
  });
});
