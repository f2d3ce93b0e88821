// `cxlrc chaos SCENARIO.json --sweep`: one scenario run once per reset step. Every fault of the scenario that
// fires on a coordinator's step (on.step) fires on that step in turn: a fault written once (a coordinator
// killed, paused past its lease, an agent restarted, a NATS node lost) is tried at every point of a reset, and
// each run is checked as a run of its own (report.ts). What a sweep reports per step: the run's verdict, its
// outcomes, and whether its faults fired at all (a step the request never reaches, committingDecoders in an
// io-scope reset, leaves them unfired: said, not counted as a pass of that step).
import { RESET_PHASES } from "../../machines/policy/types.ts";
import { CxlrcError } from "../../shared/errors.ts";
import type { ChaosReport } from "./report.ts";
import type { LoadedScenario, StepPhase } from "./scenario.ts";

/** The steps a sweep moves its faults through: every step of a reset (binding and probing come before one). */
export const SWEEP_STEPS: readonly StepPhase[] = RESET_PHASES;

export interface SweepRun {
  step: StepPhase;
  loaded: LoadedScenario;
}

/**
 * The scenario once per step of `steps`: its step-triggered faults moved to that step (named after it), every
 * other fault and request as written. Throws bad-input when no fault fires on a step: there is nothing to move.
 */
export function sweepRuns(loaded: LoadedScenario, steps: readonly StepPhase[] = SWEEP_STEPS): SweepRun[] {
  const { scenario } = loaded;
  if (!scenario.faults.some((f) => f.on?.step !== undefined)) {
    throw new CxlrcError(
      "bad-input",
      `scenario ${scenario.name}: --sweep moves the faults that fire on a step (on.step), and it has none`,
    );
  }
  return steps.map((step) => ({
    step,
    loaded: {
      fleet: loaded.fleet,
      scenario: {
        ...scenario,
        name: `${scenario.name}@${step}`,
        faults: scenario.faults.map((f) =>
          f.on?.step === undefined
            ? f
            : { ...f, name: `${f.name ?? f.action} on ${step}`, on: { ...f.on, step } },
        ),
      },
    },
  }));
}

/**
 * One line per run of a sweep: the step, the verdict, the outcomes, faults that never fired; then a line for each
 * request that was not verified, with why (a refusal's reason and message, what failed), as the report has it.
 */
export function sweepLine(step: StepPhase, r: ChaosReport): string {
  const outcomes = Object.entries(r.requests.outcomes)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  const verdict = !r.ok ? "VIOLATED" : r.faults.unfired.length > 0 ? "not reached" : "passed";
  const unfired = r.faults.unfired.length > 0 ? `; unfired: ${r.faults.unfired.join(", ")}` : "";
  const notVerified = r.requests.list
    .filter((q) => q.outcome !== "verified")
    .map(
      (q) =>
        `\n      ${q.requestId} ${q.outcome}${q.by ? ` by ${q.by}` : ""}${q.detail ? ` (${q.detail})` : ""}`,
    )
    .join("");
  return `  ${step.padEnd(20)} ${verdict.padEnd(11)} violations ${r.invariants.violations}, faults ${r.faults.injected}; ${outcomes}${unfired} (${(r.timings.totalMs / 1000).toFixed(1)} s)${notVerified}`;
}
