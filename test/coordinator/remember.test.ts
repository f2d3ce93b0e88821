// shared/remember.ts: bounded memories of recent entries (agent-link's finished operations, the lease
// manager's seen revisions, outcomes, the step effects' early answers, rate-limit buckets).
import { describe, expect, it } from "vitest";
import { remember, trimOldest } from "../../shared/remember.ts";

describe("bounded memories", () => {
  it("keep the newest max entries, trimmed in batches once an eighth more has come", () => {
    const m = new Map<number, number>();
    const max = 64;
    let largest = 0;
    for (let i = 0; i < 1000; i++) {
      m.set(i, i);
      trimOldest(m, max);
      largest = Math.max(largest, m.size);
      expect(m.size).toBeGreaterThanOrEqual(Math.min(i + 1, max));
    }
    expect(largest).toBe(max + max / 8);
    // Whatever the batch left, it is the newest entries, oldest first.
    const keys = [...m.keys()];
    expect(keys).toEqual(Array.from({ length: keys.length }, (_, j) => 1000 - keys.length + j));
  });

  it("remember makes a key written again the newest: the least recently written goes first", () => {
    const m = new Map<string, number>();
    remember(m, "a", 1, 2);
    remember(m, "b", 2, 2);
    remember(m, "a", 3, 2);
    remember(m, "c", 4, 2);
    expect([...m]).toEqual([
      ["a", 3],
      ["c", 4],
    ]);
  });

  it("works on a Set, and a small bound (no eighth to spare) is exact", () => {
    const s = new Set<string>();
    for (const k of ["a", "b", "c", "d", "e"]) {
      s.add(k);
      trimOldest(s, 3);
      expect(s.size).toBeLessThanOrEqual(3);
    }
    expect([...s]).toEqual(["c", "d", "e"]);
  });
});
