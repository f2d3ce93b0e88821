// The coordinator's and the agent's HTTP endpoints over a real nats-server: after a reset, both /metrics
// scrapes pass `promtool check metrics` with no lint problem, the agent's operation histogram holds one
// sample per operation the agent ran, build info and process metrics are there; /healthz answers while the
// process does, /readyz follows the bus (503 while nats-server is down, 200 once it is back).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningAgent } from "../../services/agent/main.ts";
import {
  publishRequest,
  type RunningCoordinator,
  readEvents,
  startWorld,
  until,
  type World,
} from "../coordinator/helpers.ts";
import { get, labelSets, promtoolCheck, rootPackageVersion, sample, startServedAgent } from "./support.ts";

const HOST = "mx";
const BDF = "0000:01:00.0";
const dir = mkdtempSync(join(tmpdir(), "cxlrc-metrics-test-"));

let w: World;
let c: RunningCoordinator;
let agent: RunningAgent;
let coordinatorBase: string;
let agentBase: string;

beforeAll(async () => {
  // No agents of the world's own: this host's agent is the one `serve agent` would run, with its endpoint.
  w = await startWorld([]);
  agent = await startServedAgent(w, HOST, dir);
  c = await w.coordinator({ metricsPort: 0, hosts: [HOST] });
  coordinatorBase = c.handle.metricsUrl!.replace(/\/metrics$/, "");
  agentBase = agent.metricsUrl!.replace(/\/metrics$/, "");
});

