// shared/wait.ts: a bounded wait says which came first, passes a rejection on, and leaves no timer behind.
import { describe, expect, it } from "vitest";
import { waitAtMost } from "../../shared/wait.ts";

describe("waitAtMost", () => {
  it("true when the promise resolves first, false when the bound passes first", async () => {
    expect(await waitAtMost(Promise.resolve(1), 1000)).toBe(true);
    const t0 = performance.now();
    expect(await waitAtMost(new Promise(() => undefined), 30)).toBe(false);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(25);
  });

  it("passes a rejection on, and clears its timer either way", async () => {
    await expect(waitAtMost(Promise.reject(new Error("boom")), 1000)).rejects.toThrow("boom");
    const before = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    await waitAtMost(Promise.resolve(), 60_000);
    await waitAtMost(Promise.reject(new Error("x")), 60_000).catch(() => undefined);
    expect(process.getActiveResourcesInfo().filter((r) => r === "Timeout").length).toBe(before);
  });
});
