// The metrics the dashboard and the alert rules need, over a real nats-server: cxlrc_breaker_open follows the
// fleet circuit breaker (1 once failures open it, also on a coordinator started while it is open; 0 once an
// operator closes it), cxlrc_agent_last_seen_timestamp_seconds{host} moves with an agent's heartbeats and its
// operation events and stops when the agent does (a forged heartbeat marks nobody), and
// cxlrc_coordinator_info names the coordinator.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentHandle, startAgent } from "../../services/agent/service.ts";
import { encodeJson, makeEvent } from "../../shared/bus/codec.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { createSimHost, simpleHost, VirtualClock } from "../../shared/sim/index.ts";
import {
  control,
  publishRequest,
  type RunningCoordinator,
  rested,
  sleep,
  startWorld,
  TEST_POLICY,
  until,
  type World,
} from "../coordinator/helpers.ts";
import { sample } from "../metrics/support.ts";

const BDF = "0000:01:00.0";
/** Opens on the second outcome when one of the two failed. */
const BREAKER_POLICY = { ...TEST_POLICY, breakerMinSamples: 2, breakerFailureRatio: 0.5 };

let w: World;
let c1: RunningCoordinator;

beforeAll(async () => {
  w = await startWorld([simpleHost({ name: "ob0" }), simpleHost({ name: "ob1" })]);
  c1 = await w.coordinator({ id: "obs-c1", metricsPort: 0, policy: BREAKER_POLICY });
});

afterAll(async () => {
  await w?.close();
});

async function scrape(c: RunningCoordinator): Promise<string> {
  const res = await fetch(c.handle.metricsUrl!);
  expect(res.status).toBe(200);
  return res.text();
}

describe("cxlrc_coordinator_info", () => {
  it("names the coordinator once, with value 1", async () => {
    const text = await scrape(c1);
    expect(sample(text, "cxlrc_coordinator_info", { coordinator: "obs-c1" })).toBe(1);
    expect(text.match(/^cxlrc_coordinator_info\{/gm)).toHaveLength(1);
  });
});

describe("cxlrc_breaker_open", () => {
  let c2: RunningCoordinator | undefined;
  afterAll(async () => {
    await c2?.stop();
  });

  it("is 0 while the breaker is closed", async () => {
    expect(sample(await scrape(c1), "cxlrc_breaker_open")).toBe(0);
  });

  it("goes to 1 when failures open the breaker, on every coordinator, also one started after", async () => {
    const started = Date.now() / 1000;
    await publishRequest(w.js, { requestId: "obs-ok", host: "ob0", bdf: BDF, scope: "io", reason: "x" });
    expect((await c1.handle.waitForOutcome("obs-ok", 20_000)).outcome).toBe("verified");
    await rested(c1.handle, "ob0", BDF);
    expect(sample(await scrape(c1), "cxlrc_breaker_open")).toBe(0);
    // ob0's agent heartbeats once a minute (startWorld), before the coordinator listened: the series comes
    // from the operation events the coordinator believed during the reset.
    expect(
      sample(await scrape(c1), "cxlrc_agent_last_seen_timestamp_seconds", { host: "ob0" }),
    ).toBeGreaterThanOrEqual(Math.floor(started));

    w.sims.get("ob1")!.faults.set(BDF, { name: "commit-error", decoder: 0 });
    await publishRequest(w.js, { requestId: "obs-bad", host: "ob1", bdf: BDF, scope: "full", reason: "x" });
    expect((await c1.handle.waitForOutcome("obs-bad", 20_000)).outcome).toBe("quarantined");
    expect(await until(async () => sample(await scrape(c1), "cxlrc_breaker_open") === 1)).toBe(true);
    expect((await c1.handle.status()).breaker.status).toBe("open");

    // A coordinator started now reads the stored state: open from its first scrape.
    c2 = await w.coordinator({ id: "obs-c2", metricsPort: 0, policy: BREAKER_POLICY });
    expect(sample(await scrape(c2), "cxlrc_breaker_open")).toBe(1);
  });

  it("goes back to 0 once an operator closes it (cxlrc.ctl.breaker), on every coordinator", async () => {
    const closed = await control<{ breaker: { status: string } }>(w.nc, subjects.breaker, {
      operator: "sre",
      reason: "decoder replaced",
    });
    expect(closed.ok && closed.result.breaker.status).toBe("closed");
    for (const c of [c1, c2!]) {
      let text = "";
      const zero = await until(async () => {
        text = await scrape(c);
        return sample(text, "cxlrc_breaker_open") === 0;
      });
      expect(zero, text).toBe(true);
    }
  });
});

describe("cxlrc_agent_last_seen_timestamp_seconds", () => {
  let agent: AgentHandle | undefined;
  afterAll(async () => {
    await agent?.stop().catch(() => undefined);
  });

  const lastSeen = async (host: string) =>
    sample(await scrape(c1), "cxlrc_agent_last_seen_timestamp_seconds", { host });

  it("moves forward with the heartbeats of an agent, and stops when the agent stops", async () => {
    expect(await lastSeen("hb0")).toBeUndefined();
    const before = Date.now() / 1000;
    agent = await startAgent({
      nc: w.agentNc,
      host: "hb0",
      backend: createSimHost(simpleHost({ name: "hb0" }), { clock: new VirtualClock() }),
      heartbeatMs: 100,
    });
    expect(await until(async () => ((await lastSeen("hb0")) ?? 0) > 0)).toBe(true);
    const first = (await lastSeen("hb0"))!;
    expect(first).toBeGreaterThanOrEqual(Math.floor(before));
    expect(first).toBeLessThanOrEqual(Date.now() / 1000 + 1);
    expect(await until(async () => ((await lastSeen("hb0")) ?? 0) >= first + 0.25)).toBe(true);

    await agent.stop();
    agent = undefined;
    await sleep(150); // a heartbeat already on its way
    const after = (await lastSeen("hb0"))!;
    await sleep(500); // five heartbeat periods
    expect(await lastSeen("hb0")).toBe(after);
  });

  it("a heartbeat whose envelope names another host than its subject marks no host", async () => {
    const forged = makeEvent({ host: "victim", bdf: null, kind: "heartbeat", source: "agent", data: {} });
    w.nc.publish(subjects.agentEvent("liar", null, "heartbeat"), encodeJson(forged));
    // A good one after it, on the same connection: once it is counted, the forged one was judged too.
    const good = makeEvent({ host: "honest", bdf: null, kind: "heartbeat", source: "agent", data: {} });
    w.nc.publish(subjects.agentEvent("honest", null, "heartbeat"), encodeJson(good));
    expect(await until(async () => (await lastSeen("honest")) !== undefined)).toBe(true);
    expect(await lastSeen("victim")).toBeUndefined();
    expect(await lastSeen("liar")).toBeUndefined();
  });
});
