// What a reader believes of an event (pure, no bus): a request's progress and outcome only from the
// coordinator's subjects of the request's host, with an envelope that agrees with its subject; what `watch`
// prints comes from the subject and is stripped of control characters.
import { describe, expect, it } from "vitest";
import { type FeedEvent, feedEvent, fromCoordinator } from "../../client/feed-event.ts";
import { applyEvent, newTracked } from "../../client/track.ts";
import { colours } from "../../services/cli/format/colour.ts";
import { eventJson, eventLine } from "../../services/cli/format/event.ts";
import { type EventEnvelope, makeEvent } from "../../shared/bus/codec.ts";

const HOST = "bravo";
const BDF = "0000:04:00.0";
const REQ = "r-1";

function envelope(over: Partial<EventEnvelope> = {}): EventEnvelope {
  return {
    ...makeEvent({
      host: HOST,
      bdf: BDF,
      kind: "verified",
      requestId: REQ,
      source: "coordinator",
      data: { scope: "full", method: "cxl" },
    }),
    ...over,
  };
}

function item(subject: string, env: EventEnvelope): FeedEvent {
  const f = feedEvent(subject, env);
  if (!f) throw new Error(`not an event subject: ${subject}`);
  return f;
}

describe("applyEvent believes the coordinator's subjects only", () => {
  const forgeries: Array<[string, string, EventEnvelope]> = [
    ["an agent's subject claiming the coordinator", "cxlrc.agt.bravo.0000-04-00-0.verified", envelope()],
    [
      "an agent's subject, honest about its source",
      "cxlrc.agt.bravo.0000-04-00-0.verified",
      envelope({ source: "agent" }),
    ],
    ["another device's coordinator subject", "cxlrc.evt.bravo.0000-05-00-0.verified", envelope()],
    ["another host's coordinator subject", "cxlrc.evt.alpha.0000-04-00-0.verified", envelope()],
    [
      "another host's subject, the envelope agreeing with it",
      "cxlrc.evt.alpha.0000-04-00-0.verified",
      envelope({ host: "alpha" }),
    ],
    ["a subject of another kind", "cxlrc.evt.bravo.0000-04-00-0.note", envelope()],
    [
      "the coordinator's subject, the envelope saying agent",
      "cxlrc.evt.bravo.0000-04-00-0.verified",
      envelope({ source: "agent" }),
    ],
  ];
  for (const [name, subject, env] of forgeries) {
    it(`ignores a 'verified' on ${name}`, () => {
      const t = newTracked(REQ, HOST, BDF);
      expect(applyEvent(t, item(subject, env))).toBe(false);
      expect(t.outcome).toBeNull();
      expect(t.events).toBe(0);
    });
  }

  it("ignores an agent's state.entered and plan too", () => {
    const t = newTracked(REQ, HOST, BDF);
    applyEvent(
      t,
      item(
        "cxlrc.agt.bravo.0000-04-00-0.state.entered",
        envelope({ kind: "state.entered", source: "agent", data: { state: "verifying" } }),
      ),
    );
    applyEvent(
      t,
      item(
        "cxlrc.agt.bravo.0000-04-00-0.plan",
        envelope({ kind: "plan", source: "agent", data: { plan: { scope: "io", method: "flr" } } }),
      ),
    );
    expect(t).toMatchObject({ phase: null, scope: null, method: null, events: 0 });
  });

  it("takes the real outcome from the coordinator's subject of the device", () => {
    const t = newTracked(REQ, HOST, BDF);
    const e = item("cxlrc.evt.bravo.0000-04-00-0.verified", envelope());
    expect(fromCoordinator(e)).toBe(true);
    expect(applyEvent(t, e)).toBe(true);
    expect(t).toMatchObject({ outcome: "verified", scope: "full", method: "cxl" });
  });

  it("takes a host-level request.rejected from the coordinator", () => {
    const t = newTracked(REQ, HOST, BDF);
    const e = item(
      "cxlrc.evt.bravo.agent.request.rejected",
      envelope({ bdf: null, kind: "request.rejected", data: { error: { message: "bad field" } } }),
    );
    expect(applyEvent(t, e)).toBe(true);
    expect(t).toMatchObject({ outcome: "rejected", reason: "bad field" });
  });

  it("keeps no control character of an outcome's reason", () => {
    const t = newTracked(REQ, HOST, BDF);
    applyEvent(
      t,
      item(
        "cxlrc.evt.bravo.0000-04-00-0.quarantined",
        envelope({ kind: "quarantined", data: { reason: "bad\u001b[2Jthing\u009b" } }),
      ),
    );
    expect(t.outcome).toBe("quarantined");
    expect(t.reason).toBe("bad\uFFFD[2Jthing\uFFFD");
  });
});

describe("the watch line", () => {
  const plain = colours(false);

  it("shows host, device, publisher and kind from the subject, and flags a disagreeing envelope", () => {
    const line = eventLine(
      item(
        "cxlrc.agt.alpha.0000-01-00-0.note",
        envelope({ host: "bravo", bdf: "0000:02:00.0", kind: "note", source: "agent", data: {} }),
      ),
      plain,
    );
    expect(line).toMatch(/^\S+\s+alpha\s+0000:01:00\.0\s+agent\s+note\s/);
    expect(line).toMatch(/\[envelope disagrees: event names host "bravo" but came on alpha's subject\]$/);
  });

  it("labels coordinator events and leaves an agreeing envelope unflagged", () => {
    const line = eventLine(item("cxlrc.evt.bravo.0000-04-00-0.verified", envelope()), plain);
    expect(line).toMatch(/^\S+\s+bravo\s+0000:04:00\.0\s+coord\s+verified\s+scope full method cxl$/);
  });

  it("strips every control character, also with colours on (only its own escapes remain)", () => {
    const e = item(
      "cxlrc.agt.bravo.agent.note",
      envelope({
        bdf: null,
        kind: "note",
        source: "agent",
        data: { msg: "\u001b]0;title\u0007x\r\ny\u009b31m" },
      }),
    );
    expect(eventLine(e, plain)).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    const coloured = eventLine(e, colours(true));
    // Every ESC left is one of the colour codes the line adds itself.
    expect(coloured.replace(/\u001b\[[0-9;]*m/g, "")).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  });

  it("the JSON line names the subject and escapes C1 controls", () => {
    const e = item(
      "cxlrc.agt.bravo.agent.note",
      envelope({ bdf: null, kind: "note", source: "agent", data: { msg: "a\u009bb\u001bc\u007f" } }),
    );
    const json = eventJson(e);
    expect(json).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    const back = JSON.parse(json) as EventEnvelope & { subject: string };
    expect(back.subject).toBe("cxlrc.agt.bravo.agent.note");
    expect(back.data.msg).toBe("a\u009bb\u001bc\u007f");
  });
});
