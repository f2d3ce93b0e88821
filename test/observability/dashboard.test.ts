// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are Grafana and PromQL text, where ${...} is a Grafana variable
// deploy/grafana/cxlrc.json, checked against what cxlrc really serves: a Grafana dashboard (schema 39, its
// data source a variable) whose panels each have an id, a title and a description of their own and at least
// one query; every query parses as PromQL (promtool check rules on the queries wrapped as recording rules)
// and reads only metrics a live coordinator or agent serves (or Prometheus's own `up`).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  checkExpressions,
  familyOf,
  liveMetricFamilies,
  metricNames,
  PROMETHEUS_BUILTINS,
  plainPromQL,
  ROOT,
} from "./support.ts";

interface Target {
  refId?: string;
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id?: number;
  type?: string;
  title?: string;
  description?: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  fieldConfig?: { defaults?: { mappings?: Array<{ options?: Record<string, { text?: string }> }> } };
}
interface Variable {
  name: string;
  type: string;
  query?: unknown;
  definition?: string;
}
interface Dashboard {
  schemaVersion: number;
  title: string;
  uid: string;
  panels: Panel[];
  templating: { list: Variable[] };
}

const file = join(ROOT, "deploy/grafana/cxlrc.json");
const dashboard = JSON.parse(readFileSync(file, "utf8")) as Dashboard;
const queries = dashboard.panels.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ panel: p.title ?? `#${p.id}`, refId: t.refId, expr: t.expr ?? "" })),
);
/** The data source variable as Grafana writes it. */
const DATASOURCE = "${datasource}";
const variableQueries = dashboard.templating.list
  .filter((v) => v.type === "query")
  .map((v) => ({ name: v.name, definition: v.definition ?? "" }));

describe("the extraction of metric names the checks below rely on", () => {
  it("keeps metric names, drops functions, label lists, matchers, strings, numbers and durations", () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (method, le) (rate(cxlrc_reset_duration_seconds_bucket{job=~"a|b"}[5m] offset 30m)))',
      ),
    ).toEqual(["cxlrc_reset_duration_seconds_bucket"]);
    expect(
      metricNames(
        "sum by (coordinator) (cxlrc_leases_held * on (job, instance) group_left (coordinator) cxlrc_coordinator_info) or vector(0)",
      ),
    ).toEqual(["cxlrc_leases_held", "cxlrc_coordinator_info"]);
    expect(metricNames("time() - max by (host) (cxlrc_agent_last_seen_timestamp_seconds) > 30")).toEqual([
      "cxlrc_agent_last_seen_timestamp_seconds",
    ]);
    expect(metricNames('up{job=~".*coordinator.*"} == 0 and bool 1e3')).toEqual(["up"]);
  });

  it("Grafana's variables become plain PromQL", () => {
    expect(plainPromQL('rate(x{job=~"$job", instance=~"${instance}"}[$__rate_interval])')).toBe(
      'rate(x{job=~".*", instance=~".*"}[5m])',
    );
  });

  it("promtool refuses an expression that does not parse (so the check below can fail)", () => {
    const r = checkExpressions(["sum(rate(cxlrc_resets_total[5m])"]);
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(/parse error|unclosed|expected/i);
  });
});

