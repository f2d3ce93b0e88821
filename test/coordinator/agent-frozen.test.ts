// An agent frozen for a moment (SIGSTOP, a paused VM, a cgroup freezer: still connected, reading nothing) is
// waited for within the step's grace (policy.agentAbsentGraceMs) as an absent one is: its calls get no reply,
// its ping gets none either, so the time is granted and the call sent again; once it thaws it answers. Frozen
// past the grace, the step fails as before (at the save: a refusal, the device untouched). The freeze here is
// the agent's connection held by a TCP relay (services/chaos/relay.ts): the server keeps the agent's
// subscriptions and queues to it, and nothing reaches either side until the relay lets go, as for a stopped
// process.
import { afterEach, describe, expect, it } from "vitest";
import { type AgentHandle, startAgent } from "../../services/agent/service.ts";
import { type BusRelays, startRelays } from "../../services/chaos/relay.ts";
import type { StepHook } from "../../services/coordinator/effects/agent-actors.ts";
import { connectBus } from "../../shared/bus/client.ts";
import { silentLogger } from "../../shared/log.ts";
import { createSimHost, simpleHost, VirtualClock } from "../../shared/sim/index.ts";
import { publishRequest, startWorld, TEST_POLICY, type World } from "./helpers.ts";

const BDF = "0000:01:00.0";

describe("an agent frozen for a moment", () => {
  let w: World | undefined;
  let agent: AgentHandle | undefined;
  let relay: BusRelays | undefined;
  afterEach(async () => {
    relay?.thaw();
    await agent?.stop().catch(() => undefined);
    await relay?.close();
    await w?.close();
    agent = undefined;
    relay = undefined;
    w = undefined;
  });

  /** A host whose agent's connection the relay freezes at the save, for `frozenMs`. */
  async function frozenAtSave(host: string, frozenMs: number) {
    w = await startWorld([]);
    relay = await startRelays([w.server.url]);
    const r = relay;
    const nc = await connectBus({ servers: r.urls, name: `agent ${host}`, log: silentLogger });
    const sim = createSimHost(simpleHost({ name: host }), { clock: new VirtualClock() });
    agent = await startAgent({ nc, host, backend: sim, heartbeatMs: 60_000 });
    let frozenAt = 0;
    const hook: StepHook = async (phase, point) => {
      if (frozenAt > 0 || phase !== "savingImage" || point !== "before") return;
      r.freeze();
      frozenAt = performance.now();
      setTimeout(() => r.thaw(), frozenMs);
    };
    return { sim, hook, frozenAt: () => frozenAt };
  }

  it("a save with no reply and no answer to the ping is sent again once the agent thaws: verified", async () => {
    const host = "frozen-short";
    const t = await frozenAtSave(host, 3000);
    const c = await w!.coordinator({ id: "frozen-c", stepHook: t.hook });
    await publishRequest(w!.js, { requestId: "fr-1", host, bdf: BDF, scope: "full", reason: "agent frozen" });
    const outcome = await c.handle.waitForOutcome("fr-1", 20_000);
    expect([outcome.outcome, outcome.message]).toEqual(["verified", undefined]);
    // It waited past the save's own 2 s budget for the agent to thaw, and the reset ran once.
    expect(performance.now() - t.frozenAt()).toBeGreaterThan(2900);
    expect(t.sim.counters(BDF).cxlReset).toBe(1);
    expect(agent!.stats().received).toBeGreaterThanOrEqual(3); // the save's copies and a ping, read on thawing
  }, 40_000);

  it("frozen for longer than the grace: refused before the device is touched", async () => {
    const host = "frozen-long";
    const t = await frozenAtSave(host, 9000);
    const c = await w!.coordinator({
      id: "frozen-long-c",
      stepHook: t.hook,
      policy: { ...TEST_POLICY, agentAbsentGraceMs: 1000 },
    });
    await publishRequest(w!.js, { requestId: "fr-2", host, bdf: BDF, scope: "full", reason: "agent frozen" });
    const outcome = await c.handle.waitForOutcome("fr-2", 20_000);
    const waited = performance.now() - t.frozenAt();
    expect(outcome.outcome).toBe("refused");
    expect(outcome.refusal?.reason).toBe("save-failed");
    // The save's 2 s and the grace's 1 s (and a ping's wait), not the 9 s the agent stayed frozen.
    expect(waited).toBeGreaterThan(2900);
    expect(waited).toBeLessThan(7000);
    expect(t.sim.counters(BDF).cxlReset).toBe(0);
  }, 40_000);
});
