// full scope: CXL Reset on one device, and a secondary bus reset that reaches a sibling device (refused until
// the sibling joins the plan; then both are saved, reset once, restored and verified). Every check reads
// the simulated devices back through their agent.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  control,
  kindsOf,
  probe,
  publishRequest,
  type RunningCoordinator,
  readEvents,
  startWorld,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";
const A = "0000:05:00.0";
const B = "0000:05:01.0";

describe("full reset", () => {
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld([
      simpleHost({ name: "cxl0" }),
      {
        name: "shared",
        bridges: [{ bdf: "0000:00:02.0", kind: "root-port", secondaryBus: 5 }],
        devices: [
          {
            bdf: A,
            parent: "0000:00:02.0",
            cxlResetCapable: false,
            firmware: { decoders: [{ base: "0x100000000", size: "0x10000000" }] },
          },
          {
            bdf: B,
            parent: "0000:00:02.0",
            firmware: { decoders: [{ base: "0x200000000", size: "0x10000000" }] },
          },
        ],
      },
    ] as never);
    c = await w.coordinator();
  });
  afterAll(async () => {
    await w?.close();
  });

  it("CXL Reset: decoders wiped by the reset are re-committed and verified", async () => {
    const before = await probe(w.nc, "cxl0", BDF);
    const from = (await w.jsm.streams.info(STREAMS.events.name)).state.last_seq;
    await publishRequest(w.js, { requestId: "cxl-1", host: "cxl0", bdf: BDF, scope: "full", reason: "test" });
    const out = await c.handle.waitForOutcome("cxl-1", 20_000);
    expect(out.outcome).toBe("verified");
    expect(out.plan?.method).toBe("cxl");
    const sim = w.sims.get("cxl0")!;
    expect(sim.counters(BDF).cxlReset).toBe(1);
    expect(sim.counters(BDF).commits).toBeGreaterThanOrEqual(1);
    const after = await probe(w.nc, "cxl0", BDF);
    expect(after.decoders).toEqual(before.decoders);
    expect(after.hdmDecoderEnable).toBe(true);
    const kinds = await kindsOf(w.jsm, "cxl-1");
    expect(kinds.indexOf("image.persisted")).toBeLessThan(kinds.indexOf("reset.started"));
    expect(kinds).toContain("decoder.committed");
    expect(kinds).toContain("verified");
    expect(kinds).not.toContain("step.failed");
    expect(kinds.indexOf("verify.passed")).toBeGreaterThan(kinds.indexOf("decoder.committed"));
    // The agent calls of one function's reset: a read for planning, the save, which reads the device again
    // once saved (the regate's read, in the same operation), and the reset, which quiesces first, waits for
    // the function to answer (its own polling: no await-ready probe), then restores from the image and
    // verifies, all in the same operation: no separate restore or verify.
    // (Not counted: this test's own reads, and the probe of a device's first actor, built by this request.)
    const agentEvents = (await readEvents(w.jsm, { host: "cxl0", source: "agent" })).filter(
      (e) =>
        e.seq > from &&
        e.event.bdf === BDF &&
        !e.event.opId?.startsWith("test-probe/") &&
        !e.event.opId?.includes("/probing/"),
    );
    const ops = agentEvents
      .filter((e) => e.event.kind === "op.started")
      .map((e) => (e.event.data as { op: string }).op);
    expect(ops).toEqual(["probe", "save", "reset"]);
    const saveOp = agentEvents.find(
      (e) => e.event.kind === "op.started" && (e.event.data as { op: string }).op === "save",
    )!.event;
    expect(saveOp.data).toMatchObject({ params: { probe: true } });
    const resetOp = agentEvents.find(
      (e) => e.event.kind === "op.started" && (e.event.data as { op: string }).op === "reset",
    )!.event;
    // What was asked, without the image (the op.started event leaves it out).
    expect(resetOp.data).toMatchObject({ params: { restore: { scope: "full", verify: true } } });
    expect(JSON.stringify(resetOp.data)).not.toContain("checksum");
    const inReset = agentEvents.filter((e) => e.event.opId === resetOp.opId).map((e) => e.event.kind);
    // Quiesce before the reset (Bus Master off, the cache written back); the restore after it, its decoders
    // committed, then the read-back, then the operation's end.
    expect(inReset.indexOf("quiesce.bus-master-off")).toBeGreaterThan(-1);
    expect(inReset.indexOf("quiesce.completed")).toBeLessThan(inReset.indexOf("reset.initiated"));
    expect(inReset.indexOf("reset.completed")).toBeLessThan(inReset.indexOf("restore.started"));
    expect(inReset.indexOf("decoder.committed")).toBeGreaterThan(inReset.indexOf("restore.started"));
    expect(inReset.indexOf("verify.completed")).toBeGreaterThan(inReset.indexOf("restore.completed"));
    expect(inReset.at(-1)).toBe("op.completed");
    expect(
      agentEvents.find((e) => e.event.kind === "verify.completed" && e.event.opId === resetOp.opId)?.event
        .data,
    ).toMatchObject({ passed: true });
  });

  it("SBR: refused sibling-busy, then accepted with the sibling in the plan; both restored and verified", async () => {
    const sim = w.sims.get("shared")!;
    await publishRequest(w.js, {
      requestId: "sbr-1",
      host: "shared",
      bdf: A,
      scope: "full",
      method: "sbr",
      reason: "test",
    });
    const refused = await c.handle.waitForOutcome("sbr-1", 20_000);
    expect(refused.outcome).toBe("refused");
    expect(refused.refusal?.reason).toBe("sibling-busy");
    expect(refused.refusal?.message).toContain(B);
    expect(sim.counters(A).conventionalReset).toBe(0);

    const beforeA = await probe(w.nc, "shared", A);
    const beforeB = await probe(w.nc, "shared", B);
    await publishRequest(w.js, {
      requestId: "sbr-2",
      host: "shared",
      bdf: A,
      scope: "full",
      method: "sbr",
      siblings: [B],
      reason: "test",
    });
    const out = await c.handle.waitForOutcome("sbr-2", 20_000);
    expect(out.outcome).toBe("verified");
    expect(out.plan?.method).toBe("sbr");
    expect(out.plan?.targets).toEqual([A, B]);
    expect(out.plan?.siblings).toEqual([B]);
    expect(sim.counters(A).conventionalReset).toBe(1);
    expect(sim.counters(B).conventionalReset).toBe(1);
    const afterA = await probe(w.nc, "shared", A);
    const afterB = await probe(w.nc, "shared", B);
    expect(afterA.decoders).toEqual(beforeA.decoders);
    expect(afterB.decoders).toEqual(beforeB.decoders);
    expect(afterB.decoders[0]?.committed).toBe(true);
    // The SBR unmask on the CXL root port was put back.
    expect(afterA.bridge?.unmaskSbr).toBe(false);
    expect(await kindsOf(w.jsm, "sbr-2")).not.toContain("step.failed");
    // Each function's image is kept in the store, the sibling's under its own key too.
    const img = await control<{ requestId: string; image: { identity: { bdf: string } } }>(
      w.nc,
      subjects.image,
      {
        host: "shared",
        bdf: B,
      },
    );
    if (!img.ok) throw new Error(img.error.message);
    expect(img.result.requestId).toBe("sbr-2");
    expect(img.result.image.identity.bdf).toBe(B);
  });
});
