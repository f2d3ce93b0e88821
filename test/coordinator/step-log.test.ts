// The coordinator's debug log says where each step's time went (waiting to start, its own work, the write
// along it), one line per step with the device and request bound; at info level it says nothing of the kind.
import { Writable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { simpleHost } from "../../shared/sim/index.ts";
import { publishRequest, startWorld, type World } from "./helpers.ts";

const BDF = "0000:01:00.0";

function capture(level: "debug" | "info") {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n")) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, log: pino({ level }, sink) };
}

describe("step timings in the debug log", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "dbg" }), simpleHost({ name: "quiet" })]);
  });
  afterAll(async () => {
    await w?.close();
  });

  /** A full reset of the host's device by a coordinator of its own logging at `level`: its log lines. */
  async function resetLogged(level: "debug" | "info", host: string, requestId: string) {
    const { lines, log } = capture(level);
    const c = await w.coordinator({ id: `c-${host}`, log, hosts: [host] });
    await publishRequest(w.js, { requestId, host, bdf: BDF, scope: "full", reason: "test" });
    expect((await c.handle.waitForOutcome(requestId, 20_000)).outcome).toBe("verified");
    await c.stop();
    return lines;
  }

  it("one line per step of the request, with its host, device, request and three non-negative times", async () => {
    const lines = await resetLogged("debug", "dbg", "dbg-1");
    const steps = lines.filter((l) => l.msg === "step done" && l.requestId === "dbg-1");
    const phases = steps.map((l) => l.phase);
    for (const p of ["gating", "savingImage", "persistingImage", "regating", "quiescing", "resetting"]) {
      expect(
        phases.filter((x) => x === p),
        p,
      ).toHaveLength(1);
    }
    // (Releasing comes after the outcome, which is all this waits for.)
    for (const p of ["restoring", "committingDecoders", "verifying"]) expect(phases).toContain(p);
    for (const l of steps) {
      expect(l).toMatchObject({ host: "dbg", bdf: BDF, opId: expect.stringContaining("dbg-1/") });
      for (const k of ["waitMs", "runMs", "writeMs"]) {
        expect(typeof l[k], `${String(l.phase)} ${k}`).toBe("number");
        expect(l[k] as number).toBeGreaterThanOrEqual(0);
      }
    }
  });

  it("one line when the request is taken and one when it is dispatched, with where that time went", async () => {
    const lines = await resetLogged("debug", "dbg", "dbg-2");
    const taken = lines.filter((l) => l.msg === "request taken" && l.requestId === "dbg-2");
    expect(taken).toHaveLength(1);
    expect(taken[0]).toMatchObject({ host: "dbg", streamSeq: expect.any(Number) });
    for (const k of ["queuedMs", "resolveMs"]) expect(typeof taken[0]![k], k).toBe("number");
    expect(taken[0]!.resolveMs as number).toBeGreaterThanOrEqual(0);
    const dispatched = lines.filter((l) => l.msg === "request dispatched" && l.requestId === "dbg-2");
    expect(dispatched).toHaveLength(1);
    expect(dispatched[0]).toMatchObject({ host: "dbg", bdf: BDF });
    for (const k of ["decisionMs", "leaseMs", "syncMs", "factsMs", "admitMs", "writeMs"]) {
      expect(typeof dispatched[0]![k], k).toBe("number");
      expect(dispatched[0]![k] as number, k).toBeGreaterThanOrEqual(0);
    }
  });

  it("says nothing of it at info level", async () => {
    const lines = await resetLogged("info", "quiet", "q-1");
    expect(lines.length).toBeGreaterThan(0);
    expect(
      lines.filter((l) => ["step done", "request taken", "request dispatched"].includes(String(l.msg))),
    ).toEqual([]);
  });
});