describe("deploy/grafana/cxlrc.json", () => {
  it("is a schema 39 dashboard whose data source is a Prometheus variable, with job and instance variables", () => {
    expect(dashboard.schemaVersion).toBe(39);
    expect(dashboard.uid).toBe("cxlrc");
    const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(vars.get("datasource")).toMatchObject({ type: "datasource", query: "prometheus" });
    expect(vars.get("job")?.type).toBe("query");
    expect(vars.get("instance")?.type).toBe("query");
    for (const p of dashboard.panels) {
      expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: DATASOURCE });
      for (const t of p.targets ?? []) expect(t.datasource?.uid, p.title).toBe(DATASOURCE);
    }
  });

  it("every panel has a unique id and title, a description and at least one query", () => {
    const ids = dashboard.panels.map((p) => p.id);
    const titles = dashboard.panels.map((p) => p.title);
    expect(ids.every((id) => Number.isInteger(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(titles).size).toBe(titles.length);
    for (const p of dashboard.panels) {
      expect(p.title?.trim(), `panel ${p.id}`).toBeTruthy();
      expect(p.description?.trim(), p.title).toBeTruthy();
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.expr?.trim(), `${p.title} ${t.refId}`).toBeTruthy();
      const refIds = (p.targets ?? []).map((t) => t.refId);
      expect(new Set(refIds).size, p.title).toBe(refIds.length);
    }
  });

  it("has the panels the issue asks for, each reading its metric", () => {
    const reads = (metric: string) =>
      dashboard.panels.filter((p) =>
        (p.targets ?? []).some((t) => metricNames(t.expr ?? "").includes(metric)),
      );
    for (const metric of [
      "cxlrc_resets_total",
      "cxlrc_reset_duration_seconds_bucket",
      "cxlrc_state_duration_seconds_bucket",
      "cxlrc_refusals_total",
      "cxlrc_devices",
      "cxlrc_breaker_open",
      "cxlrc_leases_held",
      "cxlrc_agent_events_dropped_total",
      "cxlrc_agent_operation_duration_seconds_bucket",
      "cxlrc_agent_last_seen_timestamp_seconds",
    ])
      expect(reads(metric).length, metric).toBeGreaterThan(0);
    // MTTR: p50 and p99 of the reset duration, per method.
    const mttr = reads("cxlrc_reset_duration_seconds_bucket")[0]!.targets!.map((t) => t.expr!);
    expect(mttr.some((e) => /histogram_quantile\(0\.5,.*by \(method, le\)/.test(e))).toBe(true);
    expect(mttr.some((e) => /histogram_quantile\(0\.99,.*by \(method, le\)/.test(e))).toBe(true);
    // The breaker as a stat that says open or closed.
    const breaker = reads("cxlrc_breaker_open")[0]!;
    expect(breaker.type).toBe("stat");
    const texts = (breaker.fieldConfig?.defaults?.mappings ?? []).flatMap((m) =>
      Object.entries(m.options ?? {}).map(([v, o]) => `${v}=${o.text}`),
    );
    expect(texts.sort()).toEqual(["0=closed", "1=open"]);
    // Quarantined devices as a stat; agents last seen as a table of ages.
    expect(
      dashboard.panels.some(
        (p) => p.type === "stat" && (p.targets ?? []).some((t) => /state="quarantined"/.test(t.expr ?? "")),
      ),
    ).toBe(true);
    const seen = reads("cxlrc_agent_last_seen_timestamp_seconds")[0]!;
    expect(seen.type).toBe("table");
    expect(seen.targets![0]!.expr).toMatch(/^time\(\) - /);
    // The two meanings of cxlrc_agent_events_dropped_total in panels of their own, kept apart by component.
    const dropped = reads("cxlrc_agent_events_dropped_total").map((p) => p.targets![0]!.expr!);
    expect(dropped.some((e) => e.includes('component="coordinator"'))).toBe(true);
    expect(dropped.some((e) => e.includes('component="agent"'))).toBe(true);
  });

  it("every query parses as PromQL (promtool check rules)", () => {
    const exprs = queries.map((q) => plainPromQL(q.expr));
    expect(exprs.length).toBeGreaterThanOrEqual(dashboard.panels.length);
    const r = checkExpressions(exprs);
    expect(r.output).toContain(`SUCCESS: ${exprs.length} rules found`);
    expect(r.status).toBe(0);
  });

  describe("against what a live coordinator and agent serve", () => {
    let families: { coordinator: Map<string, string>; agent: Map<string, string> };
    beforeAll(async () => {
      families = await liveMetricFamilies();
    }, 60_000);

    const unknown = (exprs: string[]) => {
      const served = new Map([...families.agent, ...families.coordinator]);
      return exprs.flatMap((expr) =>
        metricNames(expr)
          .filter((n) => !PROMETHEUS_BUILTINS.has(n) && familyOf(n, served) === undefined)
          .map((n) => `${n} in ${expr}`),
      );
    };

    it("the scrapes hold the families the dashboard needs (the comparison is not empty)", () => {
      expect(families.coordinator.get("cxlrc_breaker_open")).toBe("gauge");
      expect(families.coordinator.get("cxlrc_reset_duration_seconds")).toBe("histogram");
      expect(families.agent.get("cxlrc_agent_operation_duration_seconds")).toBe("histogram");
      expect(families.agent.has("cxlrc_breaker_open")).toBe(false);
    });

    it("every query reads at least one metric, and only metrics cxlrc serves", () => {
      for (const q of queries)
        expect(metricNames(plainPromQL(q.expr)).length, `${q.panel} ${q.refId}`).toBeGreaterThan(0);
      expect(unknown(queries.map((q) => plainPromQL(q.expr)))).toEqual([]);
    });

    it("the template variables' label_values() read a metric cxlrc serves", () => {
      expect(variableQueries.length).toBeGreaterThan(0);
      const metrics = variableQueries.map(
        (v) => /^label_values\((.*),\s*\w+\)$/.exec(v.definition)?.[1] ?? "",
      );
      expect(metrics.every((m) => m.length > 0)).toBe(true);
      expect(unknown(metrics.map(plainPromQL))).toEqual([]);
    });

    it("a name cxlrc does not serve is caught", () => {
      expect(unknown(["rate(cxlrc_resets_totl[5m])", "cxlrc_breaker_open_bucket"])).toHaveLength(2);
    });
  });
});
