// The last known good image and the release from quarantine with restore:
// - a verified reset makes its image the device's last known good one, under its own key; a later reset that
//   fails keeps it (the image of the failed reset is the last saved one, not the last known good one);
// - a quarantined device (failed restore: Command = INTx Disable, decoders wiped) released with `restore` is
//   put back from that image and verified before it returns to ready; a restore that does not verify leaves
//   it quarantined with the reason; without a verified image, `restore` is refused and nothing is touched.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  control,
  probe,
  publishRequest,
  type RunningCoordinator,
  readEvents,
  rested,
  startWorld,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";
const COMMAND_OFFSET = 0x04;
const MEMORY_SPACE = 0x2;
const INTX_DISABLE = 0x400;

interface ImageReply {
  requestId: string;
  revision: number;
  verified: boolean;
  image: { checksum: string };
  lastKnownGood: {
    revision: number;
    requestId: string;
    verified: { requestId: string; scope: string; imageRevision: number };
    image: { checksum: string };
  } | null;
}

interface RestoreReport {
  verified: boolean;
  image: { requestId: string; revision: number } | null;
  functions: Array<{ bdf: string; decoders: Array<{ index: number; action: string }>; passed: boolean }>;
  error?: { kind: string; message: string };
}

describe("last known good image and release with restore", () => {
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "lkg" }), simpleHost({ name: "fresh" })]);
    c = await w.coordinator();
  });
  afterAll(async () => {
    await w?.close();
  });

  const image = async (host: string) => {
    const r = await control<ImageReply>(w.nc, subjects.image, { host, bdf: BDF });
    if (!r.ok) throw new Error(r.error.message);
    return r.result;
  };
  const reset = async (host: string, requestId: string) => {
    await publishRequest(w.js, { requestId, host, bdf: BDF, scope: "full", reason: "test" });
    return c.handle.waitForOutcome(requestId, 20_000);
  };

  it("a failed reset keeps the last verified image; release with restore puts it back and verifies it", async () => {
    const sim = w.sims.get("lkg")!;
    const good = await probe(w.nc, "lkg", BDF);
    expect(good.decoders[0]?.committed).toBe(true);

    // 1. A verified reset: its image is both the last saved and the last known good one.
    const lkg1 = await reset("lkg", "lkg-1");
    expect(lkg1.outcome, lkg1.message).toBe("verified");
    const first = await image("lkg");
    expect(first.requestId).toBe("lkg-1");
    expect(first.verified).toBe(true);
    expect(first.lastKnownGood?.verified).toMatchObject({ requestId: "lkg-1", scope: "full" });
    expect(first.lastKnownGood?.image.checksum).toBe(first.image.checksum);

    // 2. A decoder that will not commit: restore retried, then quarantined, the device left disabled.
    sim.faults.set(BDF, { name: "commit-error", decoder: 0 });
    expect((await reset("lkg", "lkg-2")).outcome).toBe("quarantined");
    expect(await rested(c.handle, "lkg", BDF)).toBe("quarantined");
    expect(await sim.configRead(BDF, COMMAND_OFFSET, 2)).toBe(INTX_DISABLE);
    const second = await image("lkg");
    expect(second.requestId).toBe("lkg-2"); // the last saved image: the failed reset's
    expect(second.verified).toBe(false);
    expect(second.lastKnownGood?.requestId).toBe("lkg-1"); // the last known good one is kept
    expect(second.lastKnownGood?.revision).toBe(first.lastKnownGood?.revision);

    // 3. Release with restore while the decoder still fails: the verify cannot pass, the device stays
    //    quarantined with the reason, and says so.
    const refused = await control(w.nc, subjects.release, {
      host: "lkg",
      bdf: BDF,
      operator: "sre-1",
      reason: "try",
      restore: true,
    });
    expect(refused.ok).toBe(false);
    if (!refused.ok) {
      expect(refused.error.kind).toBe("commit-error");
      expect(refused.error.message).toMatch(/stays quarantined: release with restore by sre-1/);
      expect((refused.error.details.restore as RestoreReport).verified).toBe(false);
    }
    const still = (await c.handle.status()).devices.find((d) => d.host === "lkg");
    expect(still?.state).toBe("quarantined");
    expect(still?.quarantineReason).toMatch(/release with restore by sre-1: the last known good image/);
    const failedEvents = await readEvents(w.jsm, { host: "lkg", source: "coordinator" });
    expect(failedEvents.some((e) => e.event.kind === "release.failed")).toBe(true);

    // 4. The decoder is fixed: release with restore → restored, verified, ready.
    sim.faults.clear(BDF);
    const rel = await control<{ state: string; restore: RestoreReport }>(w.nc, subjects.release, {
      host: "lkg",
      bdf: BDF,
      operator: "sre-1",
      reason: "decoder fixed",
      restore: true,
    });
    if (!rel.ok) throw new Error(rel.error.message);
    expect(rel.result.state).toBe("ready");
    expect(rel.result.restore.verified).toBe(true);
    expect(rel.result.restore.image?.requestId).toBe("lkg-1");
    expect(rel.result.restore.functions.map((f) => [f.bdf, f.passed])).toEqual([[BDF, true]]);
    expect(rel.result.restore.functions[0]?.decoders).toContainEqual({ index: 0, action: "committed" });
    const released = (await readEvents(w.jsm, { host: "lkg", source: "coordinator" })).find(
      (e) => e.event.kind === "released",
    );
    expect(released?.event.data).toMatchObject({
      operator: "sre-1",
      reason: "decoder fixed",
      restore: { verified: true },
    });

    // Read back from the simulated device: decoder 0 committed where it was, memory space on again.
    const back = await probe(w.nc, "lkg", BDF);
    expect(back.decoders[0]).toMatchObject({
      committed: true,
      errorNotCommitted: false,
      base: good.decoders[0]!.base,
      size: good.decoders[0]!.size,
    });
    expect((await sim.configRead(BDF, COMMAND_OFFSET, 2)) & MEMORY_SPACE).toBe(MEMORY_SPACE);
    expect(await rested(c.handle, "lkg", BDF)).toBe("ready");

    // 5. A new reset works, and its verified image becomes the last known good one.
    const lkg3 = await reset("lkg", "lkg-3");
    expect(lkg3.outcome, lkg3.message).toBe("verified");
    const third = await image("lkg");
    expect(third.verified).toBe(true);
    expect(third.lastKnownGood?.requestId).toBe("lkg-3");
  });

  it("without a verified image, restore is refused and nothing is touched; a plain release probes", async () => {
    const sim = w.sims.get("fresh")!;
    sim.faults.set(BDF, { name: "commit-error", decoder: 0 });
    expect((await reset("fresh", "fresh-1")).outcome).toBe("quarantined");
    sim.faults.clear(BDF);
    expect(await rested(c.handle, "fresh", BDF)).toBe("quarantined");
    expect((await image("fresh")).lastKnownGood).toBeNull();
    const restores = sim.counters(BDF);

    const r = await control(w.nc, subjects.release, {
      host: "fresh",
      bdf: BDF,
      operator: "sre-2",
      reason: "x",
      restore: true,
    });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.kind).toBe("bad-input");
      expect(r.error.message).toMatch(/no verified image of 0000:01:00\.0 on host fresh/);
    }
    expect(sim.counters(BDF)).toEqual(restores);
    expect(await sim.configRead(BDF, COMMAND_OFFSET, 2)).toBe(INTX_DISABLE);
    expect((await c.handle.status()).devices.find((d) => d.host === "fresh")?.state).toBe("quarantined");

    // Without restore: released and probed (component registers read with Memory Space off), ready.
    const plain = await control<{ state: string; restore?: unknown }>(w.nc, subjects.release, {
      host: "fresh",
      bdf: BDF,
      operator: "sre-2",
      reason: "x",
    });
    if (!plain.ok) throw new Error(plain.error.message);
    expect(plain.result.state).toBe("ready");
    expect(plain.result.restore).toBeUndefined();
  });
});
