// The machine a figure came from, and how busy it was: other work on a 2-core box moves every figure here.
import { cpus, loadavg } from "node:os";
import type { BenchRow } from "../lib.ts";

export function machine(): string {
  return `${cpus().length} × ${cpus()[0]?.model ?? "?"}, node ${process.version}`;
}

/** One row: the load average (1/5/15 min) now, against the number of cores. */
export function loadRow(label: string): BenchRow {
  const [l1, l5, l15] = loadavg();
  return {
    name: `machine load average, ${label}`,
    runs: 1,
    value: Math.round(l1! * 100) / 100,
    unit: "runnable",
    ratio: `1/5/15 min ${l1!.toFixed(2)} / ${l5!.toFixed(2)} / ${l15!.toFixed(2)} on ${cpus().length} cores`,
  };
}

/** A bench that could not finish says so in the table (benchmarks report; they do not abort the run). */
export function failedRow(bench: string, e: unknown): BenchRow {
  const msg = ((e as Error)?.message ?? String(e)).split("\n")[0]!.slice(0, 300);
  return { name: `${bench}: FAILED before the end`, runs: 0, value: 0, unit: "", ratio: msg };
}
