// The 3-node configuration (deploy/nats/nats-cluster.conf, as compose runs it): the nodes form a cluster over
// mutual-TLS routes, the accounts' imports and exports work across nodes, permissions hold whichever node a
// client is on, and a server with a certificate of another CA cannot join.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { encodeJson, makeEvent } from "../../shared/bus/codec.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { SIMPLE_DEVICE } from "../../shared/sim/index.ts";
import {
  DEPLOY,
  makeTestCa,
  rebaseConfig,
  type SecureBus,
  spawnOnFreePorts,
  startSecureBus,
  until,
} from "./env.ts";
import { TEST_ROSTER } from "./roster.ts";

let bus: SecureBus;
const cleanup: Array<() => Promise<void> | void> = [];

async function routes(monitorUrl: string): Promise<number> {
  try {
    const r = await fetch(`${monitorUrl}/routez`);
    return ((await r.json()) as { num_routes: number }).num_routes;
  } catch {
    return -1;
  }
}

beforeAll(async () => {
  bus = await startSecureBus(TEST_ROSTER, { nodes: 3 });
  for (const m of bus.monitorUrls) await until(async () => (await routes(m)) === 2, `routes of ${m}`, 20_000);
});

afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  await bus?.stop();
});

describe("3-node cluster from nats-cluster.conf", () => {
  it("routes form over mutual TLS; a request crosses nodes; permissions hold on every node", async () => {
    const [u1, u2, u3] = bus.urls as [string, string, string];
    const agent = await bus.connectAs("agent-sim-a", { url: u1 });
    const coord = await bus.connectAs("coord-1", { url: u2 });
    const controller = await bus.connectAs("controller", { url: u3 });
    agent.nc.subscribe(subjects.agent("sim-a", "probe"), {
      callback: (_e, m) => {
        m.respond(encodeJson({ ok: true, opId: "c1", result: { node: 1 } }));
      },
    });
    await agent.nc.flush();
    // Interest propagates over the routes: retry until the request finds the agent on node 1.
    let answer: unknown = null;
    await until(async () => {
      try {
        answer = (
          await coord.nc.request(subjects.agent("sim-a", "probe"), encodeJson({}), { timeout: 500 })
        ).json();
        return true;
      } catch {
        return false;
      }
    }, "a request from node 2 to the agent on node 1");
    expect(answer).toMatchObject({ ok: true, result: { node: 1 } });
    // The controller on node 3 still may not talk to the agent, and the agent may not forge another host.
    await expect(
      controller.nc.request(subjects.agent("sim-a", "probe"), encodeJson({}), { timeout: 5000 }),
    ).rejects.toThrow(/Permissions Violation/);
    await expect(
      controller.nc.request(subjects.plan("hw-1"), encodeJson({}), { timeout: 5000 }),
    ).rejects.toThrow(/Permissions Violation/);
    for (const forged of [
      subjects.agentEvent("sim-b", SIMPLE_DEVICE, "op.completed"),
      subjects.event("sim-a", SIMPLE_DEVICE, "verified"),
    ]) {
      const before = agent.violations.length;
      agent.nc.publish(forged, encodeJson({}));
      await agent.nc.flush();
      await until(
        () => agent.violations.slice(before).some((v) => v.subject === forged),
        `the forged publish on ${forged} refused`,
      );
    }
  });

  it("events cross accounts and nodes: the coordinator's from CXLRC, an agent's from AGENTS, to a reader", async () => {
    const [u1, u2, u3] = bus.urls as [string, string, string];
    const agent = await bus.connectAs("agent-sim-b", { url: u1 });
    const coord = await bus.connectAs("coord-1", { url: u2 });
    const sre = await bus.connectAs("sre", { url: u3 });
    const got: string[] = [];
    sre.nc.subscribe(subjects.eventsAll, { callback: (_e, m) => void got.push(m.subject) });
    sre.nc.subscribe(subjects.agentEventsAll, { callback: (_e, m) => void got.push(m.subject) });
    await sre.nc.flush();
    const fromCoord = subjects.event("sim-b", SIMPLE_DEVICE, "plan");
    const fromAgent = subjects.agentEvent("sim-b", null, "heartbeat");
    // Interest crosses the routes asynchronously: publish until the reader has seen both.
    await until(async () => {
      coord.nc.publish(fromCoord, encodeJson(makeEvent({ host: "sim-b", bdf: SIMPLE_DEVICE, kind: "plan" })));
      agent.nc.publish(fromAgent, encodeJson(makeEvent({ host: "sim-b", bdf: null, kind: "heartbeat" })));
      await Promise.all([coord.nc.flush(), agent.nc.flush()]);
      await new Promise((r) => setTimeout(r, 50));
      return got.includes(fromCoord) && got.includes(fromAgent);
    }, "both events at the reader on node 3");
    expect(sre.violations).toEqual([]);
  });

  it("JetStream in CXLRC on three replicas: PubAcks come back across accounts and nodes, and only there", async () => {
    const [u1, u2, u3] = bus.urls as [string, string, string];
    const coord = await bus.connectAs("coord-1", { url: u2 });
    const agent = await bus.connectAs("agent-sim-a", { url: u1 });
    const controller = await bus.connectAs("controller", { url: u3 });
    // The coordinator's own rights create the replicated streams (a fresh cluster elects a leader first).
    await ensureStreams(await getJsm(coord.nc), { replicas: 3, readyTimeoutMs: 30_000 });
    const ev = makeEvent({ host: "sim-a", bdf: null, kind: "heartbeat", source: "agent" });
    const ack = await jetstream(agent.nc, { timeout: 5000 }).publish(
      subjects.agentEvent("sim-a", null, "heartbeat"),
      encodeJson(ev),
      { msgID: ev.id },
    );
    expect(ack.stream).toBe("CXLRC_EVENTS");
    const req = { requestId: "cl-1", host: "sim-a", bdf: SIMPLE_DEVICE, scope: "io", reason: "cluster" };
    const ack2 = await jetstream(controller.nc, { timeout: 5000 }).publish(
      subjects.request("sim-a"),
      encodeJson(req),
      { msgID: req.requestId },
    );
    expect(ack2.stream).toBe("CXLRC_REQUESTS");
    const info = await (await getJsm(coord.nc)).streams.info("CXLRC_EVENTS");
    expect(info.config.num_replicas).toBe(3);
    expect(info.state.messages).toBeGreaterThan(0);
    // No one outside CXLRC reaches the JetStream API, on any node.
    for (const c of [agent, controller]) {
      await expect(
        c.nc.request("$JS.API.STREAM.INFO.CXLRC_EVENTS", encodeJson({}), { timeout: 5000 }),
      ).rejects.toThrow(/Permissions Violation/);
    }
    expect(coord.violations).toEqual([]);
  });

  it("a server with a certificate of another CA cannot join", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cxlrc-intruder-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    makeTestCa(join(dir, "tls"), ["client"]);
    // Point its routes at node 1's route port (read from node 1's config).
    const node1Conf = readFileSync(join(bus.dir, "node-1", "nats-server.conf"), "utf8");
    const node1Route = /cluster \{[^}]*?listen: (127\.0\.0\.1:\d+)/s.exec(node1Conf)?.[1];
    expect(node1Route).toBeDefined();
    copyFileSync(join(bus.dir, "node-1", "accounts.conf"), join(dir, "accounts.conf"));
    let log = "";
    const { s, ports } = await spawnOnFreePorts(
      3,
      { NATS_SERVER_NAME: "intruder" },
      ([port, rport, mport]) => {
        const text = rebaseConfig(readFileSync(join(DEPLOY, "nats/nats-cluster.conf"), "utf8"), dir, [
          ["0.0.0.0:6222", `127.0.0.1:${rport}`],
          ["nats-route://nats-1:6222", `nats-route://${node1Route}`],
          ["nats-route://nats-2:6222", `nats-route://${node1Route}`],
          ["nats-route://nats-3:6222", `nats-route://${node1Route}`],
        ]);
        const conf = join(dir, "nats-server.conf");
        writeFileSync(conf, text);
        log = "";
        return {
          port: port!,
          args: ["-c", conf, "-a", "127.0.0.1", "-p", String(port), "-m", String(mport)],
          readyTimeoutMs: 15_000,
          onLog: (t) => {
            log += t;
          },
        };
      },
    );
    const mport = ports[2];
    cleanup.push(async () => {
      s.child.kill("SIGKILL");
      await s.exited;
    });
    await until(
      () =>
        /TLS route handshake error: (x509: certificate signed by unknown authority|remote error: tls: bad certificate)/.test(
          log + bus.logs(),
        ),
      "the route handshake refused",
    );
    expect(await routes(`http://127.0.0.1:${mport}`)).toBe(0);
    expect(await routes(bus.monitorUrls[0] as string)).toBe(2);
  });
});
