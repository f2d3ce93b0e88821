// RecoveryLoop.soon: a device given up here mid-operation gets a pass of its own, 250 ms later and then at twice
// the wait while it is still neither held here nor at rest, until the wait reaches the periodic interval. One
// pass at a time: a periodic pass never joins (and so never stands for) a pass of given-up devices alone.
// The parts around the loop are stand-ins: what is under test is when it looks, and at what.
import { describe, expect, it } from "vitest";
import type { DeviceActors } from "../../services/coordinator/device-actors.ts";
import type { FleetView } from "../../services/coordinator/fleet-view.ts";
import type { LeaseManager } from "../../services/coordinator/leases.ts";
import { SOON_MS, startRecovery } from "../../services/coordinator/recovery.ts";
import type { CoordinatorStore } from "../../services/coordinator/store.ts";
import { silentLogger } from "../../shared/log.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Until `cond` holds (polled), at most `ms`. */
async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error("condition not reached in time");
    await sleep(10);
  }
}

/**
 * A fleet of `active` keys mid-operation by their headers; `take(key)` is what recover() does for each. The
 * periodic pass lists `listed` (default: none, so that only passes of given-up devices look at anything).
 */
function world(active: string[], take: (key: string) => boolean, listed: string[] = []) {
  const held = new Set<string>();
  const looked: Array<{ at: number; key: string }> = [];
  const t0 = performance.now();
  const actors = {
    recover: async (key: string) => {
      looked.push({ at: performance.now() - t0, key });
      if (!take(key)) return false;
      held.add(key);
      return true;
    },
    holdTakeovers: () => () => undefined,
    announcedHere: () => false,
    liveRequests: () => new Set<string>(),
  } as unknown as DeviceActors;
  const leases = {
    owner: "c1",
    instance: "i1",
    get: (key: string) => (held.has(key) ? ({} as never) : undefined),
    holder: async () => null,
  } as unknown as LeaseManager;
  const view = {
    synced: Promise.resolve(),
    keys: () => listed,
    revision: () => 1,
    summary: (key: string) => (active.includes(key) ? { active: !held.has(key), announce: 0 } : undefined),
    suspect: () => undefined,
  } as unknown as FleetView;
  return { held, looked, actors, leases, view, store: {} as CoordinatorStore };
}

describe("recovery of devices given up here", () => {
  it("looks at the given-up device alone, SOON_MS after, and stops once it is held here", async () => {
    const w = world(["h.a", "h.b"], () => true);
    const loop = startRecovery({ ...w, log: silentLogger, intervalMs: 60_000 });
    loop.soon("h.a");
    await until(() => w.looked.length > 0);
    expect(w.looked.map((l) => l.key)).toEqual(["h.a"]);
    expect(w.looked[0]!.at).toBeGreaterThanOrEqual(SOON_MS - 5);
    expect(w.held.has("h.a")).toBe(true);
    // Held now: nothing more is looked at for it.
    await sleep(2 * SOON_MS + 100);
    expect(w.looked).toHaveLength(1);
    await loop.stop();
  });

  it("while its lease is not free, looks again at twice the wait, up to the periodic interval", async () => {
    let tries = 0;
    const w = world(["h.a"], () => ++tries >= 3);
    const loop = startRecovery({ ...w, log: silentLogger, intervalMs: 60_000 });
    loop.soon("h.a");
    await until(() => w.held.has("h.a"));
    await sleep(8 * SOON_MS);
    // 250, then 500 later, then 1,000 later: taken at the third look, and nothing after.
    expect(w.looked).toHaveLength(3);
    const gaps = w.looked.slice(1).map((l, i) => l.at - w.looked[i]!.at);
    expect(gaps[0]).toBeGreaterThanOrEqual(2 * SOON_MS - 5);
    expect(gaps[1]).toBeGreaterThanOrEqual(4 * SOON_MS - 5);
    expect(w.held.has("h.a")).toBe(true);
    await loop.stop();
  });

  it("gives up on it once the wait would reach the interval: the periodic pass covers it from there", async () => {
    const w = world(["h.a"], () => false);
    // Interval 1,000 ms: looks at 250 and 750 ms; the next wait (1,000) is the interval's.
    const loop = startRecovery({ ...w, log: silentLogger, intervalMs: 1000 });
    loop.soon("h.a");
    await until(() => w.looked.length >= 2);
    await sleep(1500);
    expect(w.looked).toHaveLength(2);
    await loop.stop();
  });

  it("a periodic pass waits for a pass of given-up devices, then looks at the whole fleet", async () => {
    let release: () => void = () => undefined;
    const slow = new Promise<void>((r) => {
      release = r;
    });
    const w = world(["h.a", "h.b"], () => true, ["h.a", "h.b"]);
    const recover = w.actors.recover;
    let pending = false;
    w.actors.recover = async (key, hint) => {
      if (key === "h.a") {
        pending = true;
        await slow;
      }
      return recover(key, hint);
    };
    const loop = startRecovery({ ...w, log: silentLogger, intervalMs: 60_000 });
    loop.soon("h.a");
    await until(() => w.looked.length > 0 || pending);
    const periodic = loop.runOnce();
    release();
    const taken = await periodic;
    // The periodic pass ran on its own after the given-up device's: it took h.b, which the other never named.
    expect(taken).toEqual(["h.b"]);
    expect(w.looked.map((l) => l.key)).toEqual(["h.a", "h.b"]);
    await loop.stop();
  });

  it("nothing is looked at after stop", async () => {
    const w = world(["h.a"], () => true);
    const loop = startRecovery({ ...w, log: silentLogger, intervalMs: 60_000 });
    loop.soon("h.a");
    await loop.stop();
    await sleep(SOON_MS + 100);
    expect(w.looked).toEqual([]);
  });
});
