// The agent in its own account, as deploy/nats runs it: JetStream lives in the coordinators' account, the
// agent may publish only under cxlrc.agt.<its host>.> (imported into that account, so the stream stores its
// events and the PubAck comes back), and the coordinator's commands reach it through an import whose replies
// the server rewrites to _R_.… subjects. The agent has no JetStream API of its own here.
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type AgentHandle, startAgent } from "../../services/agent/service.ts";
import { callAgent, connectBus, ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { DEV_A, fakeBackend, fakeOps, readEvents, until } from "./fixtures.ts";

const HOST = "h1";
const CONFIG = `
accounts {
  CXLRC {
    jetstream: enabled
    users: [{ user: coord, password: coord }]
    exports: [{ service: "cxlrc.agt.>" }]
    imports: [{ service: { account: AGENTS, subject: "cxlrc.agent.>" }, share: true }]
  }
  AGENTS {
    users: [{
      user: agent, password: agent,
      permissions: {
        publish: { allow: ["cxlrc.agt.${HOST}.>"] }
        subscribe: { allow: ["_INBOX.>", "cxlrc.agent.${HOST}.>", "$SRV.>"] }
        allow_responses: true
      }
    }]
    exports: [{ service: "cxlrc.agent.>" }]
    imports: [{ service: { account: CXLRC, subject: "cxlrc.agt.>" }, share: true }]
  }
}
`;

let server: NatsServerHandle;
let coord: NatsConnection;
let agentNc: NatsConnection;
let agent: AgentHandle;

beforeAll(async () => {
  server = await startNats({ config: CONFIG });
  const connect = (user: string) =>
    connectBus({
      servers: server.url,
      name: user,
      user,
      pass: user,
      log: silentLogger,
      waitForServer: false,
    });
  coord = await connect("coord");
  await ensureStreams(await getJsm(coord));
  agentNc = await connect("agent");
  agent = await startAgent({ nc: agentNc, host: HOST, backend: fakeBackend(), operations: fakeOps() });
});
afterAll(async () => {
  await agent?.stop();
  await agentNc?.close();
  await coord?.close();
  await server?.stop();
});

it("answers the coordinator across the import (reply rewritten to _R_) and its events are stored, acknowledged", async () => {
  expect(await callAgent(coord, HOST, "probe", "acc-1", { bdf: DEV_A }, { timeoutMs: 5000 })).toMatchObject({
    bdf: DEV_A,
  });
  await until(() => agent.stats().events.pending === 0, "the agent's outbox to drain");
  // Published with JetStream acks (not as plain core messages) although the agent cannot ask JetStream.
  expect(agent.stats().events).toMatchObject({ core: 0, dropped: 0 });
  expect(agent.stats().events.stored).toBeGreaterThanOrEqual(3);
  expect(agent.stats().refusedReplySubjects).toBe(0);
  const mine = (await readEvents(await getJsm(coord))).filter((e) => e.event.opId === "acc-1");
  expect(mine.map((e) => e.subject)).toEqual([
    "cxlrc.agt.h1.0000-01-00-0.op.started",
    "cxlrc.agt.h1.0000-01-00-0.probe.read",
    "cxlrc.agt.h1.0000-01-00-0.op.completed",
  ]);
});
