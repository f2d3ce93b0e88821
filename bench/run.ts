// `npm run bench`: runs every bench/*.bench.ts (or those named on the command line) and prints one table.
// With BENCH_JSON=FILE, every row is also appended to FILE as one JSON line (bench/lib.ts rowJson), file by
// file as each benchmark ends, so that a run cut short keeps what it measured.
import { appendFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BenchRow, printTable, rowJson } from "./lib.ts";

const dir = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
  .sort();
const rows: BenchRow[] = [];
for (const f of files) {
  const mod = (await import(join(dir, f))) as { bench: () => Promise<BenchRow[]> };
  const got = await mod.bench();
  rows.push(...got);
  const json = process.env.BENCH_JSON;
  if (json && got.length > 0) appendFileSync(json, got.map((r) => `${rowJson(r)}\n`).join(""));
}
console.log(`cxlrc benchmarks: node ${process.version}, ${(await import("node:os")).cpus().length} cores`);
printTable(rows);
