// AgentLink re-sends an unanswered request (same opId) a third of the way into its time, so a lost message
// costs a third of the call. Once the call has its answer, by the agent's op.completed event, nothing more is
// sent: an agent that published the event and died before replying comes back without its opId cache, and a
// copy sent to it then would run the operation again (seen in the chaos runs: one request, two FLRs).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { createAgentLink } from "../../services/coordinator/agent-link.ts";
import { connectBus } from "../../shared/bus/client.ts";
import { makeEvent } from "../../shared/bus/codec.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { DEV, rig } from "../agent-ops/fixtures.ts";

const HOST = "crashy";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("AgentLink re-sends", () => {
  let server: NatsServerHandle;
  beforeAll(async () => {
    server = await startNats();
  });
  afterAll(async () => {
    await server?.stop();
  });

  /** An agent's and a coordinator's connection, the coordinator's link, and a probe result to answer with. */
  async function openLink() {
    const agentNc = await connectBus({ servers: server.url, name: "agent", log: silentLogger });
    const coordNc = await connectBus({ servers: server.url, name: "coordinator", log: silentLogger });
    const link = createAgentLink({ nc: coordNc, log: silentLogger });
    await link.ready();
    const result = JSON.parse(JSON.stringify(await operations.probe(rig().ctx, { bdf: DEV })));
    return { agentNc, coordNc, link, result };
  }

  it("stop once an op.completed event has answered the call; an unanswered call is sent again", async () => {
    const { agentNc, coordNc, link, result } = await openLink();
    const received: string[] = [];
    let answer = true;
    // The agent that publishes op.completed and dies before its reply (it never replies).
    const sub = agentNc.subscribe(subjects.agent(HOST, "probe"), {
      callback: (_err, m) => {
        const body = m.json<{ opId: string; bdf: string }>();
        received.push(body.opId);
        if (!answer) return;
        const evt = makeEvent({
          host: HOST,
          bdf: body.bdf,
          kind: "op.completed",
          source: "agent",
          opId: body.opId,
          data: { op: "probe", durationMs: 1, result },
        });
        agentNc.publish(subjects.agentEvent(HOST, body.bdf, "op.completed"), JSON.stringify(evt));
      },
    });
    await agentNc.flush();
    try {
      const got = await link.call(
        HOST,
        "probe",
        "once-1",
        { bdf: DEV },
        { timeoutMs: 900, leaseKey: "none" },
      );
      expect(got).toEqual(result);
      await sleep(1200); // past two re-send slices (300 ms each)
      expect(received).toEqual(["once-1"]);

      // No answer at all: the same opId again a third of the way in (the agent answers copies once).
      answer = false;
      const silent = await link
        .call(HOST, "probe", "silent-1", { bdf: DEV }, { timeoutMs: 900, leaseKey: "none" })
        .catch((e: unknown) => e);
      expect((silent as { kind?: string }).kind).toBe("timeout");
      expect(received.filter((id) => id === "silent-1").length).toBeGreaterThanOrEqual(2);
    } finally {
      sub.unsubscribe();
      link.stop();
      await agentNc.close();
      await coordNc.close();
    }
  });

  it("a call made in a turn that runs past its time counts from when its first send leaves", async () => {
    const { agentNc, coordNc, link, result } = await openLink();
    const received: string[] = [];
    // An agent that loses the first copy (a message dropped with a NATS node) and answers the next one.
    const sub = agentNc.subscribe(subjects.agent(HOST, "probe"), {
      callback: (_err, m) => {
        const body = m.json<{ opId: string }>();
        received.push(body.opId);
        if (received.length === 1) return;
        m.respond(JSON.stringify({ ok: true, opId: body.opId, result }));
      },
    });
    await agentNc.flush();
    try {
      const asked = link
        .call(HOST, "probe", "late-turn-1", { bdf: DEV }, { timeoutMs: 600, leaseKey: "none" })
        .catch((e: unknown) => e);
      // The rest of this turn keeps the process busy past the call's whole time: nothing has been sent yet.
      const until = performance.now() + 800;
      while (performance.now() < until) {
        // busy
      }
      // Counted from the call, the first copy's slice (250 ms) would end past the call's time: no second send.
      expect(await asked).toEqual(result);
      expect(received).toEqual(["late-turn-1", "late-turn-1"]);
    } finally {
      sub.unsubscribe();
      link.stop();
      await agentNc.close();
      await coordNc.close();
    }
  });
});
