// The regate's read of a one-function plan goes out right behind the save, not after the image is stored:
// held at the end of the save step (before the image write starts), the agent has already been asked for it.
// A plan with other functions still reads beside the image write (it needs the host inventory afresh).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { simpleHost } from "../../shared/sim/index.ts";
import { publishRequest, readEvents, startWorld, stopAt, until, type World } from "./helpers.ts";

const BDF = "0000:01:00.0";

describe("regate read sent with the save", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "early0" })]);
  });
  afterAll(async () => {
    await w?.close();
  });

  it("is asked of the agent before the image write starts, and the reset still verifies", async () => {
    const stop = stopAt("savingImage", "after");
    const c = await w.coordinator({ stepHook: stop.hook });
    await publishRequest(w.js, {
      requestId: "early-1",
      host: "early0",
      bdf: BDF,
      scope: "full",
      reason: "t",
    });
    await stop.atPoint;
    const regateRead = async () =>
      (await readEvents(w.jsm, { host: "early0", source: "agent" })).some(
        (e) => e.event.kind === "op.completed" && (e.event.opId ?? "").includes("/regate/"),
      );
    expect(await until(regateRead)).toBe(true);
    const coordinatorKinds = (await readEvents(w.jsm, { requestId: "early-1", source: "coordinator" })).map(
      (e) => e.event.kind,
    );
    expect(coordinatorKinds).not.toContain("image.persisted");
    stop.release();
    const out = await c.handle.waitForOutcome("early-1", 20_000);
    expect(out.outcome).toBe("verified");
    await c.stop();
  });
});
