// Helpers of the dashboard and alert-rule tests: promtool run on files, the metric names a PromQL expression
// reads, Grafana's variables made plain PromQL, and the metric families a live coordinator and agent serve.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import type { runAgentFromConfig } from "../../services/agent/main.ts";
import { startWorld } from "../coordinator/helpers.ts";
import { startServedAgent } from "../metrics/support.ts";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** promtool with these arguments, run at the repository's root: exit status and everything it printed. */
export function promtool(args: string[]): { status: number | null; output: string } {
  const r = spawnSync("promtool", args, { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, output: `${r.stdout ?? ""}${r.stderr ?? ""}`.trim() };
}

/**
 * `promtool check rules` on expressions wrapped as recording rules (one group) in a temporary file: does each
 * one parse as PromQL?
 */
export function checkExpressions(exprs: string[]): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), "cxlrc-promql-"));
  try {
    const file = join(dir, "expressions.yaml");
    const rules = exprs.map((expr, i) => ({ record: `cxlrc:check:expr_${i}`, expr }));
    writeFileSync(file, stringify({ groups: [{ name: "expressions", rules }] }));
    return promtool(["check", "rules", file]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Grafana's variables made plain PromQL: its intervals become 5m, a template variable matches anything. */
export function plainPromQL(expr: string): string {
  return expr
    .replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, "5m")
    .replace(/\$\{[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}|\$[A-Za-z_][A-Za-z0-9_]*/g, ".*");
}

/** PromQL words that look like identifiers but name no metric. */
const KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool"]);
const KEYWORDS_CI = new Set(["and", "or", "unless", "offset", "inf", "nan"]);

/**
 * The metric names an expression selects: identifiers once strings, label matchers, ranges and label lists
 * (`by (...)`, `on (...)`, `group_left (...)`) are gone, that are neither a function or aggregation (followed
 * by `(`), a keyword, nor part of a number or duration.
 */
export function metricNames(expr: string): string[] {
  const s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = new Set<string>();
  const token = /(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[a-zA-Z]*)|([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g;
  for (const m of s.matchAll(token)) {
    const id = m[2];
    if (id === undefined || m[3] !== undefined) continue;
    if (KEYWORDS.has(id) || KEYWORDS_CI.has(id.toLowerCase())) continue;
    names.add(id);
  }
  return [...names];
}

/** Series Prometheus makes itself (per scrape target), not served by cxlrc. */
export const PROMETHEUS_BUILTINS = new Set(["up", "scrape_duration_seconds", "scrape_samples_scraped"]);

/**
 * The family a sample name belongs to in a registry (`# TYPE` name → type): itself, or a histogram's (or
 * summary's) `_bucket`/`_sum`/`_count` series; undefined when no family serves it.
 */
export function familyOf(name: string, types: ReadonlyMap<string, string>): string | undefined {
  if (types.has(name)) return name;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (!m) return undefined;
  const type = types.get(m[1]!);
  if (type === "histogram" || (type === "summary" && m[2] !== "bucket")) return m[1];
  return undefined;
}

/** `# TYPE name type` lines of a Prometheus text scrape. */
export function typesOf(text: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1]!, m[2]!);
  return types;
}

/**
 * Start a real nats-server, a coordinator and an agent (each with its /metrics endpoint) and return the
 * metric families each one serves, by name → type.
 */
export async function liveMetricFamilies(): Promise<{
  coordinator: Map<string, string>;
  agent: Map<string, string>;
}> {
  const host = "obs-live";
  const dir = mkdtempSync(join(tmpdir(), "cxlrc-obs-live-"));
  const w = await startWorld([]);
  let agent: Awaited<ReturnType<typeof runAgentFromConfig>> | undefined;
  try {
    agent = await startServedAgent(w, host, dir);
    const c = await w.coordinator({ id: "obs-live-c1", metricsPort: 0, hosts: [host] });
    const scrape = async (url: string | null) => {
      if (url === null) throw new Error("no metrics endpoint");
      const res = await fetch(url);
      if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
      return typesOf(await res.text());
    };
    return { coordinator: await scrape(c.handle.metricsUrl), agent: await scrape(agent.metricsUrl) };
  } finally {
    await agent?.stop();
    await w.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
