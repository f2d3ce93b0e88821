import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { parseScenario } from "/work/main/services/chaos/scenario.ts";
import { runScenarioTimed } from "/work/main/services/chaos/runner.ts";
import { formatReport } from "/work/main/services/chaos/report.ts";
const seed = Number(process.argv[2]);
const raw = JSON.parse(readFileSync("/work/main/services/chaos/scenarios/fleet-random.json", "utf8"));
raw.coordinators.logLevel = "debug";
const loaded = parseScenario(raw);
loaded.scenario.seed = seed;
const logf = `/tmp/cdbg-${seed}.log`;
writeFileSync(logf, "");
const report = await runScenarioTimed(loaded, {
  log: (l) => process.stderr.write(`${l}\n`),
  coordinatorLog: (i, t) => appendFileSync(logf, t.split("\n").filter(Boolean).map((x) => `c${i} ${x}`).join("\n") + "\n"),
  eventsFile: `/tmp/cdbg-${seed}.events`,
});
console.log(formatReport(report, { requests: false }));
process.exit(report.ok ? 0 : 1);
