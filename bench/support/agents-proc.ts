// Child process: BENCH_HOSTS simulated hosts × BENCH_PER_HOST devices, one real cxlrc agent per host (as
// `cxlrc serve agent` runs it), the simulator on the real clock (BENCH_CLOCK=virtual for the memory runs).
// Each agent keeps its state (fencing table, reset journal) in a directory of its own on disk, as the service
// does (BENCH_AGENT_STATE=memory: in memory only, as an embedded agent).
// It also runs the baseline: the same resets driven by a plain script calling the operations directly.
//
// Commands: take (per-device accounts since the last take), baseline, usage, stop.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { agentTimeouts, type OpContext, operations } from "../../services/agent/ops/index.ts";
import { AGENT_VERSION, type AgentHandle, startAgent } from "../../services/agent/service.ts";
import { connectBus } from "../../shared/bus/client.ts";
import { realClock } from "../../shared/hw/backend.ts";
import { silentLogger } from "../../shared/log.ts";
import { createSimHost, type SimHost, VirtualClock } from "../../shared/sim/index.ts";
import { gc, sendFailed, sendReady, serveParent } from "./child.ts";
import { Accounts, accountedOperations, accountKey, benchHost, hostName } from "./fleet.ts";

export interface AgentsReady {
  hosts: number;
  perHost: number;
  startMs: number;
}

export interface BaselineArgs {
  devices: Array<{ host: string; bdf: string }>;
  scope: "io" | "full";
  method: "flr" | "cxl" | "sbr";
}

export interface BaselineResult {
  /** Per device: wall time of the script, device waits, time inside operations. */
  runs: Array<{
    host: string;
    bdf: string;
    wallMs: number;
    waitMs: number;
    opMs: number;
    passed: boolean;
    error?: string;
  }>;
  totalMs: number;
}

const env = (k: string, d: string) => process.env[k] ?? d;

async function main(): Promise<void> {
  const t0 = performance.now();
  const url = env("BENCH_NATS", "");
  const hosts = Number(env("BENCH_HOSTS", "1"));
  const perHost = Number(env("BENCH_PER_HOST", "1"));
  const virtual = env("BENCH_CLOCK", "real") === "virtual";
  const heartbeatMs = Number(env("BENCH_HEARTBEAT_MS", "5000"));
  const hostsPerConnection = Number(env("BENCH_HOSTS_PER_CONN", "64"));
  const agentState = env("BENCH_AGENT_STATE", "disk");
  if (agentState !== "disk" && agentState !== "memory") {
    throw new Error(`BENCH_AGENT_STATE must be "disk" or "memory", not ${JSON.stringify(agentState)}`);
  }
  const stateRoot = agentState === "disk" ? mkdtempSync(join(tmpdir(), "cxlrc-bench-agents-")) : null;
  if (stateRoot) process.on("exit", () => rmSync(stateRoot, { recursive: true, force: true }));
  const accounts = new Accounts();
  const sims = new Map<string, SimHost>();
  const views = new Map<string, ReturnType<typeof accountedOperations>>();
  const conns: NatsConnection[] = [];
  const agents: AgentHandle[] = [];

  for (let i = 0; i < hosts; i++) {
    if (i % hostsPerConnection === 0) {
      conns.push(await connectBus({ servers: url, name: `bench agents ${conns.length}`, log: silentLogger }));
    }
    const name = hostName(i);
    const sim = createSimHost(benchHost(name, perHost), { clock: virtual ? new VirtualClock() : realClock });
    sims.set(name, sim);
    const acc = accountedOperations(operations, sim, name, accounts);
    views.set(name, acc);
    agents.push(
      await startAgent({
        nc: conns.at(-1)!,
        host: name,
        backend: sim,
        operations: acc.operations,
        heartbeatMs,
        maxQueuePerDevice: 64,
        ...(stateRoot ? { stateDir: join(stateRoot, name) } : {}),
      }),
    );
  }

  serveParent({
    take: () => accounts.take(),
    usage: () => {
      gc();
      return { ...process.memoryUsage(), cpu: process.cpuUsage() };
    },
    agentStats: () => {
      let completed = 0;
      let failed = 0;
      let stored = 0;
      for (const a of agents) {
        const s = a.stats();
        completed += s.completed;
        failed += s.failed;
        stored += s.events.stored;
      }
      return { completed, failed, eventsStored: stored };
    },
    /** Every device in parallel, each one a plain sequential script: probe, save, quiesce, reset, restore, verify. */
    baseline: async (a) => {
      const args = a as BaselineArgs;
      const start = performance.now();
      const runs = await Promise.all(
        args.devices.map(async ({ host, bdf }) => {
          const acc = views.get(host);
          if (!acc) throw new Error(`no host ${host}`);
          const ctx: OpContext = {
            backend: acc.view(bdf),
            host,
            log: silentLogger,
            emit: () => undefined,
            timeouts: agentTimeouts(),
            agentVersion: AGENT_VERSION,
          };
          const k = accountKey(host, bdf);
          const t = performance.now();
          const before = accounts.get(k).waitMs;
          let passed = false;
          let error: string | undefined;
          try {
            await operations.probe(ctx, { bdf });
            const image = await operations.save(ctx, { bdf });
            await operations.quiesce(ctx, { bdf, scope: args.scope });
            await operations.reset(ctx, { bdf, method: args.method });
            await operations.restore(ctx, { bdf, scope: args.scope, image });
            passed = (await operations.verify(ctx, { bdf, scope: args.scope, image })).passed;
            if (!passed) error = "verify failed";
          } catch (e) {
            const err = e as { message?: string; details?: unknown };
            error = `${err.message ?? String(e)} ${JSON.stringify(err.details ?? {})}`;
          }
          const wallMs = performance.now() - t;
          return {
            host,
            bdf,
            wallMs,
            waitMs: accounts.get(k).waitMs - before,
            // No wrapper around direct calls: the whole script is operations.
            opMs: wallMs,
            passed,
            ...(error ? { error } : {}),
          };
        }),
      );
      accounts.take();
      return { runs, totalMs: performance.now() - start } satisfies BaselineResult;
    },
    stop: async () => {
      await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
      await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
    },
  });
  sendReady({ hosts, perHost, startMs: performance.now() - t0 } satisfies AgentsReady);
}

main().catch((e) => {
  sendFailed(e);
  process.exit(1);
});
