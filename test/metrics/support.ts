// Helpers of the metrics tests: promtool's verdict on a scrape, samples read out of Prometheus text, and
// the version the package.json at the root of this checkout says, the agent `serve agent` would run.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type RunningAgent, runAgentFromConfig } from "../../services/agent/main.ts";
import { silentLogger } from "../../shared/log.ts";
import { createSimHost, VirtualClock } from "../../shared/sim/index.ts";
import { rootPortHost, type World } from "../coordinator/helpers.ts";

/** `promtool check metrics` on stdin: its exit status and everything it printed (lint problems). */
export function promtoolCheck(text: string): { status: number | null; output: string; error?: string } {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: 20_000 });
  return {
    status: r.status,
    output: `${r.stdout ?? ""}${r.stderr ?? ""}`.trim(),
    ...(r.error ? { error: r.error.message } : {}),
  };
}

/** The value of the one sample `name{labels}` (labels in any order), or undefined when there is none. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      have.set(l[1]!, l[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}

/** Every label set of `name`'s samples. */
export function labelSets(text: string, name: string): Array<Record<string, string>> {
  const out: Array<Record<string, string>> = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} \S+$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const l of m[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push(labels);
  }
  return out;
}

/** The root package.json's version, read directly (what cxlrc_build_info must carry). */
export function rootPackageVersion(): string {
  return (
    JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
  ).version;
}

/** GET a path of an endpoint: status and body. */
export async function get(
  baseUrl: string,
  path: string,
  method = "GET",
): Promise<{ status: number; body: string }> {
  const res = await fetch(`${baseUrl}${path}`, { method });
  return { status: res.status, body: await res.text() };
}

/**
 * The agent `cxlrc serve agent` would run for `host` (simulated, one root port, its /metrics endpoint on a free
 * port, a 100 ms heartbeat) on the world's bus; its state under `dir`.
 */
export function startServedAgent(w: World, host: string, dir: string): Promise<RunningAgent> {
  return runAgentFromConfig(
    {
      host,
      servers: w.server.url,
      backend: "sim",
      heartbeatMs: 100,
      stateDir: join(dir, "agent-state"),
      ensureStreams: false,
      metrics: { port: 0 },
      logLevel: "silent",
    },
    {
      backend: createSimHost(rootPortHost(host, 1), { clock: new VirtualClock() }),
      handleSignals: false,
      log: silentLogger,
    },
  );
}
