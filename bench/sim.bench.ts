// Simulator cost: register accesses per second (config and MMIO, virtual clock) and memory per simulated
// device (goal: 10,000 devices ≤ 100 MB).
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { HDM_DECODER } from "../shared/cxl/registers.ts";
import { createSimHost, type HostSpecInput, simpleHost, VirtualClock } from "../shared/sim/index.ts";
import type { BenchRow } from "./lib.ts";

const DEV = "0000:01:00.0";
const DECODER0_CONTROL = 0x10000 + 0x1000 + 0x100 + 0x10 + HDM_DECODER.control.offset;

function gcFn(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

/** One host with `n` devices, each alone below its own root port (200 per PCI domain). */
function bigHost(n: number): HostSpecInput {
  const hex = (v: number, w: number) => v.toString(16).padStart(w, "0");
  const bridges = [];
  const devices = [];
  for (let i = 0; i < n; i++) {
    const dom = hex(Math.floor(i / 200), 4);
    const k = i % 200;
    const port = `${dom}:00:${hex(k >> 3, 2)}.${k & 7}`;
    bridges.push({ bdf: port, kind: "root-port" as const, secondaryBus: k + 1 });
    devices.push({
      bdf: `${dom}:${hex(k + 1, 2)}:00.0`,
      parent: port,
      firmware: { decoders: [{ base: 0x1_0000_0000 + i * 0x1000_0000, size: 0x1000_0000 }] },
    });
  }
  return { name: "big", bridges, devices };
}

async function rate(name: string, runs: number, op: () => Promise<unknown>): Promise<BenchRow> {
  for (let i = 0; i < 1000; i++) await op(); // warm up
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await op();
  const s = (performance.now() - t0) / 1000;
  return { name, runs, value: Math.round(runs / s), unit: "ops/s" };
}

export async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const h = createSimHost(simpleHost(), { clock: new VirtualClock() });
  rows.push(await rate("sim configRead 4 B (vendor/device)", 200_000, () => h.configRead(DEV, 0, 4)));
  rows.push(await rate("sim configRead 2 B (DVSEC Control)", 200_000, () => h.configRead(DEV, 0x10c, 2)));
  rows.push(
    await rate("sim configWrite 2 B (DVSEC Control2, RW)", 200_000, () => h.configWrite(DEV, 0x110, 2, 1)),
  );
  rows.push(
    await rate("sim mmioRead32 (decoder 0 control)", 200_000, () => h.mmioRead32(DEV, 0, DECODER0_CONTROL)),
  );

  const gc = gcFn();
  const n = 10_000;
  gc();
  const before = process.memoryUsage();
  const t0 = performance.now();
  const big = createSimHost(bigHost(n), { clock: new VirtualClock() });
  const buildMs = performance.now() - t0;
  gc();
  const after = process.memoryUsage();
  const bytes = after.heapUsed - before.heapUsed + (after.arrayBuffers - before.arrayBuffers);
  const fns = await big.listFunctions();
  rows.push({
    name: `sim build + boot ${n} devices (+${n} root ports)`,
    runs: 1,
    value: Math.round(buildMs),
    unit: "ms",
  });
  rows.push({
    name: `sim memory, ${n} devices (spec + state)`,
    runs: 1,
    value: Math.round((bytes / 1e6) * 10) / 10,
    unit: "MB",
    goal: "≤ 100 MB",
    ratio: `${Math.round(bytes / n)} B/device`,
  });
  if (fns.length !== 2 * n) throw new Error(`expected ${2 * n} functions, got ${fns.length}`);
  return rows;
}
