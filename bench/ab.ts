// Compare two versions of the code on the same machine, interleaved, because one run says little here: on a
// shared 2-core VM the same code moves by ±10 % from one run to the next (bench/README.md), more than most single
// changes. `base` runs from a git worktree of REF, `head` from this checkout; the runs alternate (base, head,
// head, base, ...) so that a machine getting slower or faster during the comparison hits both alike. Every row
// both sides printed is summarized as the median and the range of its runs, with head's median over base's.
//
//   npx tsx bench/ab.ts <ref> [pairs=3] [bench names...]     (default bench: coordinator)
//
// The environment goes to both sides (BENCH_LEVELS, BENCH_SCOPES, BENCH_FLOOR...). AB_DIR keeps the JSON rows of
// every run (default a temporary directory); AB_KEEP=1 keeps the worktree.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

interface Row {
  name: string;
  value: number | null;
  unit: string;
  p50: number | null;
  p99: number | null;
  note: string;
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const [ref, pairsArg, ...names] = process.argv.slice(2);
if (!ref) {
  console.error("usage: npx tsx bench/ab.ts <ref> [pairs=3] [bench names...]");
  process.exit(2);
}
const pairs = Number(pairsArg ?? 3);
if (!Number.isInteger(pairs) || pairs < 1) {
  console.error(`ab: pairs must be a whole number ≥ 1, not ${JSON.stringify(pairsArg)}`);
  process.exit(2);
}
const benches = names.length > 0 ? names : ["coordinator"];
const git = (...args: string[]) => execFileSync("git", ["-C", root, ...args], { encoding: "utf8" }).trim();
const sha = git("rev-parse", "--verify", `${ref}^{commit}`);
const tree = join(tmpdir(), `cxlrc-ab-${sha.slice(0, 12)}`);
if (!existsSync(tree)) {
  git("worktree", "add", "--detach", "--force", tree, sha);
  symlinkSync(join(root, "node_modules"), join(tree, "node_modules"));
}
const out = process.env.AB_DIR ?? mkdtempSync(join(tmpdir(), "cxlrc-ab-rows-"));
mkdirSync(out, { recursive: true });

/** One run of the benches in `dir`; its rows. */
function run(side: "base" | "head", dir: string, i: number): Row[] {
  const file = join(out, `${side}-${i}.jsonl`);
  // BENCH_JSON appends: a kept AB_DIR must not mix an earlier comparison's rows into this one.
  rmSync(file, { force: true });
  const t0 = Date.now();
  const r = spawnSync("npx", ["tsx", "bench/run.ts", ...benches], {
    cwd: dir,
    env: { ...process.env, BENCH_JSON: file },
    stdio: ["ignore", "ignore", "inherit"],
  });
  console.error(
    `ab: ${side} run ${i + 1} of ${pairs}: exit ${r.status}, ${((Date.now() - t0) / 1000).toFixed(0)} s`,
  );
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Row);
}

const runs: Record<"base" | "head", Row[][]> = { base: [], head: [] };
try {
  for (let i = 0; i < pairs; i++) {
    const order: Array<"base" | "head"> = i % 2 === 0 ? ["base", "head"] : ["head", "base"];
    for (const side of order) runs[side].push(run(side, side === "base" ? tree : root, i));
  }
} finally {
  if (process.env.AB_KEEP !== "1") {
    git("worktree", "remove", "--force", tree);
    git("worktree", "prune");
  }
}

/** The figures of a row: its value, p50 and p99, and the CPU of nats-server when its note names it. */
function figures(r: Row): Record<string, number> {
  const f: Record<string, number> = {};
  if (r.value !== null) f.value = r.value;
  if (r.p50 !== null) f.p50 = r.p50;
  if (r.p99 !== null) f.p99 = r.p99;
  const nats = /nats-server ([\d.]+)/.exec(r.note);
  if (nats) f["nats-server"] = Number(nats[1]);
  return f;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (x: number) =>
  Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2);
const summary = (xs: number[]) => `${fmt(median(xs))} [${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))}]`;

const order = [...new Set(runs.head.flat().map((r) => r.name))];
console.log(
  `A/B ${benches.join(" ")}: base ${ref} (${sha.slice(0, 12)}) vs head (this checkout), ${pairs} pair(s)`,
);
console.log(`rows of every run: ${out}`);
console.log(
  `${"row".padEnd(72)} ${"figure".padEnd(11)} ${"base median [range]".padEnd(26)} ${"head median [range]".padEnd(26)} head/base`,
);
for (const name of order) {
  const pick = (side: "base" | "head") =>
    runs[side].map((rows) => rows.find((r) => r.name === name)).filter((r): r is Row => r !== undefined);
  const b = pick("base");
  const h = pick("head");
  if (b.length === 0 || h.length === 0) continue;
  for (const k of Object.keys(figures(h[0]!))) {
    const bx = b.map((r) => figures(r)[k]).filter((x): x is number => x !== undefined);
    const hx = h.map((r) => figures(r)[k]).filter((x): x is number => x !== undefined);
    if (bx.length === 0 || hx.length === 0) continue;
    const ratio = median(bx) === 0 ? "-" : `${(median(hx) / median(bx)).toFixed(3)}×`;
    console.log(
      `${name.slice(0, 72).padEnd(72)} ${k.padEnd(11)} ${summary(bx).padEnd(26)} ${summary(hx).padEnd(26)} ${ratio}`,
    );
  }
}