afterAll(async () => {
  await agent?.stop();
  await w?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** How many times the agent reported each operation finished (op.completed / op.failed on the bus). */
async function agentOpsFromEvents(): Promise<Map<string, { ok: number; failed: number }>> {
  const ops = new Map<string, { ok: number; failed: number }>();
  for (const { event } of await readEvents(w.jsm, { source: "agent", host: HOST })) {
    if (event.kind !== "op.completed" && event.kind !== "op.failed") continue;
    const op = String(event.data.op);
    const n = ops.get(op) ?? { ok: 0, failed: 0 };
    if (event.kind === "op.completed") n.ok++;
    else n.failed++;
    ops.set(op, n);
  }
  return ops;
}

describe("metrics after a reset", () => {
  beforeAll(async () => {
    await publishRequest(w.js, {
      requestId: "metrics-1",
      host: HOST,
      bdf: BDF,
      scope: "io",
      reason: "metrics",
    });
    expect((await c.handle.waitForOutcome("metrics-1", 20_000)).outcome).toBe("verified");
  });

  it("the agent's histogram has one sample per operation it ran, labelled by op, backend and result", async () => {
    const fromEvents = await agentOpsFromEvents();
    // What an io reset asks of the agent, besides the inventory of the discovery at start (the device reset
    // alone: its restore and verify run inside the reset's operation).
    for (const op of ["inventory", "probe", "save", "reset"])
      expect(fromEvents.get(op)?.ok).toBeGreaterThan(0);
    expect(fromEvents.get("restore")).toBeUndefined();
    let text = "";
    const agrees = await until(async () => {
      text = (await get(agentBase, "/metrics")).body;
      return [...fromEvents].every(
        ([op, n]) =>
          sample(text, "cxlrc_agent_operation_duration_seconds_count", {
            op,
            backend: "sim",
            result: "ok",
          }) === n.ok &&
          sample(text, "cxlrc_agent_operations_total", { op, backend: "sim", result: "ok" }) === n.ok,
      );
    });
    expect(agrees, text).toBe(true);
    for (const [op] of fromEvents) {
      const sum = sample(text, "cxlrc_agent_operation_duration_seconds_sum", {
        op,
        backend: "sim",
        result: "ok",
      });
      expect(sum).toBeGreaterThanOrEqual(0);
      expect(
        sample(text, "cxlrc_agent_operation_duration_seconds_bucket", {
          op,
          backend: "sim",
          result: "ok",
          le: "+Inf",
        }),
      ).toBe(fromEvents.get(op)!.ok);
    }
    // Few-valued labels only: no device address, no operation id anywhere in the scrape.
    expect(text).not.toContain(BDF);
    expect(text).not.toMatch(/opId|metrics-1/);
    const ops = new Set(
      labelSets(text, "cxlrc_agent_operations_total").map((l) => Object.keys(l).sort().join(",")),
    );
    expect([...ops]).toEqual(["backend,op,result"]);
  });

  it("both scrapes pass promtool check metrics without a lint problem", async () => {
    for (const base of [coordinatorBase, agentBase]) {
      const res = await get(base, "/metrics");
      expect(res.status).toBe(200);
      // promtool accepts an empty input: make sure it judged a real scrape.
      expect(res.body).toMatch(/^cxlrc_build_info\{/m);
      const verdict = promtoolCheck(res.body);
      expect(verdict.error).toBeUndefined();
      expect(verdict.output).toBe("");
      expect(verdict.status).toBe(0);
    }
  });

  it("the coordinator counted the reset too", async () => {
    const text = (await get(coordinatorBase, "/metrics")).body;
    expect(sample(text, "cxlrc_resets_total", { method: "flr", scope: "io", outcome: "verified" })).toBe(1);
    expect(sample(text, "cxlrc_reset_duration_seconds_count", { method: "flr", outcome: "verified" })).toBe(
      1,
    );
  });

  it("build info carries package.json's version and the component; process metrics are served", async () => {
    const version = rootPackageVersion();
    for (const [base, component] of [
      [coordinatorBase, "coordinator"],
      [agentBase, "agent"],
    ] as const) {
      const text = (await get(base, "/metrics")).body;
      expect(sample(text, "cxlrc_build_info", { version, node: process.version, component })).toBe(1);
      expect(labelSets(text, "cxlrc_build_info")).toHaveLength(1);
      expect(sample(text, "process_cpu_seconds_total")).toBeGreaterThan(0);
      expect(sample(text, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
      // prom-client's misnamed gauges are left out (promtool: "_total" is for counters).
      expect(text).not.toMatch(/^nodejs_active_handles_total /m);
    }
  });

  it("the agent counts heartbeats, says when it sent the last one, and shows no lost events", async () => {
    const t0 = Date.now() / 1000;
    let text = "";
    // heartbeatMs is 100: a few more go out within a second.
    const before = sample((await get(agentBase, "/metrics")).body, "cxlrc_agent_heartbeats_total") ?? 0;
    expect(
      await until(async () => {
        text = (await get(agentBase, "/metrics")).body;
        return (sample(text, "cxlrc_agent_heartbeats_total") ?? 0) >= before + 2;
      }),
    ).toBe(true);
    expect(sample(text, "cxlrc_agent_last_heartbeat_timestamp_seconds")).toBeGreaterThanOrEqual(t0 - 1);
    expect(sample(text, "cxlrc_agent_last_heartbeat_timestamp_seconds")).toBeLessThanOrEqual(
      Date.now() / 1000 + 1,
    );
    for (const reason of ["outbox", "unpublishable", "heartbeat"]) {
      expect(sample(text, "cxlrc_agent_events_dropped_total", { reason })).toBe(0);
    }
  });
});

describe("health endpoints", () => {
  it("/healthz is 200 ok, /readyz 200 while connected and serving, anything else 404", async () => {
    for (const base of [coordinatorBase, agentBase]) {
      expect(await get(base, "/healthz")).toEqual({ status: 200, body: "ok\n" });
      expect(await get(base, "/readyz")).toEqual({ status: 200, body: "ready\n" });
      expect((await get(base, "/other")).status).toBe(404);
      expect((await get(base, "/")).status).toBe(404);
      expect((await get(base, "/readyz/x")).status).toBe(404);
      expect((await get(base, "/readyz", "POST")).status).toBe(405);
    }
  });

  it("/readyz is 503 'bus disconnected' while nats-server is down, /healthz stays 200, and 200 once it is back", async () => {
    const down = { coordinator: "", agent: "" };
    await w.server.restart({
      whileDown: async () => {
        for (const [name, base] of [
          ["coordinator", coordinatorBase],
          ["agent", agentBase],
        ] as const) {
          let last = { status: 0, body: "" };
          await until(async () => {
            last = await get(base, "/readyz");
            return last.status === 503;
          });
          down[name] = `${last.status} ${last.body}`;
          expect(await get(base, "/healthz")).toEqual({ status: 200, body: "ok\n" });
        }
      },
    });
    expect(down).toEqual({
      coordinator: "503 not ready: bus disconnected\n",
      agent: "503 not ready: bus disconnected\n",
    });
    for (const base of [coordinatorBase, agentBase]) {
      expect(await until(async () => (await get(base, "/readyz")).status === 200)).toBe(true);
    }
  });
});
