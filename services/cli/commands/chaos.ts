// `cxlrc chaos SCENARIO.json`: run a chaos scenario (services/chaos) on this machine and check that nothing
// was lost. Starts its own NATS cluster (nats-server on loopback), simulated hosts with their agents and the
// coordinators as processes; kills, pauses and breaks them as the scenario says; prints the report.
import { parseFlags, takePositionals } from "../args.ts";
import { COMMANDS } from "../command-table.ts";
import { EXIT, UsageError } from "../exit.ts";
import { checkWritable, readJsonFile } from "../files.ts";

export const usage = `Usage: cxlrc chaos SCENARIO.json [--json] [--seed N] [--events FILE] [--requests] [--quiet] [--sweep]

Runs a chaos scenario against a whole cxlrc started on this machine: its own NATS cluster (1 or 3
nats-server processes on loopback, JetStream in temp dirs), the scenario's simulated fleet with one agent
per host, and the coordinators as separate processes. Requests are sent and faults injected at the moments
the scenario gives (or on triggers: a coordinator reaching a step, an event, an agent operation); then
everything still down is brought back, the run waits until the fleet is at rest and checks:
  - no image lost (a reset only with its image in KV; kept until verified or quarantined)
  - no device left with wiped decoders without a quarantined or failed event
  - no double reset for one request; no two coordinators driving one device at once
  - every request ends in exactly one terminal event (verified, refused with a reason, failed, quarantined)
  - the lifecycle's own invariants (write-ahead, verify before ready, no silent escalation…)

The scenario file (JSON, every key checked; a bad key is named):
  { "name": "...", "seed": 1, "deadlineMs": 120000,
    "cluster": { "size": 3 }, "coordinators": { "count": 2, "leaseTtlMs": 10000, "policy": { } },
    "fleet": "default" | { "generate": { "hosts": 5, "devicesPerHost": 10 } } | { "hosts": [ ... ] },
    "timings": { "notReadyMs": 10 }, "agentTimeouts": { "flrWaitMs": 10 },
    "requests": [ { "at": 0, "requestId": "r1", "host": "alpha", "bdf": "0000:01:00.0", "scope": "full" } ],
    "randomRequests": { "count": 200, "spreadMs": 20000 },
    "faults": [
      { "on": { "step": "resetting", "requestId": "r1" }, "action": "kill", "target": { "coordinator": "driver" },
        "durationMs": 0 },
      { "on": { "event": "restore.started", "source": "agent", "host": "alpha" }, "delayMs": 3, "action": "kill",
        "target": { "agent": "driver" }, "durationMs": 1500 },
      { "on": { "step": "persistingImage", "requestId": "r1" }, "action": "kill",
        "target": { "nats": "stream-leader", "stream": "KV_cxlrc-images" }, "durationMs": 8000 },
      { "at": 2000, "action": "device-fault", "target": { "device": { "host": "alpha", "bdf": "0000:01:00.0" } },
        "fault": { "name": "commit-error", "decoder": 0 } },
      { "at": 3000, "action": "pause", "target": { "coordinator": 0 }, "durationMs": 15000 }
    ],
    "randomFaults": { "count": 20, "spreadMs": 20000, "kinds": ["device", "agent-kill", "coordinator-kill"] } }
  actions: kill, restart, pause, resume (coordinator, agent, nats), device-fault, clear-device-fault (device),
  stall (a coordinator's step, ms), slow (an agent's register accesses, ms), freeze (an agent stopped whole, as
  by SIGSTOP: its bus traffic held too; an agent's pause hangs only its register accesses), reboot (a host down
  whole: its agent killed, its devices powered on as at boot; the agent back after durationMs), partition and
  heal (a coordinator or agent cut off from the bus while it runs on; healed after durationMs).
  Random kinds: device, agent-kill, agent-slow, agent-freeze, agent-partition, host-reboot, coordinator-kill,
  coordinator-pause, coordinator-partition, nats-kill, nats-pause. Examples: services/chaos/scenarios.

Options:
  --json          print only the report, as JSON
  --seed N        override the scenario's seed
  --events FILE   write every event of the run there (JSON lines, stream order)
  --requests      list every request's outcome in the report (default: only those not verified)
  --quiet         no progress lines on stderr
  --sweep         run the scenario once per reset step (gating … releasing), every fault that fires on a
                  step (on.step) moved to that step: one line per step (passed, VIOLATED, or not reached
                  when its faults never fired); exit 1 if any run violated. With --json, every run's report.
  -h, --help      this text

Exit codes: 0 no violation, 1 a violation (or the run did not finish), 2 bad scenario or flags,
3 nats-server missing or the cluster could not start.`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("chaos", argv, COMMANDS.chaos.options);
  const [file] = takePositionals("chaos", positionals, ["SCENARIO.json"]);
  let seed: number | undefined;
  if (values.seed !== undefined) {
    seed = Number(values.seed);
    if (!Number.isInteger(seed))
      throw new UsageError(`bad --seed ${JSON.stringify(values.seed)}: an integer`);
  }
  const raw = readJsonFile(file!);
  if (values.events !== undefined) checkWritable(values.events);
  const { parseScenario } = await import("../../chaos/scenario.ts");
  const loaded = parseScenario(raw);
  if (seed !== undefined) loaded.scenario.seed = seed;

  const { runScenarioTimed } = await import("../../chaos/runner.ts");
  const { formatReport } = await import("../../chaos/report.ts");
  const { natsServerBinary } = await import("../../../shared/natsd/server.ts");
  try {
    natsServerBinary();
  } catch (e) {
    process.stderr.write(`cxlrc chaos: ${(e as Error).message}\n`);
    return EXIT.unavailable;
  }
  const progress =
    values.quiet || values.json ? undefined : (line: string) => process.stderr.write(`${line}\n`);
  if (values.sweep) {
    if (values.events !== undefined)
      throw new UsageError("--events writes one run's events: not with --sweep");
    const { sweepRuns, sweepLine } = await import("../../chaos/sweep.ts");
    const runs = sweepRuns(loaded);
    const reports: Array<Awaited<ReturnType<typeof runScenarioTimed>>> = [];
    if (!values.json) process.stdout.write(`sweep of ${loaded.scenario.name} over ${runs.length} steps:\n`);
    for (const { step, loaded: one } of runs) {
      const r = await runOne(() => runScenarioTimed(one, progress ? { log: progress } : {}));
      if (typeof r === "number") return r;
      reports.push(r);
      if (!values.json) process.stdout.write(`${sweepLine(step, r)}\n`);
    }
    const violated = reports.filter((r) => !r.ok).length;
    if (values.json) process.stdout.write(`${JSON.stringify(reports, null, 2)}\n`);
    else
      process.stdout.write(`sweep: ${runs.length - violated} of ${runs.length} steps without a violation\n`);
    return violated === 0 ? EXIT.ok : EXIT.failure;
  }
  const report = await runOne(() =>
    runScenarioTimed(loaded, {
      ...(progress ? { log: progress } : {}),
      ...(values.events ? { eventsFile: values.events } : {}),
    }),
  );
  if (typeof report === "number") return report;
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else process.stdout.write(`${formatReport(report, { requests: values.requests === true })}\n`);
  return report.ok ? EXIT.ok : EXIT.failure;
}

/** A run, or the exit code when its NATS cluster could not start. */
async function runOne<T>(run: () => Promise<T>): Promise<T | number> {
  try {
    return await run();
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    if (/nats-server|JetStream not ready|did not accept connections/i.test(msg)) {
      process.stderr.write(`cxlrc chaos: the NATS cluster could not start: ${msg}\n`);
      return EXIT.unavailable;
    }
    throw e;
  }
}
