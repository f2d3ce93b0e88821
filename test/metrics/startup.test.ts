// While a service starts, its endpoint is already up: /healthz is 200 and /readyz 503 "starting", until the
// agent has reached the bus and subscribed, or the coordinator has finished its start (here held in its
// discovery by a host whose inventory is not answered yet). Then /readyz is 200; after stop nothing listens.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Msg } from "@nats-io/transport-node";
import { afterAll, describe, expect, it } from "vitest";
import { type RunningAgent, runAgentFromConfig } from "../../services/agent/main.ts";
import { startCoordinator } from "../../services/coordinator/service.ts";
import { connectBus } from "../../shared/bus/client.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { findFreePort, type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { createSimHost, VirtualClock } from "../../shared/sim/index.ts";
import { rootPortHost, until } from "../coordinator/helpers.ts";
import { get } from "./support.ts";

const dir = mkdtempSync(join(tmpdir(), "cxlrc-metrics-start-"));
const servers: NatsServerHandle[] = [];

afterAll(async () => {
  for (const s of servers) await s.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The first answer of `path` once something listens on the port (connection refused until then). */
async function firstAnswer(base: string, path: string): Promise<{ status: number; body: string }> {
  let answer: { status: number; body: string } | undefined;
  await until(async () => {
    answer = await get(base, path).catch(() => undefined);
    return answer !== undefined;
  });
  if (!answer) throw new Error(`${base}${path} never answered`);
  return answer;
}

describe("readiness while starting", () => {
  it("agent: 503 starting while the bus cannot be reached, 200 once connected and subscribed", async () => {
    const [metricsPort, natsPort] = [await findFreePort(), await findFreePort()];
    const base = `http://127.0.0.1:${metricsPort}`;
    const starting = runAgentFromConfig(
      {
        host: "early",
        servers: `nats://127.0.0.1:${natsPort}`,
        backend: "sim",
        stateDir: join(dir, "agent-state"),
        ensureStreams: false,
        metrics: { port: metricsPort },
        logLevel: "silent",
      },
      {
        backend: createSimHost(rootPortHost("early", 1), { clock: new VirtualClock() }),
        handleSignals: false,
        log: silentLogger,
      },
    );
    expect(await firstAnswer(base, "/readyz")).toEqual({ status: 503, body: "not ready: starting\n" });
    expect(await get(base, "/healthz")).toEqual({ status: 200, body: "ok\n" });

    servers.push(await startNats({ port: natsPort }));
    const agent: RunningAgent = await starting;
    expect(agent.metricsUrl).toBe(`${base}/metrics`);
    expect(await get(base, "/readyz")).toEqual({ status: 200, body: "ready\n" });
    await agent.stop();
    await expect(get(base, "/healthz")).rejects.toThrow();
  });

  it("coordinator: 503 starting while its start-up discovery waits on an agent, 200 once started", async () => {
    const nats = await startNats();
    servers.push(nats);
    const nc = await connectBus({ servers: nats.url, name: "coordinator", log: silentLogger });
    const test = await connectBus({ servers: nats.url, name: "test", log: silentLogger });
    // The host's "agent" takes the inventory request and answers only when told.
    const held: Msg[] = [];
    test.subscribe(subjects.agent("slow", "inventory"), {
      callback: (_e, m) => {
        held.push(m);
      },
    });
    await test.flush();
    const port = await findFreePort();
    const base = `http://127.0.0.1:${port}`;
    const starting = startCoordinator({
      nc,
      id: "starting-1",
      metricsPort: port,
      hosts: ["slow"],
      leaseTtlMs: 2000,
    });

    expect(await until(() => held.length > 0)).toBe(true);
    expect(await get(base, "/readyz")).toEqual({ status: 503, body: "not ready: starting\n" });
    expect(await get(base, "/healthz")).toEqual({ status: 200, body: "ok\n" });
    const m = held[0]!;
    m.respond(
      JSON.stringify({
        ok: false,
        opId: null,
        error: { kind: "unsupported", message: "not now", details: {} },
      }),
    );

    const handle = await starting;
    expect(await get(base, "/readyz")).toEqual({ status: 200, body: "ready\n" });
    await handle.stop();
    await expect(get(base, "/readyz")).rejects.toThrow();
    await nc.close();
    await test.close();
  });

  it("coordinator: a metrics port already taken fails the start, and the start leaves nothing listening", async () => {
    const nats = await startNats();
    servers.push(nats);
    const nc = await connectBus({ servers: nats.url, name: "coordinator", log: silentLogger });
    const first = await startCoordinator({ nc, id: "port-1", metricsPort: 0, leaseTtlMs: 2000 });
    const port = Number(new URL(first.metricsUrl!).port);
    const nc2 = await connectBus({ servers: nats.url, name: "coordinator 2", log: silentLogger });
    await expect(
      startCoordinator({ nc: nc2, id: "port-2", metricsPort: port, leaseTtlMs: 2000 }),
    ).rejects.toThrow(/EADDRINUSE/);
    await first.stop();
    await expect(get(`http://127.0.0.1:${port}`, "/healthz")).rejects.toThrow();
    await nc.close();
    await nc2.close();
  });
});
