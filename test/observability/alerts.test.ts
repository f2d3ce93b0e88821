// deploy/prometheus/cxlrc-alerts.yaml, checked by the real tools: `promtool check rules` accepts it, `promtool
// test rules` passes its unit tests (test/observability/cxlrc-alerts.test.yaml), and every alert there has both
// a case that fires it and one that keeps it quiet, so a new alert without a test fails here. Every alert says
// how bad it is and what to do (a runbook naming the cxlrc command), and reads only metrics a live coordinator
// or agent serves (or Prometheus's own `up`).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { familyOf, liveMetricFamilies, metricNames, PROMETHEUS_BUILTINS, promtool, ROOT } from "./support.ts";

const RULES = "deploy/prometheus/cxlrc-alerts.yaml";
const UNIT_TESTS = "test/observability/cxlrc-alerts.test.yaml";

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface UnitTests {
  rule_files: string[];
  tests: Array<{
    name: string;
    alert_rule_test?: Array<{ alertname: string; eval_time: string; exp_alerts?: unknown[] | null }>;
  }>;
}

const rules = (
  parse(readFileSync(join(ROOT, RULES), "utf8")) as { groups: Array<{ name: string; rules: Rule[] }> }
).groups.flatMap((g) => g.rules);
const alerts = rules.filter((r): r is Rule & { alert: string } => typeof r.alert === "string");
const unitTests = parse(readFileSync(join(ROOT, UNIT_TESTS), "utf8")) as UnitTests;

describe(RULES, () => {
  it("promtool check rules accepts it", () => {
    const r = promtool(["check", "rules", RULES]);
    expect(r.output).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(r.status).toBe(0);
  });

  it("promtool test rules passes the unit tests, which load this rules file", () => {
    expect(unitTests.rule_files.map((f) => join(ROOT, "test/observability", f))).toEqual([join(ROOT, RULES)]);
    const r = promtool(["test", "rules", UNIT_TESTS]);
    expect(r.output).toContain("SUCCESS");
    expect(r.status).toBe(0);
  });

  it("covers what the issue asks for", () => {
    const exprs = alerts.map((a) => a.expr).join("\n");
    for (const needle of [
      'cxlrc_devices{state="quarantined"} > 0',
      "cxlrc_breaker_open",
      "increase(cxlrc_scope_violations_total[15m]) > 0",
      'cxlrc_resets_total{outcome=~"failed|quarantined"}',
      "cxlrc_reset_duration_seconds_bucket",
      'up{job=~".*coordinator.*"} == 0',
      'absent(cxlrc_build_info{component="coordinator"})',
      "sum(cxlrc_leases_held) == 0",
      "time() - max by (host) (cxlrc_agent_last_seen_timestamp_seconds)",
      'increase(cxlrc_driver_handbacks_total{result="failed"}[15m])',
      "cxlrc_agent_events_dropped_total",
    ])
      expect(exprs, needle).toContain(needle);
  });

  it("every alert has a unique name, a severity, a summary, a description and a runbook naming a cxlrc command", () => {
    const names = alerts.map((a) => a.alert);
    expect(names.length).toBeGreaterThanOrEqual(12);
    expect(new Set(names).size).toBe(names.length);
    for (const a of alerts) {
      expect(["critical", "warning"], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary?.trim(), a.alert).toBeTruthy();
      expect(a.annotations?.description?.trim(), a.alert).toBeTruthy();
      expect(a.annotations?.runbook, a.alert).toMatch(/`cxlrc [a-z]+[^`]*`/);
    }
  });

  it("every alert has a unit test that fires it and one that keeps it quiet", () => {
    const cases = unitTests.tests.flatMap((t) => t.alert_rule_test ?? []);
    const firing = new Set(cases.filter((c) => (c.exp_alerts ?? []).length > 0).map((c) => c.alertname));
    const quiet = new Set(cases.filter((c) => (c.exp_alerts ?? []).length === 0).map((c) => c.alertname));
    const names = alerts.map((a) => a.alert);
    expect(names.filter((n) => !firing.has(n))).toEqual([]);
    expect(names.filter((n) => !quiet.has(n))).toEqual([]);
    // And no test for an alert that does not exist (a renamed alert would leave a test that checks nothing).
    expect([...firing, ...quiet].filter((n) => !names.includes(n))).toEqual([]);
  });

  it("every firing case states the alert's labels and its three annotations", () => {
    for (const t of unitTests.tests) {
      for (const c of t.alert_rule_test ?? []) {
        for (const e of (c.exp_alerts ?? []) as Array<{
          exp_labels?: Record<string, string>;
          exp_annotations?: Record<string, string>;
        }>) {
          const where = `${t.name}: ${c.alertname} at ${c.eval_time}`;
          expect(e.exp_labels?.severity, where).toBeTruthy();
          expect(Object.keys(e.exp_annotations ?? {}).sort(), where).toEqual([
            "description",
            "runbook",
            "summary",
          ]);
        }
      }
    }
  });

  describe("against what a live coordinator and agent serve", () => {
    let served: Map<string, string>;
    beforeAll(async () => {
      const f = await liveMetricFamilies();
      served = new Map([...f.agent, ...f.coordinator]);
    }, 60_000);

    it("every alert reads only metrics cxlrc serves (or Prometheus's up)", () => {
      expect(served.get("cxlrc_agent_last_seen_timestamp_seconds")).toBe("gauge");
      const unknown = alerts.flatMap((a) => {
        const names = metricNames(a.expr);
        expect(names.length, a.alert).toBeGreaterThan(0);
        return names
          .filter((n) => !PROMETHEUS_BUILTINS.has(n) && familyOf(n, served) === undefined)
          .map((n) => `${a.alert}: ${n}`);
      });
      expect(unknown).toEqual([]);
    });
  });
});
