// Two live coordinators: a device mid-reset under one coordinator's lease is never taken by the other, even
// over several lease times (renewal works); and under load shared by both, no device is ever reset by two
// at once and every request ends once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StepHook } from "../../services/coordinator/effects/agent-actors.ts";
import { openStore } from "../../services/coordinator/store.ts";
import { encodeJson } from "../../shared/bus/codec.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  LEASE_TTL_MS,
  publishRequest,
  readEvents,
  rootPortHost,
  startWorld,
  TEST_POLICY,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";
const OUTCOME_KINDS = new Set(["verified", "refused", "failed", "quarantined"]);

describe("two coordinators", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "held" }), rootPortHost("m0", 4), rootPortHost("m1", 4)]);
  });
  afterAll(async () => {
    await w?.close();
  });

  it("a live coordinator keeps its device: the other never takes it over", async () => {
    let reached: () => void = () => undefined;
    const atReset = new Promise<void>((r) => {
      reached = r;
    });
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const hook: StepHook = async (phase, point, info) => {
      if (info.host === "held" && phase === "resetting" && point === "before") {
        reached();
        await held;
      }
    };
    // Phase deadlines longer than the hold (the machine would otherwise fail the phase, rightly).
    const a = await w.coordinator({
      id: "ka",
      stepHook: hook,
      policy: { ...TEST_POLICY, agentCallTimeoutMs: 30_000 },
    });
    await publishRequest(w.js, { requestId: "held-1", host: "held", bdf: BDF, scope: "full", reason: "x" });
    await atReset;
    const b = await w.coordinator({ id: "kb" });
    // Several lease times, several recovery passes of b: a renews, b leaves the device alone.
    await new Promise((r) => setTimeout(r, 2.5 * LEASE_TTL_MS));
    await b.handle.recover();
    // b reports the device (fleet status, from the stored actor) as a's, mid-reset, and has no actor of it.
    const seen = (await b.handle.status()).devices.filter((d) => d.host === "held");
    expect(
      seen.map((d) => ({ owner: d.owner, local: d.local, leaseHeld: d.leaseHeld, state: d.state })),
    ).toEqual([{ owner: "ka", local: false, leaseHeld: false, state: "resetting" }]);
    expect((await a.handle.status()).leasesHeld).toContain("held.0000-01-00-0");
    release();
    const out = await a.handle.waitForOutcome("held-1", 20_000);
    expect(out.outcome).toBe("verified");
    expect(w.sims.get("held")!.counters(BDF).cxlReset).toBe(1);
    const events = await readEvents(w.jsm, { requestId: "held-1", source: "coordinator" });
    expect(events.some((e) => e.event.kind === "recovered")).toBe(false);
    expect(new Set(events.map((e) => e.event.data.coordinator))).toEqual(new Set(["ka"]));
    await a.stop();
    await b.stop();
  });

  it("shared load: no device is reset by two coordinators at once; every request ends once", async () => {
    const c1 = await w.coordinator({ id: "l1" });
    const c2 = await w.coordinator({ id: "l2" });
    const ids: string[] = [];
    const sends: Promise<unknown>[] = [];
    for (let round = 0; round < 4; round++) {
      for (const h of ["m0", "m1"]) {
        for (let i = 1; i <= 4; i++) {
          const id = `m-${h}-${i}-${round}`;
          ids.push(id);
          sends.push(
            publishRequest(w.js, {
              requestId: id,
              host: h,
              bdf: `0000:0${i}:00.0`,
              scope: "io",
              reason: "x",
            }),
          );
        }
      }
    }
    await Promise.all(sends);
    // Outcomes come from either coordinator: read them from the event stream.
    let events = await readEvents(w.jsm, { source: "coordinator" });
    const ended = () =>
      new Set(
        events
          .filter((e) => OUTCOME_KINDS.has(e.event.kind) && e.event.requestId)
          .map((e) => e.event.requestId),
      );
    for (let i = 0; i < 500 && !ids.every((id) => ended().has(id)); i++) {
      await new Promise((r) => setTimeout(r, 20));
      events = await readEvents(w.jsm, { source: "coordinator" });
    }
    for (const id of ids) {
      const outs = events.filter((e) => e.event.requestId === id && OUTCOME_KINDS.has(e.event.kind));
      expect(outs, id).toHaveLength(1);
    }
    let verified = 0;
    for (const h of ["m0", "m1"]) {
      for (let i = 1; i <= 4; i++) {
        const bdf = `0000:0${i}:00.0`;
        const mine = events.filter((e) => e.event.host === h && e.event.bdf === bdf && e.event.requestId);
        const intervals: Array<[number, number]> = [];
        const start = new Map<string, number>();
        for (const { event } of mine) {
          if (event.kind === "reset.started") start.set(event.requestId!, event.data.atMs as number);
          if (event.kind === "verified")
            intervals.push([start.get(event.requestId!)!, event.data.atMs as number]);
        }
        intervals.sort((x, y) => x[0] - y[0]);
        for (let k = 1; k < intervals.length; k++)
          expect(intervals[k]![0]).toBeGreaterThanOrEqual(intervals[k - 1]![1]);
        expect(w.sims.get(h)!.counters(bdf).flr).toBe(intervals.length);
        verified += intervals.length;
      }
    }
    expect(verified).toBeGreaterThanOrEqual(8);
    await c1.stop();
    await c2.stop();
  });
});

