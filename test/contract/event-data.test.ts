// The published schemas against what the services really send: a coordinator and simulated agents on a real
// nats-server run resets that end every way (verified, repaired, failed, quarantined, refused, rejected, dry run,
// waiting, released, release failed), and every event in the stream and every control reply must parse with
// the schema docs/asyncapi.yaml documents it by. A kind published without a schema fails here.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { z } from "zod";
import { formatZodIssues } from "../../shared/bus/codec.ts";
import {
  BreakerResult,
  controlReply,
  ImageResult,
  PlanResult,
  ReleaseResult,
  StatusResult,
  SubmitResult,
} from "../../shared/bus/control-replies.ts";
import {
  AGENT_EVENTS,
  COORDINATOR_EVENTS,
  coordinatorEventOf,
  isAgentEventKind,
  isCoordinatorEventKind,
} from "../../shared/bus/event-data.ts";
import { EventsReply } from "../../shared/bus/requests.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  control,
  publishRequest,
  type RunningCoordinator,
  readEvents,
  rested,
  rootPortHost,
  type StoredEvent,
  startWorld,
  stopAt,
  TEST_POLICY,
  until,
  type World,
} from "../coordinator/helpers.ts";

const BDF = "0000:01:00.0";
const withDriver = {
  driver: "cxl_pci",
  firmware: { memEnable: false, decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000 }] },
};

