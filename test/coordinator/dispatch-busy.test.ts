// A request for a device this coordinator is resetting right now is refused in-progress without a read of
// the device: the planning probe that dispatch starts beside the lease would only queue behind the reset.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STREAMS } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { publishRequest, readEvents, startWorld, stopAt, type World } from "./helpers.ts";

const HOST = "busy";
const BDF = "0000:01:00.0";

describe("dispatch for a device being reset here", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: HOST })]);
  });
  afterAll(async () => {
    await w?.close();
  });

  it("is refused in-progress, naming the running request, and reads nothing from the device", async () => {
    const stop = stopAt("resetting");
    const c = await w.coordinator({ id: "busy-c", stepHook: stop.hook });
    await publishRequest(w.js, { requestId: "bz-1", host: HOST, bdf: BDF, scope: "full", reason: "t" });
    await stop.atPoint;
    const from = (await w.jsm.streams.info(STREAMS.events.name)).state.last_seq;
    await publishRequest(w.js, { requestId: "bz-2", host: HOST, bdf: BDF, scope: "full", reason: "t" });
    const second = await c.handle.waitForOutcome("bz-2", 20_000);
    expect(second.outcome).toBe("refused");
    expect(second.message).toContain("bz-1");
    const probes = (await readEvents(w.jsm, { host: HOST, source: "agent" })).filter(
      (e) => e.seq > from && e.event.kind === "op.started" && e.event.opId?.includes("/facts/"),
    );
    expect(probes).toEqual([]);
    stop.release();
    expect((await c.handle.waitForOutcome("bz-1", 20_000)).outcome).toBe("verified");
  });
});
