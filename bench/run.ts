// `npm run bench`: runs every bench/*.bench.ts (or those named on the command line) and prints one table.
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BenchRow, printTable } from "./lib.ts";

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
}
console.log(`cxlrc benchmarks: node ${process.version}, ${(await import("node:os")).cpus().length} cores`);
printTable(rows);
