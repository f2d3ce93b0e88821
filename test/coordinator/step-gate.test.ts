// The step gate (effects/step-budget.ts) queues steps that call agents or the store. A step whose answer an
// earlier operation already brought (a device reset alone: its reset's operation ran the restore, the commit and
// the verify) calls nothing, so it never waits there behind other devices' agent work.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StepHook } from "../../services/coordinator/effects/agent-actors.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { publishRequest, startWorld, type World } from "./helpers.ts";

const BDF = "0000:01:00.0";

describe("the step gate", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld(
      [
        simpleHost({ name: "gq-fast" }),
        // A reset that keeps its step (and the gate's only place) for three seconds.
        simpleHost({
          name: "gq-slow",
          device: { cxlResetTimeout: 3 },
          timings: { cxlResetDurationMs: 3000 },
        }),
      ],
      { realTime: ["gq-slow"] },
    );
  });
  afterAll(async () => {
    await w?.close();
  });

  it("a reset's restore, commit and verify, already done by its operation, do not queue behind another device's reset", async () => {
    const times: Record<string, number> = {};
    let releaseFast!: () => void;
    const fastHeld = new Promise<void>((r) => {
      releaseFast = r;
    });
    let fastAtReady!: () => void;
    const fastReached = new Promise<void>((r) => {
      fastAtReady = r;
    });
    let slowAtReset!: () => void;
    const slowReached = new Promise<void>((r) => {
      slowAtReset = r;
    });
    const hook: StepHook = async (phase, point, info) => {
      if (info.host === "gq-fast" && phase === "awaitingReady" && point === "before") {
        fastAtReady();
        await fastHeld;
      }
      if (info.host === "gq-slow" && phase === "resetting") {
        if (point === "before") {
          times.slowResetStart = Date.now();
          slowAtReset();
        } else times.slowResetDone = Date.now();
      }
    };
    const c = await w.coordinator({ id: "gate-q", stepHook: hook, maxRunningSteps: 1 });
    try {
      // The fast device's reset is done (restored and verified in its operation); it waits to report it.
      await publishRequest(w.js, {
        requestId: "gq-fast",
        host: "gq-fast",
        bdf: BDF,
        scope: "full",
        reason: "q",
      });
      await fastReached;
      // The slow device's reset takes the gate's one place.
      await publishRequest(w.js, {
        requestId: "gq-slow",
        host: "gq-slow",
        bdf: BDF,
        scope: "full",
        reason: "q",
      });
      await slowReached;
      await new Promise((r) => setTimeout(r, 300));
      times.release = Date.now();
      releaseFast();
      const fast = await c.handle.waitForOutcome("gq-fast", 30_000);
      times.fastOutcome = Date.now();
      const slow = await c.handle.waitForOutcome("gq-slow", 30_000);
      expect(fast.outcome).toBe("verified");
      expect(slow.outcome).toBe("verified");
      // Said while the slow reset still held the gate: nothing of the fast device's last steps waited for it.
      expect(times.slowResetDone).toBeGreaterThan(times.fastOutcome!);
      expect(w.sims.get("gq-fast")!.counters(BDF).cxlReset).toBe(1);
    } finally {
      await c.stop();
    }
  }, 60_000);
});
