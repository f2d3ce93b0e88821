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

  it("one line per step of the request, with its host, device, request and three non-negative times", async () => {
    const { lines, log } = capture("debug");
    const c = await w.coordinator({ id: "c-debug", log, hosts: ["dbg"] });
    await publishRequest(w.js, { requestId: "dbg-1", host: "dbg", bdf: BDF, scope: "full", reason: "test" });
    expect((await c.handle.waitForOutcome("dbg-1", 20_000)).outcome).toBe("verified");
    await c.stop();
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

  it("says nothing of it at info level", async () => {
    const { lines, log } = capture("info");
    const c = await w.coordinator({ id: "c-info", log, hosts: ["quiet"] });
    await publishRequest(w.js, { requestId: "q-1", host: "quiet", bdf: BDF, scope: "full", reason: "test" });
    expect((await c.handle.waitForOutcome("q-1", 20_000)).outcome).toBe("verified");
    await c.stop();
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.filter((l) => l.msg === "step done")).toEqual([]);
  });
});
