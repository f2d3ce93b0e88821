// `npm run lab -- SCENARIO [--json FILE] [--console] [KERNEL-ARGS...]`: one kernel lab
// boot from the command line (what the tests run), for a person investigating the real kernel: prints the
// phases and each check's outcome, optionally the console as it goes and every check's JSON to a file.
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { exitOnSignals } from "../../shared/children.ts";
import { describeRun, startLabScenario } from "./lab.ts";
import { LAB_SCENARIOS, type LabScenario } from "./protocol.ts";

const USAGE = `usage: npm run lab -- ${Object.keys(LAB_SCENARIOS).join("|")} [--json FILE] [--console] [KERNEL-ARGS...]`;
/** The command line, or one line naming what is wrong with it (exit 2). */
function parseLabArgs() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        json: { type: "string" },
        console: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    console.error(`lab: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}
const { values, positionals } = parseLabArgs();
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const [scenario, ...append] = positionals;
if (!scenario || !(scenario in LAB_SCENARIOS)) {
  console.error(`lab: ${scenario ? `no scenario "${scenario}"` : "which scenario?"}\n${USAGE}`);
  process.exit(2);
}
const handle = startLabScenario(scenario as LabScenario, {
  append,
  ...(values.console ? { onConsole: (l: string) => console.log(`[console] ${l}`) } : {}),
});
// A signal kills the VM, and the run is reported as far as it got; should that hang, or a second signal come,
// everything the lab started is stopped and the process exits (shared/children.ts).
for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(s, () => handle.kill());
exitOnSignals({ patienceMs: 5000 });
const run = await handle.done;
console.log(describeRun(run));
for (const c of run.checks.values()) {
  console.log(
    `${c.ok ? "ok  " : "FAIL"} ${c.name}${c.error ? `: ${c.error.kind ?? c.error.name}: ${c.error.message}` : ""}`,
  );
}
if (!run.completed) console.log(`guest did not finish; console tail:\n${run.boot.console.slice(-3000)}`);
if (values.json) writeFileSync(values.json, JSON.stringify([...run.checks.values()], null, 1));
process.exitCode = run.completed && [...run.checks.values()].every((c) => c.ok) ? 0 : 1;
