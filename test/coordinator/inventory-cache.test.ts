// The inventory cache: a fresh read starts after it was asked for; callers asking while one runs share the
// next one (one call per host at a time), so a host whose devices all re-gate at once costs one or two.
import { describe, expect, it } from "vitest";
import type { AgentLink } from "../../services/coordinator/agent-link.ts";
import { createInventoryCache } from "../../services/coordinator/inventory.ts";

describe("inventory cache, fresh reads", () => {
  it("fresh reads share a call that starts after they asked; one call per host at a time", async () => {
    const calls: Array<{ release: () => void; startedAfter: number }> = [];
    let ended = 0;
    const link = {
      call: (host: string) =>
        new Promise((resolve) => {
          const n = calls.length;
          calls.push({
            startedAfter: ended,
            release: () => {
              ended++;
              resolve({ host, devices: [], bridges: [], n });
            },
          });
        }),
    } as unknown as AgentLink;
    const cache = createInventoryCache({} as never, { timeoutMs: 1000, link });
    const tick = () => new Promise((r) => setTimeout(r, 5));
    // Ten devices re-gating at once: one call, started after all ten asked.
    const first = Array.from({ length: 10 }, () => cache.get("h1", true));
    await tick();
    expect(calls).toHaveLength(1);
    // Asked while it runs: they may not use it (it started before they asked); they share the next one.
    const second = Array.from({ length: 5 }, () => cache.get("h1", true));
    await tick();
    expect(calls).toHaveLength(1);
    calls[0]!.release();
    await tick();
    expect(calls).toHaveLength(2);
    expect(calls[1]!.startedAfter).toBe(1);
    calls[1]!.release();
    const got = (await Promise.all([...first, ...second])) as unknown as Array<{ n: number }>;
    expect(got.map((g) => g.n)).toEqual([...Array(10).fill(0), ...Array(5).fill(1)]);
    // Not fresh: the cached answer, no call.
    expect(((await cache.get("h1")) as unknown as { n: number }).n).toBe(1);
    expect(calls).toHaveLength(2);
    // Another host is not held up by this one.
    void cache.get("h2", true);
    await tick();
    expect(calls).toHaveLength(3);
  });
});
