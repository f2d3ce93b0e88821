// Summarize V8 CPU profiles (.cpuprofile, from BENCH_PROF=<dir> or `node --cpu-prof`): self time by
// function and by source (project file, or package under node_modules), top entries first.
//   npx tsx bench/support/profile.ts <file.cpuprofile | dir> [top=25]
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function source(url: string): string {
  if (!url) return "(native / gc / idle)";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + 13).split("/");
    return `pkg ${rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (url.startsWith("node:")) return url;
  const m = /\/work\/main\/(.*)$/.exec(url) ?? /([^/]+\/[^/]+)$/.exec(url);
  return m ? m[1]! : url;
}

export function summarizeProfile(path: string, top = 25): string {
  const p = JSON.parse(readFileSync(path, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const fn = new Map<string, number>();
  const src = new Map<string, number>();
  let idle = 0;
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const name = n.callFrame.functionName || "(anonymous)";
    if (name === "(idle)") {
      idle += us;
      continue;
    }
    const s = ["(garbage collector)", "(program)"].includes(name) ? name : source(n.callFrame.url);
    const f = `${name} ${s}:${n.callFrame.lineNumber + 1}`;
    fn.set(f, (fn.get(f) ?? 0) + us);
    src.set(s, (src.get(s) ?? 0) + us);
  }
  const busy = total - idle;
  const fmt = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(
        ([k, us]) =>
          `  ${((us / busy) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`,
      )
      .join("\n");
  return [
    `${path}: ${(total / 1e6).toFixed(1)} s profiled, ${(busy / 1e6).toFixed(1)} s busy (${((busy / total) * 100).toFixed(0)}%)`,
    "self time by source:",
    fmt(src),
    "self time by function:",
    fmt(fn),
  ].join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = process.argv[2];
  const top = Number(process.argv[3] ?? 25);
  if (!arg) {
    console.error("usage: tsx bench/support/profile.ts <file.cpuprofile | dir> [top]");
    process.exit(2);
  }
  const files = statSync(arg).isDirectory()
    ? readdirSync(arg)
        .filter((f) => f.endsWith(".cpuprofile") || f.endsWith(".heapprofile"))
        .map((f) => join(arg, f))
    : [arg];
  for (const f of files) {
    console.log(f.endsWith(".heapprofile") ? summarizeHeapProfile(f, top) : summarizeProfile(f, top));
  }
}

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: HeapNode[];
}

/** A sampling heap profile (.heapprofile from --heap-prof): live bytes by allocating function and source. */
export function summarizeHeapProfile(path: string, top = 25): string {
  const p = JSON.parse(readFileSync(path, "utf8")) as { head: HeapNode };
  const fn = new Map<string, number>();
  const src = new Map<string, number>();
  let total = 0;
  const walk = (n: HeapNode, stack: string) => {
    const name = n.callFrame.functionName || "(anonymous)";
    const s = source(n.callFrame.url);
    const here = `${name} ${s}:${n.callFrame.lineNumber + 1}`;
    if (n.selfSize > 0) {
      total += n.selfSize;
      const k = `${here}  ← ${stack}`;
      fn.set(k, (fn.get(k) ?? 0) + n.selfSize);
      src.set(s, (src.get(s) ?? 0) + n.selfSize);
    }
    for (const c of n.children)
      walk(c, s.startsWith("pkg ") || s.startsWith("node:") || s.startsWith("(") ? stack : here);
  };
  walk(p.head, "(root)");
  const fmt = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(
        ([k, b]) =>
          `  ${((b / total) * 100).toFixed(1).padStart(5)}%  ${(b / 1e6).toFixed(1).padStart(7)} MB  ${k}`,
      )
      .join("\n");
  return [
    `${path}: ${(total / 1e6).toFixed(1)} MB sampled live`,
    "by source:",
    fmt(src),
    "by allocating function (← nearest project frame):",
    fmt(fn),
  ].join("\n");
}
