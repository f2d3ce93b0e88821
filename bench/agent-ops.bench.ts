// Agent operations on the simulator (virtual clock: the figures are CPU cost, not device waits).
import { agentTimeouts, type OpContext, operations } from "../services/agent/ops/index.ts";
import { silentLogger } from "../shared/log.ts";
import { createSimHost, SIMPLE_DEVICE, simpleHost, VirtualClock } from "../shared/sim/index.ts";
import { type BenchRow, summarize } from "./lib.ts";

function context(): OpContext {
  const clock = new VirtualClock();
  const sim = createSimHost(
    simpleHost({
      device: {
        driver: "cxl_accel",
        firmware: {
          cacheEnable: true,
          decoders: [
            { base: 0x1_0000_0000, size: 0x1000_0000 },
            { base: 0x1_1000_0000, size: 0x1000_0000 },
          ],
        },
      },
    }),
    { clock },
  );
  return {
    backend: sim,
    host: sim.name,
    log: silentLogger,
    emit: () => {},
    timeouts: agentTimeouts(),
    agentVersion: "bench",
  };
}

async function measure(
  name: string,
  runs: number,
  once: () => Promise<unknown>,
  goal?: string,
): Promise<BenchRow> {
  for (let i = 0; i < Math.min(20, runs); i++) await once(); // warm-up
  const samples: number[] = [];
  const start = performance.now();
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await once();
    samples.push(performance.now() - t);
  }
  const total = performance.now() - start;
  const s = summarize(samples);
  return {
    name,
    runs,
    value: (runs / total) * 1000,
    unit: "ops/s",
    p50: s.p50,
    p99: s.p99,
    ...(goal ? { goal } : {}),
  };
}

export async function bench(): Promise<BenchRow[]> {
  const ctx = context();
  const bdf = SIMPLE_DEVICE;
  const rows: BenchRow[] = [];
  rows.push(await measure("agent probe (sim, p50/p99 in ms)", 500, () => operations.probe(ctx, { bdf })));
  rows.push(await measure("agent save image (sim)", 1000, () => operations.save(ctx, { bdf })));
  const image = await operations.save(ctx, { bdf });
  rows.push(
    await measure("agent save+quiesce+cxl reset+restore+verify (sim)", 300, async () => {
      const img = await operations.save(ctx, { bdf });
      await operations.quiesce(ctx, { bdf, scope: "full" });
      await operations.reset(ctx, { bdf, method: "cxl" });
      await operations.restore(ctx, { bdf, scope: "full", image: img });
      const v = await operations.verify(ctx, { bdf, scope: "full", image: img });
      if (!v.passed) throw new Error(`verify failed: ${JSON.stringify(v.mismatches)}`);
    }),
  );
  rows.push(
    await measure("agent verify full (sim)", 1000, () =>
      operations.verify(ctx, { bdf, scope: "full", image }),
    ),
  );
  return rows;
}
