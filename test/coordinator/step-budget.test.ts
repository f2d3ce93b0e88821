// Time budgets count from when a step starts running, not from when its state was entered: a coordinator that
// is slow to get to a step (its own queue: CPU, snapshot writes, a paused process) never fails a healthy device
// for it (the budget itself: test/coordinator/step-budget-unit.test.ts).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StepHook } from "../../services/coordinator/effects/agent-actors.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { publishRequest, startWorld, TEST_POLICY, type World } from "./helpers.ts";

const BDF = "0000:01:00.0";
/** Every phase's budget is built from this (2 s by default): small, so the test is quick. */
const AGENT_CALL_MS = 300;

describe("step time budgets", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "sb0" })]);
  });
  afterAll(async () => {
    await w?.close();
  });

  it("a coordinator held before each step for longer than the step's budget still verifies", async () => {
    const held: string[] = [];
    // Before the step runs (its snapshot stored): the time a busy coordinator spends getting to it.
    const hook: StepHook = async (phase, point) => {
      if (point !== "before" || phase === "binding" || phase === "probing") return;
      held.push(phase);
      await new Promise((r) => setTimeout(r, AGENT_CALL_MS * 2));
    };
    const c = await w.coordinator({
      id: "budget-a",
      policy: { ...TEST_POLICY, agentCallTimeoutMs: AGENT_CALL_MS },
      stepHook: hook,
    });
    try {
      await publishRequest(w.js, {
        requestId: "sb-1",
        host: "sb0",
        bdf: BDF,
        scope: "full",
        reason: "budget",
      });
      const out = await c.handle.waitForOutcome("sb-1", 60_000);
      expect(out.outcome).toBe("verified");
      expect(held).toEqual(expect.arrayContaining(["savingImage", "regating", "resetting", "verifying"]));
      expect(w.sims.get("sb0")!.counters(BDF).cxlReset).toBe(1);
    } finally {
      await c.stop();
    }
  }, 90_000);
});
