// Shared helpers for `npm run bench`: every benchmark file exports `bench(): Promise<BenchRow[]>`.
export interface BenchRow {
  /** What was measured, e.g. "decode 4 KiB config + component block". */
  name: string;
  /** How many runs the figure is over. */
  runs: number;
  /** The figure, with its unit in `unit`. */
  value: number;
  unit: string;
  /** Optional percentiles and ratios, already formatted or numeric. */
  p50?: number;
  p99?: number;
  ratio?: string;
  goal?: string;
}

/**
 * One row as the JSON line `npm run bench` appends to $BENCH_JSON: name, runs, value, unit, p50, p99 and a note
 * (the ratio against the baseline and the goal, as printed). Missing figures are null, never left out.
 */
export function rowJson(r: BenchRow): string {
  const note = [r.ratio, r.goal ? `goal ${r.goal}` : undefined].filter((x) => x).join("; ");
  return JSON.stringify({
    name: r.name,
    runs: r.runs,
    value: Number.isFinite(r.value) ? r.value : null,
    unit: r.unit,
    p50: r.p50 !== undefined && Number.isFinite(r.p50) ? r.p50 : null,
    p99: r.p99 !== undefined && Number.isFinite(r.p99) ? r.p99 : null,
    note,
  });
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarize(samples: number[]): { p50: number; p99: number; mean: number } {
  const s = [...samples].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return { p50: percentile(s, 50), p99: percentile(s, 99), mean };
}

export function printTable(rows: readonly BenchRow[]): void {
  const cols: (keyof BenchRow)[] = ["name", "runs", "value", "unit", "p50", "p99", "ratio", "goal"];
  const fmt = (v: unknown) =>
    typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : ((v ?? "") as string);
  const cells = rows.map((r) => cols.map((c) => fmt(r[c])));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join("  ");
  console.log(line(cols as string[]));
  console.log(line(widths.map((w) => "-".repeat(w))));
  for (const row of cells) console.log(line(row));
}
