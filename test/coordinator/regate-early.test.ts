// The regate's read of a one-function plan is made by the save's own operation, right after the save, not
// after the image is stored: held at the end of the save step (before the image write starts), the agent has
// already answered it, and no read of its own goes out. An agent without "save.probe" is asked right behind the
// save instead (agent-features.test.ts). A plan with other functions still reads beside the image write (it needs
// the host inventory afresh).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore } from "../../services/coordinator/store.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { publishRequest, readEvents, startWorld, stopAt, type World } from "./helpers.ts";

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
    const agentEvents = await readEvents(w.jsm, { host: "early0", source: "agent" });
    const saved = agentEvents.find(
      (e) => e.event.kind === "op.completed" && (e.event.data as { op?: string }).op === "save",
    );
    // The save's answer carries the device's facts as read after it (beside the image, not in it).
    expect(saved).toBeDefined();
    const result = (saved!.event.data as { result?: { probe?: { bdf?: string }; checksum?: string } }).result;
    expect(result?.probe?.bdf).toBe(BDF);
    expect(result?.checksum).toMatch(/^sha256:/);
    expect(agentEvents.some((e) => (e.event.opId ?? "").includes("/regate/"))).toBe(false);
    const coordinatorKinds = (await readEvents(w.jsm, { requestId: "early-1", source: "coordinator" })).map(
      (e) => e.event.kind,
    );
    expect(coordinatorKinds).not.toContain("image.persisted");
    stop.release();
    const out = await c.handle.waitForOutcome("early-1", 20_000);
    expect(out.outcome).toBe("verified");
    // The image stored is the image alone: its checksum covers it, and the facts are not part of it.
    const store = await openStore(w.nc, { leaseTtlMs: 15_000 });
    const image = (await store.getImage("early0", BDF))?.value.images[BDF] as Record<string, unknown>;
    expect(image.checksum).toBe(result?.checksum);
    expect(image).not.toHaveProperty("probe");
    await c.stop();
  });
});
