// An agent away from the bus for a moment (restarting: systemd brings it back after RestartSec=2) is waited for
// within the step's grace (policy.agentAbsentGraceMs): nobody answered its subject, so nothing was delivered,
// and the call is sent again once it is back. An agent away for longer than the grace fails the step as before
// (before the device is touched: a refusal).
import { afterEach, describe, expect, it } from "vitest";
import { type AgentHandle, startAgent } from "../../services/agent/service.ts";
import type { StepHook } from "../../services/coordinator/effects/agent-actors.ts";
import { createSimHost, simpleHost, VirtualClock } from "../../shared/sim/index.ts";
import { publishRequest, startWorld, TEST_POLICY, type World } from "./helpers.ts";

const BDF = "0000:01:00.0";

describe("an agent away for a moment", () => {
  let w: World | undefined;
  let agents: AgentHandle[] = [];
  afterEach(async () => {
    for (const a of agents) await a.stop().catch(() => undefined);
    agents = [];
    await w?.close();
    w = undefined;
  });

  /** A host whose agent the test stops and starts again; `awayMs`: how long it stays away, from the save on. */
  async function agentAwayDuringSave(host: string, awayMs: number) {
    w = await startWorld([]);
    const world = w;
    const sim = createSimHost(simpleHost({ name: host }), { clock: new VirtualClock() });
    const start = async () => {
      const a = await startAgent({ nc: world.agentNc, host, backend: sim, heartbeatMs: 60_000 });
      agents.push(a);
      return a;
    };
    const first = await start();
    let away = 0;
    let back: Promise<AgentHandle> | null = null;
    const hook: StepHook = async (phase, point) => {
      if (back || phase !== "savingImage" || point !== "before") return;
      await first.stop();
      away = performance.now();
      back = new Promise((r) => setTimeout(() => r(start()), awayMs));
    };
    return { sim, hook, awayAt: () => away, back: () => back };
  }

  it("a save that finds nobody is sent again once the agent is back: the reset completes", async () => {
    const host = "away-short";
    const t = await agentAwayDuringSave(host, 3000);
    const c = await w!.coordinator({ id: "away-c", stepHook: t.hook });
    await publishRequest(w!.js, {
      requestId: "aw-1",
      host,
      bdf: BDF,
      scope: "full",
      reason: "agent restart",
    });
    const outcome = await c.handle.waitForOutcome("aw-1", 20_000);
    expect([outcome.outcome, outcome.message]).toEqual(["verified", undefined]);
    // It did wait: the agent came back 3 s after the save began (past the save's own 2 s budget), and the new
    // agent process ran the save and the reset.
    expect(performance.now() - t.awayAt()).toBeGreaterThan(2900);
    const restarted = await t.back()!;
    expect(restarted.stats().received).toBeGreaterThanOrEqual(2);
    expect(t.sim.counters(BDF).cxlReset).toBe(1);
  }, 40_000);

  it("an agent away for longer than the grace: the request is refused before the device is touched", async () => {
    const host = "away-long";
    const t = await agentAwayDuringSave(host, 8000);
    const c = await w!.coordinator({
      id: "away-long-c",
      stepHook: t.hook,
      policy: { ...TEST_POLICY, agentAbsentGraceMs: 1000 },
    });
    await publishRequest(w!.js, { requestId: "aw-2", host, bdf: BDF, scope: "full", reason: "agent gone" });
    const outcome = await c.handle.waitForOutcome("aw-2", 20_000);
    const waited = performance.now() - t.awayAt();
    expect(outcome.outcome).toBe("refused");
    expect(outcome.refusal?.reason).toBe("save-failed");
    // The save's 2 s and the grace's 1 s, not the 8 s the agent stayed away.
    expect(waited).toBeGreaterThan(2900);
    expect(waited).toBeLessThan(7000);
    expect(t.sim.counters(BDF).cxlReset).toBe(0);
    await t.back();
  }, 40_000);
});
