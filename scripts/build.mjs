#!/usr/bin/env node
// `npm run build`: the runtime (client, machines, services, shared) compiled by tsc to dist/ for plain node,
// the client's type declarations, and the data files the runtime reads by path (the bundled demo fleet, the
// chaos scenarios). Plain JavaScript so that it runs where tsx is not installed (the container's build stage).
// `--if-stale`: only when a source is newer than the last build (the test suite's global setup).
import { execFileSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DIST = join(ROOT, "dist");
const STAMP = join(DIST, ".built");
const SOURCES = ["client", "machines", "services", "shared"];
const ASSETS = ["shared/sim/fleets", "services/chaos/scenarios", "services/ui/assets"];
const INPUTS = [
  "package.json",
  "tsconfig.json",
  "tsconfig.build.json",
  "tsconfig.types.json",
  "scripts/build.mjs",
];

function newest(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let t = st.mtimeMs;
  for (const e of readdirSync(path)) t = Math.max(t, newest(join(path, e)));
  return t;
}

function stale() {
  if (!existsSync(STAMP)) return true;
  const built = statSync(STAMP).mtimeMs;
  return [...SOURCES, ...INPUTS].some((p) => newest(join(ROOT, p)) > built);
}

/**
 * `lenient` (the test suite's build): type errors do not stop it, tsc emits JavaScript regardless and
 * `npm run typecheck`, which runs before the tests, is where type errors fail. `npm run build` is strict.
 */
export function build({ ifStale = false, lenient = false } = {}) {
  if (ifStale && !stale()) return false;
  // Built beside dist/ and swapped in at the end: a CLI that runs meanwhile (another test run) keeps a whole
  // dist/ to run, and a failed build leaves the last good one.
  const out = `${DIST}.${process.pid}`;
  rmSync(out, { recursive: true, force: true });
  const tsc = join(ROOT, "node_modules/typescript/bin/tsc");
  for (const project of ["tsconfig.build.json", "tsconfig.types.json"]) {
    try {
      execFileSync(process.execPath, [tsc, "-p", project, "--outDir", out], {
        cwd: ROOT,
        stdio: lenient ? "pipe" : "inherit",
      });
    } catch (e) {
      // tsc exits 2 when it emitted with type errors, 1 when it emitted nothing.
      if (lenient && e.status === 2) {
        process.stderr.write(
          `build: ${project} has type errors (npm run typecheck names them); emitted anyway\n`,
        );
        continue;
      }
      rmSync(out, { recursive: true, force: true });
      throw new Error(`tsc -p ${project} failed${lenient ? `: ${e.stdout}` : " (its errors are above)"}`, {
        cause: e,
      });
    }
  }
  for (const dir of ASSETS) {
    const to = join(out, dir);
    mkdirSync(dirname(to), { recursive: true });
    cpSync(join(ROOT, dir), to, { recursive: true, filter: (src) => !src.endsWith(".ts") });
  }
  writeFileSync(join(out, ".built"), `${new Date().toISOString()}\n`);
  const old = `${DIST}.old.${process.pid}`;
  if (existsSync(DIST)) renameSync(DIST, old);
  renameSync(out, DIST);
  rmSync(old, { recursive: true, force: true });
  return true;
}

if (process.argv[1] && relative(process.argv[1], fileURLToPath(import.meta.url)) === "") {
  const t0 = performance.now();
  try {
    const ifStale = process.argv.includes("--if-stale");
    const did = build({ ifStale, lenient: ifStale });
    if (did) process.stderr.write(`build: dist/ in ${Math.round(performance.now() - t0)} ms\n`);
  } catch (e) {
    process.stderr.write(`build: ${e.message}\n`);
    process.exitCode = 1;
  }
}
