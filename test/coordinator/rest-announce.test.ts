// A device's record at rest carries its last request's events with the rest state (outcome included). Whoever
// reads it later (a peer's recovery pass, another coordinator's next request for the device) sends them again
// only if they never reached the stream: found there, nothing is said twice, not even to live subscribers of
// the subjects (the stream drops a repeat it holds; a core subscription would see the outcome twice). A
// record whose writer died between its write and the publish is said by whoever reads it next.
import { Kvm } from "@nats-io/kv";
import { nuid } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUCKETS, deviceKey, subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { publishRequest, readEvents, rested, startWorld, until, type World } from "./helpers.ts";

const BDF = "0000:01:00.0";

describe("a record at rest read by another coordinator", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "ra" })]);
  });
  afterAll(async () => {
    await w?.close();
  });

  /** Every verified outcome of the device seen live (core subscription), by request id. */
  function live() {
    const seen: string[] = [];
    const sub = w.nc.subscribe(subjects.event("ra", BDF, "verified"), {
      callback: (_e, m) => {
        seen.push((m.json() as { requestId: string }).requestId);
      },
    });
    return { seen, stop: () => sub.unsubscribe() };
  }

  it("said once: a peer's recovery pass and its next request send nothing of the last request again", async () => {
    const a = await w.coordinator({ id: "ra-a" });
    await publishRequest(w.js, { requestId: "ra-1", host: "ra", bdf: BDF, scope: "full", reason: "t" });
    expect((await a.handle.waitForOutcome("ra-1", 20_000)).outcome).toBe("verified");
    expect(await rested(a.handle, "ra", BDF)).toBe("ready");
    await a.stop();

    const watch = live();
    try {
      // B's start runs a recovery pass over the record at rest, then takes the device for a request.
      const b = await w.coordinator({ id: "ra-b" });
      await publishRequest(w.js, { requestId: "ra-2", host: "ra", bdf: BDF, scope: "full", reason: "t" });
      expect((await b.handle.waitForOutcome("ra-2", 20_000)).outcome).toBe("verified");
      expect(await rested(b.handle, "ra", BDF)).toBe("ready");
      await w.nc.flush();
      expect(watch.seen).toEqual(["ra-2"]);
      await b.stop();
    } finally {
      watch.stop();
    }
  });

  it("a rest record whose events never went out is said by the next reader, in order, once", async () => {
    const kv = await new Kvm(w.js).open(BUCKETS.actors);
    const key = deviceKey("ra", BDF);
    const stored = (await kv.get(key))!.json<{
      owner: string;
      savedAt: string;
      announce?: Array<{ id: string; kind: string; data: unknown; time: string; requestId?: string }>;
    }>();
    // What a writer that died right after storing its rest state would leave: an outcome and the rest
    // state that the stream never got.
    const time = new Date().toISOString();
    stored.owner = "ra-dead";
    stored.savedAt = time;
    stored.announce = [
      { id: nuid.next(), kind: "verified", data: { outcome: "verified" }, time, requestId: "ra-lost" },
      { id: nuid.next(), kind: "state.entered", data: { state: "ready" }, time, requestId: "ra-lost" },
    ];
    await kv.put(key, JSON.stringify(stored));

    const watch = live();
    try {
      const c = await w.coordinator({ id: "ra-c" });
      expect(
        await until(async () =>
          (await readEvents(w.jsm, { requestId: "ra-lost", source: "coordinator" })).some(
            (e) => e.event.kind === "state.entered",
          ),
        ),
      ).toBe(true);
      const kinds = (await readEvents(w.jsm, { requestId: "ra-lost", source: "coordinator" })).map(
        (e) => e.event.kind,
      );
      expect(kinds).toEqual(["verified", "state.entered"]);
      await w.nc.flush();
      expect(watch.seen).toEqual(["ra-lost"]);
      await c.stop();
    } finally {
      watch.stop();
    }
  });
});