// Its own world: the leases bucket keeps the lease time of the coordinator that created it.
const DEAD_TTL_MS = 6000;
describe("a peer that died holding a device", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "dead" })]);
  });
  afterAll(async () => {
    await w?.close();
  });

  it("a request refused while a dead peer's lease runs is decided once: the same request again is a duplicate", async () => {
    let reached: () => void = () => undefined;
    const atReset = new Promise<void>((r) => {
      reached = r;
    });
    const hook: StepHook = async (phase, point, info) => {
      if (info.host === "dead" && phase === "resetting" && point === "before") {
        reached();
        await new Promise(() => undefined); // never: the process dies here
      }
    };
    const a = await w.coordinator({ id: "da", stepHook: hook, leaseTtlMs: DEAD_TTL_MS });
    await publishRequest(w.js, { requestId: "dead-1", host: "dead", bdf: BDF, scope: "full", reason: "x" });
    await atReset;
    await a.crash();
    const b = await w.coordinator({ id: "db", leaseTtlMs: DEAD_TTL_MS });
    // The same request twice on the stream (no msgID: what a redelivery after a lost ack looks like), while
    // the dead coordinator's lease still runs and its stored actor is mid-reset.
    const body = encodeJson({ requestId: "busy-1", host: "dead", bdf: BDF, scope: "full", reason: "x" });
    await w.js.publish(subjects.request("dead"), body);
    await w.js.publish(subjects.request("dead"), body);
    const first = await b.handle.waitForOutcome("busy-1", 10_000);
    expect(first.outcome).toBe("refused");
    expect(first.message).toMatch(/driven by coordinator da for request dead-1/);
    // The dead coordinator's reset is taken over after its lease and completes once.
    expect((await b.handle.waitForOutcome("dead-1", 20_000)).outcome).toBe("verified");
    expect(w.sims.get("dead")!.counters(BDF).cxlReset).toBe(1);
    const events = await readEvents(w.jsm, { requestId: "busy-1", source: "coordinator" });
    expect(events.filter((e) => OUTCOME_KINDS.has(e.event.kind)).map((e) => e.event.kind)).toEqual([
      "refused",
    ]);
    expect(events.filter((e) => e.event.kind === "request.duplicate")).toHaveLength(1);
    // The decision is stored: whoever gets the request next answers the same.
    const store = await openStore(w.nc, { leaseTtlMs: DEAD_TTL_MS });
    expect((await store.getDecision("busy-1"))?.event.kind).toBe("refused");
    expect(await store.getDecision("dead-1")).toBeNull();
    await b.stop();
  }, 60_000);
});
