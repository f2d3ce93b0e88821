// A coordinator killed in every state of a reset, and another started: the reset completes, the image is
// never lost, and the device is reset exactly once (counted on the simulated device). The kill is a hard
// crash: the connection dies first, leases are not released, actors are dropped.
import { Kvm } from "@nats-io/kv";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { RESET_PHASES } from "../../machines/policy/types.ts";
import { BUCKETS, deviceKey, subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  control,
  probe,
  publishRequest,
  type RunningCoordinator,
  readEvents,
  startWorld,
  stopAt,
  until,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";

interface Case {
  name: string;
  phase: string;
  point: "before" | "after";
  scope: "io" | "full";
  /** The second coordinator has another id: it must wait for the lease to expire. */
  otherId?: boolean;
}

const CASES: Case[] = [
  ...RESET_PHASES.map((phase) => ({
    name: `full-${phase}`,
    phase,
    point: "before" as const,
    scope: "full" as const,
  })),
  { name: "full-resetting-after", phase: "resetting", point: "after", scope: "full" },
  { name: "io-resetting-before", phase: "resetting", point: "before", scope: "io" },
  { name: "io-resetting-after", phase: "resetting", point: "after", scope: "io" },
  { name: "full-restoring-ttl", phase: "restoring", point: "before", scope: "full", otherId: true },
];

describe("coordinator killed mid-reset", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld(CASES.map((c) => simpleHost({ name: c.name.replace(/[^A-Za-z0-9_-]/g, "-") })));
  });
  afterAll(async () => {
    await w?.close();
  });
  // A case that fails midway leaves its coordinators running: they share the request stream with the next
  // cases and would take their requests (and hold them at this case's hook), so every later case would fail
  // by its timeout instead of on its own. Whatever a case started is gone before the next begins.
  const started: RunningCoordinator[] = [];
  const coordinator = async (opts: Parameters<World["coordinator"]>[0]) => {
    const c = await w.coordinator(opts);
    started.push(c);
    return c;
  };
  afterEach(async () => {
    for (const c of started.splice(0)) await c.crash();
  });

  for (const k of CASES) {
    it(`${k.name}: the reset completes once after a crash ${k.point} ${k.phase}`, async () => {
      const host = k.name;
      const sim = w.sims.get(host)!;
      const before = await probe(w.nc, host, BDF);
      const id = `rc-${k.name}`;
      const stop = stopAt(k.phase, k.point);
      const a = await coordinator({ id: `A-${k.name}`, stepHook: stop.hook });
      await publishRequest(w.js, { requestId: id, host, bdf: BDF, scope: k.scope, reason: "crash test" });
      await stop.atPoint;
      // Gating's write runs beside the step (the request's own write): the crash comes once the request is
      // stored, so the new owner continues it from the record (a crash before that is a request delivered
      // again, after the intake's ack wait: not this case).
      const actors = await new Kvm(w.js).open(BUCKETS.actors);
      expect(
        await until(async () => {
          const e = await actors.get(deviceKey(host, BDF));
          return e?.operation === "PUT" && e.json<{ active: boolean }>().active;
        }),
      ).toBe(true);
      await a.crash();
      stop.release();

      const b = await coordinator({ id: k.otherId ? `B-${k.name}` : `A-${k.name}` });
      const resets = () => (k.scope === "full" ? sim.counters(BDF).cxlReset : sim.counters(BDF).flr);
      // Before releasing, the outcome may be on the stream already (said by a write of its own, made for a
      // step that ran long) or not (it rides with the rest state's write, which never came): then the new
      // owner, resuming from the decision, says it. Either way, once.
      expect(
        await until(async () =>
          (await readEvents(w.jsm, { requestId: id, source: "coordinator" })).some(
            (e) => e.event.kind === "verified",
          ),
        ),
      ).toBe(true);
      // At rest: the lease goes back once "ready" is stored.
      await until(async () => {
        const s = await b.handle.status();
        return s.devices.find((d) => d.host === host)?.state === "ready" && s.leasesHeld.length === 0;
      });
      const status = await b.handle.status();
      expect(status.devices.find((d) => d.host === host)?.state).toBe("ready");
      expect(status.leasesHeld).not.toContain(deviceKey(host, BDF));
      expect(Object.keys(status.inFlight)).not.toContain(id);

      // Exactly one reset reached the device, and the coordinators announced exactly one.
      expect(resets()).toBe(1);
      const events = await readEvents(w.jsm, { requestId: id, source: "coordinator" });
      expect(events.filter((e) => e.event.kind === "reset.started")).toHaveLength(1);
      expect(events.filter((e) => e.event.kind === "verified")).toHaveLength(1);
      expect(events.some((e) => e.event.kind === "recovered")).toBe(true);
      // State is back, read from the device; the image of this request is kept.
      const after = await probe(w.nc, host, BDF);
      expect(after.decoders).toEqual(before.decoders);
      const img = await control<{ requestId: string }>(w.nc, subjects.image, { host, bdf: BDF });
      expect(img.ok && img.result.requestId).toBe(id);
      await b.stop();
    });
  }
});
