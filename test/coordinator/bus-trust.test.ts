// What the coordinator believes and answers comes from the bus, not from what a message says about itself
// (issue #20), against a real nats-server:
// - a request is for the host its subject names: a body naming another host is rejected (stream and
//   plan/submit), naming both;
// - a control answer goes only to a caller's inbox: a reply subject aimed at the JetStream or KV API (or
//   anything else) gets no answer at all, changes nothing, and is counted;
// - outcome event ids cannot be predicted by a third party, are the same on every coordinator, and a message
//   published first under the old predictable id does not stop the real outcome from being stored.
import type { Msg } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore } from "../../services/coordinator/store.ts";
import { encodeJson, makeEvent } from "../../shared/bus/codec.ts";
import { STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  control,
  LEASE_TTL_MS,
  publishRequest,
  type RunningCoordinator,
  readEvents,
  sleep,
  startWorld,
  until,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";

describe("the coordinator trusts the bus, not the message", () => {
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "alpha" }), simpleHost({ name: "bravo" })]);
    c = await w.coordinator({ metricsPort: 0 });
  });
  afterAll(async () => {
    await w?.close();
  });

  it("a request whose body names another host than its subject is rejected, naming both", async () => {
    // Published on alpha's subject (what a controller scoped to alpha may do), body naming bravo.
    await w.js.publish(
      subjects.request("alpha"),
      encodeJson({ requestId: "cross-1", host: "bravo", bdf: BDF, scope: "full", reason: "x" }),
      { msgID: "cross-1" },
    );
    const out = await c.handle.waitForOutcome("cross-1", 10_000);
    expect(out.outcome).toBe("rejected");
    expect(out.message).toBe(
      'reset request names host "bravo" but was published on host "alpha"\'s subject cxlrc.req.reset.alpha',
    );
    // Announced under the subject's host (the one the publisher spoke for), once.
    const events = await readEvents(w.jsm, { requestId: "cross-1" });
    expect(events.map((e) => `${e.subject} ${e.event.kind}`)).toEqual([
      "cxlrc.evt.alpha.agent.request.rejected request.rejected",
    ]);
    expect(w.sims.get("bravo")!.counters(BDF)).toMatchObject({ flr: 0, cxlReset: 0, conventionalReset: 0 });

    for (const [subject, what] of [
      [subjects.plan("alpha"), "plan request"],
      [subjects.submit("alpha"), "reset request"],
    ] as const) {
      const r = await control(w.nc, subject, {
        requestId: `cross-${what.replace(" ", "-")}`,
        host: "bravo",
        bdf: BDF,
        scope: "io",
        reason: "x",
      });
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.error.kind).toBe("bad-input");
        expect(r.error.message).toBe(
          `${what} names host "bravo" but was sent on host "alpha"'s subject ${subject}`,
        );
        expect(r.error.details).toMatchObject({ fields: ["host"], host: "bravo", subjectHost: "alpha" });
      }
    }
    // The same on the right subject works.
    const ok = await control<{ decisions: Array<{ plan?: unknown }> }>(w.nc, subjects.plan("bravo"), {
      requestId: "plan-bravo",
      host: "bravo",
      bdf: BDF,
      scope: "io",
      reason: "x",
    });
    expect(ok.ok && ok.result.decisions[0]?.plan).toBeTruthy();
  });

  it("a control answer goes only to a caller's inbox: $JS.API and $KV reply subjects get nothing", async () => {
    await publishRequest(w.js, { requestId: "seed-1", host: "alpha", bdf: BDF, scope: "io", reason: "x" });
    expect((await c.handle.waitForOutcome("seed-1", 20_000)).outcome).toBe("verified");
    const eventsBefore = (await w.jsm.streams.info(STREAMS.events.name)).state.messages;
    const requestsBefore = (await w.jsm.streams.info(STREAMS.requests.name)).state.messages;
    expect(eventsBefore).toBeGreaterThan(0);
    // Anything a refused answer would have been published on, seen by a plain subscriber.
    const leaked: string[] = [];
    const watch = ["$JS.API.>", "$KV.>", "cxlrc.agent.>", "nowhere.>"].map((s) =>
      w.nc.subscribe(s, {
        callback: (_e, m: Msg) => {
          if (m.data.length > 0 && /"ok":/.test(new TextDecoder().decode(m.data))) leaked.push(m.subject);
        },
      }),
    );
    const replies = [
      `$JS.API.STREAM.PURGE.${STREAMS.events.name}`,
      `$JS.API.STREAM.PURGE.${STREAMS.requests.name}`,
      "$KV.cxlrc-leases.alpha.0000-01-00-0",
      subjects.agent("alpha", "reset"),
      "nowhere.at.all",
      "_INBOX.*",
    ];
    const bodies: Array<[string, unknown]> = [
      [subjects.status, {}],
      [subjects.plan("alpha"), { requestId: "rp", host: "alpha", bdf: BDF, scope: "io", reason: "x" }],
      [subjects.image, { host: "alpha", bdf: BDF }],
      [subjects.breaker, { operator: "o", reason: "r" }],
      [subjects.events, { startSeq: 1, max: 5 }],
      [subjects.release, { host: "alpha", bdf: BDF, operator: "o", reason: "r" }],
    ];
    let sent = 0;
    for (const reply of replies) {
      for (const [subject, body] of bodies) {
        w.nc.publish(subject, encodeJson(body), { reply });
        sent++;
      }
    }
    // And no reply subject at all: nothing to answer.
    w.nc.publish(subjects.status, encodeJson({}));
    sent++;
    await w.nc.flush();
    // Every one counted as refused for its reply subject...
    const refused = async () => {
      const text = await (await fetch(c.handle.metricsUrl!)).text();
      let n = 0;
      for (const m of text.matchAll(/^cxlrc_control_refused_total\{[^}]*reason="reply-subject"\} (\d+)$/gm)) {
        n += Number(m[1]);
      }
      return n;
    };
    expect(await until(async () => (await refused()) === sent)).toBe(true);
    await sleep(200);
    // ...and nothing answered or changed.
    expect(leaked).toEqual([]);
    expect((await w.jsm.streams.info(STREAMS.events.name)).state.messages).toBeGreaterThanOrEqual(
      eventsBefore,
    );
    expect((await w.jsm.streams.info(STREAMS.requests.name)).state.messages).toBe(requestsBefore);
    const text = await (await fetch(c.handle.metricsUrl!)).text();
    expect(text).toMatch(
      /^cxlrc_control_refused_total\{subject="cxlrc.ctl.plan.\*",reason="reply-subject"\} 6$/m,
    );
    for (const s of watch) s.unsubscribe();
    // A caller's own inbox is answered as before.
    expect((await control(w.nc, subjects.status, {})).ok).toBe(true);
  });

  it("outcome ids: unpredictable, the same on every coordinator, and not pre-empted by the old id", async () => {
    // Someone who can publish into the events stream first takes the old predictable id of the outcome.
    const squat = makeEvent({
      host: "alpha",
      bdf: BDF,
      kind: "verified",
      source: "agent",
      requestId: "oid-1",
      id: "outcome.oid-1",
      data: { outcome: "verified" },
    });
    const ack = await w.js.publish(subjects.agentEvent("alpha", BDF, "verified"), encodeJson(squat), {
      msgID: "outcome.oid-1",
    });
    expect(ack.duplicate).toBe(false);

    await publishRequest(w.js, { requestId: "oid-1", host: "alpha", bdf: BDF, scope: "io", reason: "x" });
    expect((await c.handle.waitForOutcome("oid-1", 20_000)).outcome).toBe("verified");
    const stored = (await readEvents(w.jsm, { requestId: "oid-1", source: "coordinator" })).filter(
      (e) => e.event.kind === "verified",
    );
    // The real outcome is on the stream, in the coordinators' space, under an id nobody could compute.
    expect(stored).toHaveLength(1);
    expect(stored[0]!.subject).toBe(subjects.event("alpha", BDF, "verified"));
    const id = stored[0]!.event.id;
    expect(id).toMatch(/^outcome\.[0-9a-f]{32}$/);
    expect(id).not.toContain("oid-1");
    // Every coordinator of this bus computes the same id (the secret is shared through the coordinators' bucket).
    const other = await openStore(w.nc, { leaseTtlMs: LEASE_TTL_MS });
    expect(other.outcomeId("oid-1")).toBe(id);
    expect(other.outcomeId("oid-2")).not.toBe(id);
  });
});
