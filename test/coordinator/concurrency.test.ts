// 100 requests at once across 20 devices on 4 hosts: every request gets exactly one outcome, no host ever
// runs more resets at once than the policy allows (measured from the published events), and each reset
// counted by a device matches a verified outcome.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HostSpecInput } from "../../shared/sim/index.ts";
import {
  publishRequest,
  type RunningCoordinator,
  readEvents,
  startWorld,
  TEST_POLICY,
  type World,
} from "./helpers.ts";

const HOSTS = ["h0", "h1", "h2", "h3"];
const PER_HOST = 5;
const LIMIT = 2;

/** One host: PER_HOST root ports, one Type-2 device below each. */
function host(name: string): HostSpecInput {
  return {
    name,
    bridges: Array.from({ length: PER_HOST }, (_, i) => ({
      bdf: `0000:00:0${i + 1}.0`,
      kind: "root-port" as const,
      secondaryBus: i + 1,
    })),
    devices: Array.from({ length: PER_HOST }, (_, i) => ({
      bdf: `0000:0${i + 1}:00.0`,
      parent: `0000:00:0${i + 1}.0`,
      firmware: { decoders: [{ base: `0x${(i + 1).toString(16)}00000000`, size: "0x10000000" }] },
    })),
  };
}

/** Largest number of [start, end) intervals that overlap at any point. */
function maxOverlap(intervals: Array<[number, number]>): number {
  const points = intervals.flatMap(([s, e]) => [
    [s, 1],
    [e, -1],
  ]);
  points.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!); // ends before starts at the same instant
  let cur = 0;
  let max = 0;
  for (const [, d] of points) {
    cur += d!;
    max = Math.max(max, cur);
  }
  return max;
}

describe("100 concurrent requests, 20 devices", () => {
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld(HOSTS.map(host) as never);
    c = await w.coordinator({ policy: { ...TEST_POLICY, maxConcurrentPerHost: LIMIT } });
  });
  afterAll(async () => {
    await w?.close();
  });

  it("obeys the per-host limit and gives every request one outcome", async () => {
    const ids: string[] = [];
    const sends: Promise<unknown>[] = [];
    for (let round = 0; round < 5; round++) {
      for (const h of HOSTS) {
        for (let i = 0; i < PER_HOST; i++) {
          const id = `c-${h}-${i}-${round}`;
          ids.push(id);
          sends.push(
            publishRequest(w.js, {
              requestId: id,
              host: h,
              bdf: `0000:0${i + 1}:00.0`,
              scope: "io",
              reason: "load",
            }),
          );
        }
      }
    }
    await Promise.all(sends);
    expect(ids).toHaveLength(100);
    const outcomes = await Promise.all(ids.map((id) => c.handle.waitForOutcome(id, 60_000)));
    const byKind = new Map<string, number>();
    for (const o of outcomes) byKind.set(o.outcome, (byKind.get(o.outcome) ?? 0) + 1);
    // Only two endings are possible here: done, or refused because the device was busy with another one.
    expect([...byKind.keys()].every((k) => k === "verified" || k === "refused")).toBe(true);
    for (const o of outcomes.filter((x) => x.outcome === "refused"))
      expect(o.refusal?.reason).toBe("in-progress");
    expect(byKind.get("verified")).toBeGreaterThanOrEqual(20);

    // Resets counted by the devices = verified outcomes.
    let resets = 0;
    for (const h of HOSTS)
      for (let i = 0; i < PER_HOST; i++) resets += w.sims.get(h)!.counters(`0000:0${i + 1}:00.0`).flr;
    expect(resets).toBe(byKind.get("verified"));

    // Concurrency per host, from the events: a reset runs from reset.started to its outcome.
    const events = await readEvents(w.jsm, { source: "coordinator" });
    let peak = 0;
    for (const h of HOSTS) {
      const started = new Map<string, number>();
      const intervals: Array<[number, number]> = [];
      for (const { event } of events.filter((e) => e.event.host === h && e.event.requestId)) {
        const at = event.data.atMs as number;
        if (event.kind === "reset.started") started.set(event.requestId!, at);
        if (event.kind === "verified" && started.has(event.requestId!))
          intervals.push([started.get(event.requestId!)!, at]);
      }
      expect(intervals.length).toBeGreaterThanOrEqual(PER_HOST);
      expect(maxOverlap(intervals)).toBeLessThanOrEqual(LIMIT);
      peak = Math.max(peak, maxOverlap(intervals));
    }
    // The limit was reached (resets did run side by side), never passed.
    expect(peak).toBe(LIMIT);
    const waited = events.filter((e) => e.event.kind === "request.waiting");
    expect(waited.length).toBeGreaterThan(0);
    const status = await c.handle.status();
    expect(status.waiting).toBe(0);
    expect(Object.keys(status.inFlight)).toHaveLength(0);
  });
});
