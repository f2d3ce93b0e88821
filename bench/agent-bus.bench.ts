// Agent operations over NATS versus a direct in-process call: ops/s, p50/p99 latency, the ratio and the
// added latency per operation. The simulator (virtual clock) answers at once, so the bus overhead shows.
// Runs against a spawned nats-server (shared/natsd/server.ts).

import { operations } from "../services/agent/ops/index.ts";
import { agentTimeouts } from "../services/agent/ops/timeouts.ts";
import { AGENT_VERSION, type OpContext, startAgent } from "../services/agent/service.ts";
import { callAgent, connectBus, ensureStreams, getJsm } from "../shared/bus/client.ts";
import { silentLogger } from "../shared/log.ts";
import { startNats } from "../shared/natsd/server.ts";
import { createSimHost, defaultFleet, VirtualClock } from "../shared/sim/index.ts";
import { type BenchRow, summarize } from "./lib.ts";

const HOST = "alpha";
const DEV = "0000:01:00.0";

function simBackend() {
  const spec = defaultFleet().hosts.find((h) => h.name === HOST);
  if (!spec) throw new Error(`no host ${HOST} in the bundled fleet`);
  return createSimHost(spec, { clock: new VirtualClock() });
}

async function timed(
  n: number,
  f: (i: number) => Promise<unknown>,
): Promise<{ samples: number[]; perSec: number }> {
  for (let i = 0; i < Math.min(200, n); i++) await f(-1 - i); // warm-up
  const samples: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await f(i);
    samples.push(performance.now() - s);
  }
  return { samples, perSec: (n / (performance.now() - t0)) * 1000 };
}

export async function bench(): Promise<BenchRow[]> {
  const N = Number(process.env.BENCH_N ?? 2000);
  const rows: BenchRow[] = [];

  // Direct: the operation called in-process on the same kind of backend.
  const direct = simBackend();
  const ctx: OpContext = {
    backend: direct,
    host: HOST,
    log: silentLogger,
    emit: () => undefined,
    timeouts: agentTimeouts(),
    agentVersion: AGENT_VERSION,
  };
  const d = await timed(N, () => operations.probe(ctx, { bdf: DEV }));
  const ds = summarize(d.samples);
  rows.push({
    name: "probe, direct in-process",
    runs: N,
    value: Math.round(d.perSec),
    unit: "ops/s",
    ...pct(ds),
  });

  const server = await startNats();
  try {
    // Reference: a bare request/reply with a probe-sized (5 KiB) JSON reply, no agent.
    {
      const a = await connectBus({ servers: server.url, name: "bench echo", log: silentLogger });
      const c = await connectBus({ servers: server.url, name: "bench echo client", log: silentLogger });
      const payload = JSON.stringify({ ok: true, result: "x".repeat(5 * 1024) });
      a.subscribe("bench.echo", { callback: (_e, m) => void m.respond(payload) });
      await a.flush();
      const e = await timed(N, () =>
        c.request("bench.echo", "{}", { timeout: 10_000 }).then((m) => m.json()),
      );
      rows.push({
        name: "bare NATS request/reply, 5 KiB JSON reply",
        runs: N,
        value: Math.round(e.perSec),
        unit: "ops/s",
        ...pct(summarize(e.samples)),
      });
      await a.close();
      await c.close();
    }
    for (const mode of ["jetstream", "core"] as const) {
      const agentNc = await connectBus({ servers: server.url, name: "bench agent", log: silentLogger });
      const nc = await connectBus({ servers: server.url, name: "bench client", log: silentLogger });
      await ensureStreams(await getJsm(nc));
      const agent = await startAgent({
        nc: agentNc,
        host: HOST,
        backend: simBackend(),
        heartbeatMs: 60_000,
        maxQueuePerDevice: 10_000,
        events: { mode },
      });
      const label = mode === "jetstream" ? "events stored (JetStream)" : "events core NATS";
      const b = await timed(N, (i) =>
        callAgent(nc, HOST, "probe", `b-${mode}-${i}`, { bdf: DEV }, { timeoutMs: 10_000 }),
      );
      const bs = summarize(b.samples);
      rows.push({
        name: `probe over NATS, sequential, ${label}`,
        runs: N,
        value: Math.round(b.perSec),
        unit: "ops/s",
        ...pct(bs),
        ratio: `${(bs.p50 / ds.p50).toFixed(1)}x p50; +${(bs.p50 - ds.p50).toFixed(3)} ms/op`,
      });

      // Concurrency: 64 in flight over the host's three devices (one at a time per device, as the agent
      // guarantees) versus 64 in flight on one device.
      const devices = ["0000:01:00.0", "0000:02:00.0", "0000:03:00.0"];
      for (const spread of [devices, [DEV]]) {
        const total = N;
        let next = 0;
        const lat: number[] = [];
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: 64 }, async () => {
            while (next < total) {
              const i = next++;
              const s = performance.now();
              await callAgent(
                nc,
                HOST,
                "probe",
                `c-${mode}-${spread.length}-${i}`,
                { bdf: spread[i % spread.length]! },
                { timeoutMs: 30_000 },
              );
              lat.push(performance.now() - s);
            }
          }),
        );
        const perSec = (total / (performance.now() - t0)) * 1000;
        rows.push({
          name: `probe over NATS, 64 in flight on ${spread.length} device(s), ${label}`,
          runs: total,
          value: Math.round(perSec),
          unit: "ops/s",
          ...pct(summarize(lat)),
        });
      }
      await agent.stop();
      await agentNc.close();
      await nc.close();
    }
  } finally {
    await server.stop();
  }
  return rows;
}

function pct(s: { p50: number; p99: number }): { p50: number; p99: number } {
  return { p50: Math.round(s.p50 * 1000) / 1000, p99: Math.round(s.p99 * 1000) / 1000 };
}