describe("what the services send parses with the published schemas", () => {
  let w: World;
  let c: RunningCoordinator;
  const replies: Array<{ what: string; schema: z.ZodType; reply: unknown }> = [];
  let events: StoredEvent[] = [];

  const outcome = (requestId: string) => c.handle.waitForOutcome(requestId, 20_000);
  const reply = async (what: string, schema: z.ZodType, subject: string, body: unknown) => {
    const r = await control(w.nc, subject, body);
    replies.push({ what, schema: controlReply(schema), reply: r });
    return r;
  };

  beforeAll(async () => {
    w = await startWorld([
      simpleHost({ name: "plain" }),
      simpleHost({ name: "viol" }),
      simpleHost({ name: "commit" }),
      simpleHost({ name: "kern", device: withDriver }),
      simpleHost({ name: "kernbad", device: withDriver }),
      rootPortHost("multi", 3),
    ]);
    // The first reset on "multi" is held in its resetting step until the second request says it waits.
    const hold = stopAt("resetting");
    const firstOnMulti: typeof hold.hook = (phase, point, info) =>
      info.requestId === "multi-0" ? hold.hook(phase, point, info) : undefined;
    c = await w.coordinator({ policy: { ...TEST_POLICY, maxConcurrentPerHost: 1 }, stepHook: firstOnMulti });
    const req = (requestId: string, host: string, extra: Record<string, unknown> = {}) =>
      publishRequest(w.js, { requestId, host, bdf: BDF, scope: "full", reason: "contract", ...extra });

    // verified (full, then io), a dry run, a rejected request (unknown device, unknown field)
    await req("plain-1", "plain");
    await outcome("plain-1");
    await rested(c.handle, "plain", BDF);
    await req("plain-2", "plain", { scope: "io" });
    await outcome("plain-2");
    await req("plain-dry", "plain", { dryRun: true });
    await req("plain-bad", "plain", { bdf: "0000:09:00.0" });
    await req("plain-field", "plain", { bogus: true });
    await Promise.all(["plain-dry", "plain-bad", "plain-field"].map(outcome));

    // scope violation, repaired
    w.sims.get("viol")!.faults.set(BDF, { name: "flr-clears-hdm" });
    await req("viol-1", "viol", { scope: "io" });
    await outcome("viol-1");

    // verified (a last known good image), then quarantined, refused, release failed, released
    const commit = w.sims.get("commit")!;
    await req("commit-1", "commit");
    await outcome("commit-1");
    await rested(c.handle, "commit", BDF);
    commit.faults.set(BDF, { name: "commit-error", decoder: 0 });
    await req("commit-2", "commit");
    await outcome("commit-2");
    await rested(c.handle, "commit", BDF);
    await req("commit-3", "commit", { scope: "io" });
    await outcome("commit-3");
    const release = { host: "commit", bdf: BDF, operator: "sre-1", reason: "contract", restore: true };
    await reply("release (fails)", ReleaseResult, subjects.release, release);
    commit.faults.clear(BDF);
    await reply("release", ReleaseResult, subjects.release, release);
    await reply("image", ImageResult, subjects.image, { host: "commit", bdf: BDF });

    // the driver taken and given back; a driver that does not bind again (failed)
    await req("kern-1", "kern");
    await outcome("kern-1");
    const bad = w.sims.get("kernbad")!;
    const bind = bad.bindDriver.bind(bad);
    bad.bindDriver = async (bdf, driver, opts) => {
      if (driver === "cxl_pci") throw new Error("probe of cxl_pci failed (-6)");
      return bind(bdf, driver, opts);
    };
    await req("kern-2", "kernbad");
    await outcome("kern-2");

    // one host slot: the second request waits; a submit, its duplicate, a plan by request/reply
    await req("multi-0", "multi", { bdf: "0000:01:00.0", scope: "io" });
    await hold.atPoint;
    await req("multi-1", "multi", { bdf: "0000:02:00.0", scope: "io" });
    const waiting = async () =>
      (await readEvents(w.jsm, { requestId: "multi-1" })).some((e) => e.event.kind === "request.waiting");
    expect(await until(waiting)).toBe(true);
    hold.release();
    await Promise.all(["multi-0", "multi-1"].map(outcome));
    const submit = {
      requestId: "multi-s",
      host: "multi",
      bdf: "0000:03:00.0",
      scope: "io",
      reason: "contract",
    };
    await reply("submit", SubmitResult, subjects.submit("multi"), submit);
    await outcome("multi-s");
    await reply("submit (duplicate)", SubmitResult, subjects.submit("multi"), submit);
    await reply("plan", PlanResult, subjects.plan("multi"), { ...submit, requestId: "multi-p" });
    await reply("plan (selector)", PlanResult, subjects.plan("multi"), {
      requestId: "multi-all",
      host: "multi",
      deviceSelector: { all: true },
      scope: "full",
      reason: "contract",
    });

    await reply("status", StatusResult, subjects.status, {});
    await reply("breaker", BreakerResult, subjects.breaker, { operator: "sre-1", reason: "contract" });
    await reply("events", EventsReply, subjects.events, { kinds: ["verified", "refused"], startSeq: 1 });
    await c.handle.recover();
    events = await readEvents(w.jsm);
  }, 60_000);

  afterAll(async () => {
    await w?.close();
  });

  it("publishes only kinds the contract names", () => {
    const unknown = events
      .map((e) => e.event)
      .filter((e) => !(e.source === "agent" ? isAgentEventKind(e.kind) : isCoordinatorEventKind(e.kind)))
      .map((e) => `${e.source}:${e.kind}`);
    expect([...new Set(unknown)]).toEqual([]);
  });

  it("every event parses with its kind's schema", () => {
    const bad: string[] = [];
    for (const { subject, event } of events) {
      const schema =
        event.source === "agent"
          ? AGENT_EVENTS[event.kind as keyof typeof AGENT_EVENTS]
          : COORDINATOR_EVENTS[event.kind as keyof typeof COORDINATOR_EVENTS];
      const r = schema?.safeParse(event);
      if (r && !r.success) bad.push(`${subject}: ${formatZodIssues(r.error)}`);
    }
    expect(bad).toEqual([]);
  });

  it("covers the ways a request ends", () => {
    const kinds = new Set(events.filter((e) => e.event.source === "coordinator").map((e) => e.event.kind));
    for (const k of [
      "verified",
      "failed",
      "quarantined",
      "refused",
      "request.rejected",
      "request.waiting",
      "plan",
      "scope.violation",
      "driver.rebound",
      "driver.rebind-failed",
      "released",
      "release.failed",
      "breaker.closed",
    ]) {
      expect(kinds, k).toContain(k);
    }
    // A client reads an outcome typed: the refusal's reason, the plan's method.
    const refused = events.map((e) => coordinatorEventOf(e.event)).find((e) => e?.kind === "refused");
    expect(refused?.kind === "refused" && refused.data.refusal.reason).toBe("quarantined");
  });

  it("every control reply parses with its schema", () => {
    const bad: string[] = [];
    for (const { what, schema, reply } of replies) {
      const r = schema.safeParse(reply);
      if (!r.success) bad.push(`${what}: ${formatZodIssues(r.error)}`);
    }
    expect(bad).toEqual([]);
    expect(replies.map((r) => `${r.what}: ${(r.reply as { ok: boolean }).ok}`)).toEqual([
      "release (fails): false",
      "release: true",
      "image: true",
      "submit: true",
      "submit (duplicate): true",
      "plan: true",
      "plan (selector): true",
      "status: true",
      "breaker: true",
      "events: true",
    ]);
  });
});
