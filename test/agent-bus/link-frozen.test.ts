// A call whose agent is frozen (SIGSTOP, a paused VM, a cgroup freezer: connected, its subscriptions live, but
// reading nothing) gets no reply and no "no responders" either. The link tells it from a slow operation by the
// agent's ping (answered at once by a live agent's event loop): no answer there either, and the time is granted
// from the caller's grace (the step's, for an absent agent) and the request sent again; an answer there, and the
// call's own time counts as before. The agent side: a real agent answers a ping at once, about itself.
import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { startAgent } from "../../services/agent/service.ts";
import { createAgentLink } from "../../services/coordinator/agent-link.ts";
import { connectBus } from "../../shared/bus/client.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { createSimHost, simpleHost } from "../../shared/sim/index.ts";
import { DEV, rig } from "../agent-ops/fixtures.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("AgentLink and a frozen agent", () => {
  let server: NatsServerHandle;
  const conns: NatsConnection[] = [];
  beforeAll(async () => {
    server = await startNats();
  });
  afterAll(async () => {
    for (const nc of conns) await nc.close().catch(() => undefined);
    await server?.stop();
  });

  async function connect(name: string) {
    const nc = await connectBus({ servers: server.url, name, log: silentLogger });
    conns.push(nc);
    return nc;
  }

  /**
   * A stand-in agent for `host` on its own connection: its probe endpoint and (unless `ping` is false) its ping
   * endpoint hold what they receive while frozen and answer it all when thawed; `probe: false` never answers a
   * probe (a slow operation).
   */
  async function standIn(host: string, o: { frozen: boolean; ping?: boolean; probe?: boolean }) {
    const nc = await connect(`agent ${host}`);
    const result = JSON.parse(JSON.stringify(await operations.probe(rig().ctx, { bdf: DEV })));
    let frozen = o.frozen;
    const held: Array<() => void> = [];
    const received = { probe: 0, ping: 0 };
    const answer = (m: Msg, body: unknown) => () => m.respond(JSON.stringify(body));
    const serve = (op: "probe" | "ping", reply: (opId: string) => unknown) =>
      nc.subscribe(subjects.agent(host, op), {
        callback: (_e, m) => {
          received[op]++;
          const { opId } = m.json<{ opId: string }>();
          const respond = answer(m, { ok: true, opId, result: reply(opId) });
          if (frozen) held.push(respond);
          else if (op === "ping" || o.probe !== false) respond();
        },
      });
    serve("probe", () => result);
    if (o.ping !== false) serve("ping", () => ({ host, inFlight: 0 }));
    await nc.flush();
    return {
      result,
      received,
      thaw() {
        frozen = false;
        for (const respond of held.splice(0)) respond();
      },
    };
  }

  /** A link whose caller grants whatever it is asked (a grace without end), recording each grant. */
  async function linkWithGrace() {
    const link = createAgentLink({ nc: await connect("coordinator"), log: silentLogger });
    await link.ready();
    const grants: number[] = [];
    const absent = (ms: number) => {
      grants.push(ms);
      return ms;
    };
    return { link, grants, absent };
  }

  it("frozen past the call's time: waited for, sent again, answered once it thaws", async () => {
    const agent = await standIn("frozen", { frozen: true });
    const { link, grants, absent } = await linkWithGrace();
    const thawAt = 2000;
    setTimeout(() => agent.thaw(), thawAt);
    const t0 = performance.now();
    const got = await link.call(
      "frozen",
      "probe",
      "fz-1",
      { bdf: DEV },
      { timeoutMs: 900, leaseKey: "none", absent },
    );
    const took = performance.now() - t0;
    expect(got).toEqual(agent.result);
    // More than twice the call's own 900 ms: the grace covered the freeze, a little of it per unanswered ping.
    expect(took).toBeGreaterThan(thawAt - 50);
    expect(grants.length).toBeGreaterThanOrEqual(2);
    for (const g of grants) expect(g).toBeGreaterThan(250); // a slice and its ping, each time
    // Sent again while frozen (the same opId: an agent acts once and answers every copy).
    expect(agent.received.probe).toBeGreaterThanOrEqual(2);
    expect(agent.received.ping).toBeGreaterThanOrEqual(2);
    link.stop();
  }, 15_000);

  it("an agent that answers its ping but not the operation gets no grace: the call times out on its own time", async () => {
    const agent = await standIn("slow", { frozen: false, probe: false });
    const { link, grants, absent } = await linkWithGrace();
    const t0 = performance.now();
    const err = await link
      .call("slow", "probe", "slow-1", { bdf: DEV }, { timeoutMs: 900, leaseKey: "none", absent })
      .catch((e: unknown) => e);
    expect((err as { kind?: string }).kind).toBe("timeout");
    expect(grants).toEqual([]);
    expect(agent.received.ping).toBeGreaterThanOrEqual(1);
    expect(performance.now() - t0).toBeLessThan(4000); // its 900 ms and the pings, not a grace without end
    link.stop();
  }, 15_000);

  it("an agent without a ping endpoint (an older release) gets no grace either", async () => {
    const agent = await standIn("older", { frozen: true, ping: false });
    const { link, grants, absent } = await linkWithGrace();
    const err = await link
      .call("older", "probe", "old-1", { bdf: DEV }, { timeoutMs: 900, leaseKey: "none", absent })
      .catch((e: unknown) => e);
    expect((err as { kind?: string }).kind).toBe("timeout");
    expect(grants).toEqual([]);
    agent.thaw();
    link.stop();
  }, 15_000);

  it("a real agent answers a ping at once, about itself, with no event and no device touched", async () => {
    const host = "pinged";
    const nc = await connect(`agent ${host}`);
    const sim = createSimHost(simpleHost({ name: host }));
    const agent = await startAgent({ nc, host, backend: sim, heartbeatMs: 60_000 });
    const { link } = await linkWithGrace();
    const seen: string[] = [];
    const events = (await connect("watcher")).subscribe(subjects.agentEventsOfHost(host), {
      callback: (_e, m) => {
        if (!m.subject.endsWith(".heartbeat")) seen.push(m.subject);
      },
    });
    try {
      const got = await link.call(host, "ping", "ping-a", {}, { timeoutMs: 1000 });
      expect(got).toEqual({ host, inFlight: 0 });
      // Bad input is named, as on every endpoint.
      const bad = await link
        .call(host, "ping", "ping-b", { bdf: DEV } as never, { timeoutMs: 1000 })
        .catch((e: unknown) => e);
      expect((bad as { kind?: string; message?: string }).kind).toBe("bad-input");
      expect((bad as { message?: string }).message).toMatch(/ping: .*bdf/);
      await sleep(200);
      expect(seen).toEqual([]);
      expect(sim.counters(DEV).cxlReset + sim.counters(DEV).flr).toBe(0);
    } finally {
      events.unsubscribe();
      link.stop();
      await agent.stop();
    }
  }, 15_000);
});
