// Properties every trace of emitted lifecycle events must have, whatever failed along the way. Pure checks
// over the event list: the model-based tests run them on every generated path, chaos tests on real runs.
import type { LifecycleEmitted } from "./lifecycle-types.ts";
import { OUTCOME_EVENTS } from "./lifecycle-types.ts";

export type InvariantName =
  | "no-reset-before-persist"
  | "no-ready-without-verify"
  | "no-silent-escalation"
  | "one-outcome"
  | "success-read-back"
  | "dry-run-touches-nothing"
  | "driver-back-before-outcome";

export interface InvariantViolation {
  invariant: InvariantName;
  requestId: string | null;
  /** Index of the offending event in the trace. */
  index: number;
  message: string;
}

export interface InvariantOptions {
  /** The trace ends with no request in flight: every received request must have its outcome. */
  complete?: boolean;
}

/** States that change the device: the image must be persisted before any of them. */
const DESTRUCTIVE_STATES = new Set([
  "quiescing",
  "resetting",
  "awaitingReady",
  "restoring",
  "committingDecoders",
]);
/** States a dry run never enters. */
const TOUCHING_STATES = new Set([
  "gating",
  "savingImage",
  "persistingImage",
  "regating",
  ...DESTRUCTIVE_STATES,
]);

type Check = (trace: readonly LifecycleEmitted[], opts: InvariantOptions) => InvariantViolation[];

/** Write-ahead: no destructive step (and no reset) for a request before its image.persisted. */
export const noResetBeforePersist: Check = (trace) => {
  const persisted = new Set<string>();
  const out: InvariantViolation[] = [];
  trace.forEach((e, index) => {
    if (e.requestId === null) return;
    if (e.type === "image.persisted") persisted.add(e.requestId);
    const destructive =
      e.type === "reset.started" || (e.type === "state.entered" && DESTRUCTIVE_STATES.has(e.state));
    if (destructive && !persisted.has(e.requestId)) {
      out.push({
        invariant: "no-reset-before-persist",
        requestId: e.requestId,
        index,
        message: `${e.type === "reset.started" ? "reset started" : `entered ${(e as { state: string }).state}`} before the image was persisted`,
      });
    }
  });
  return out;
};

/** After a reset starts, the device is not ready again until a verify passed (or it was quarantined). */
export const noReadyWithoutVerify: Check = (trace) => {
  const out: InvariantViolation[] = [];
  let open: { requestId: string; index: number } | null = null;
  trace.forEach((e, index) => {
    if (e.type === "reset.started" && e.requestId !== null) open = { requestId: e.requestId, index };
    else if (
      open &&
      e.requestId === open.requestId &&
      (e.type === "verify.passed" || e.type === "quarantined")
    )
      open = null;
    else if (open && e.type === "state.entered" && e.state === "ready") {
      out.push({
        invariant: "no-ready-without-verify",
        requestId: open.requestId,
        index,
        message: `ready after the reset at event ${open.index} without a passed verify`,
      });
      open = null;
    }
  });
  return out;
};

/** A plan (and a reset) wider than asked only when the request opted in, and the plan says so. */
export const noSilentEscalation: Check = (trace) => {
  const out: InvariantViolation[] = [];
  const planned = new Map<string, { scope: string; optIn: boolean; escalated: boolean; asked: string }>();
  trace.forEach((e, index) => {
    if (e.type === "plan") {
      const wider = e.plan.scope !== e.request.scope;
      const optIn = e.request.allowEscalation === true;
      planned.set(e.plan.requestId, {
        scope: e.plan.scope,
        optIn,
        escalated: e.plan.escalated,
        asked: e.request.scope,
      });
      if ((wider || e.plan.escalated) && !(optIn && e.plan.escalated && wider)) {
        out.push({
          invariant: "no-silent-escalation",
          requestId: e.requestId,
          index,
          message: `plan scope ${e.plan.scope} for a ${e.request.scope} request (escalated: ${e.plan.escalated}, allowEscalation: ${optIn})`,
        });
      }
    }
    if (e.type === "reset.started" && e.requestId !== null) {
      const p = planned.get(e.requestId);
      if (!p || p.scope !== e.scope) {
        out.push({
          invariant: "no-silent-escalation",
          requestId: e.requestId,
          index,
          message: `reset of scope ${e.scope} does not match the plan (${p ? p.scope : "no plan"})`,
        });
      }
    }
  });
  return out;
};

/** Every request gets exactly one terminal outcome, and nothing happens to it afterwards. */
export const oneOutcome: Check = (trace, opts) => {
  const out: InvariantViolation[] = [];
  const received = new Map<string, number>();
  const ended = new Map<string, number>();
  trace.forEach((e, index) => {
    if (e.requestId === null) return;
    if (e.type === "request.received") {
      if (received.has(e.requestId)) {
        out.push({
          invariant: "one-outcome",
          requestId: e.requestId,
          index,
          message: "request received twice",
        });
      }
      received.set(e.requestId, index);
      return;
    }
    if (OUTCOME_EVENTS.has(e.type)) {
      if (!received.has(e.requestId)) {
        out.push({
          invariant: "one-outcome",
          requestId: e.requestId,
          index,
          message: `${e.type} for a request never received`,
        });
      }
      if (ended.has(e.requestId)) {
        out.push({
          invariant: "one-outcome",
          requestId: e.requestId,
          index,
          message: `second outcome ${e.type} (first at event ${ended.get(e.requestId)})`,
        });
      }
      ended.set(e.requestId, index);
      return;
    }
    const acting =
      e.type === "reset.started" ||
      e.type === "image.persisted" ||
      e.type === "verify.passed" ||
      e.type === "verify.failed" ||
      e.type === "decoder.committed";
    if (acting && ended.has(e.requestId)) {
      out.push({
        invariant: "one-outcome",
        requestId: e.requestId,
        index,
        message: `${e.type} after the outcome`,
      });
    }
  });
  if (opts.complete) {
    for (const [requestId, index] of received) {
      if (!ended.has(requestId)) {
        out.push({ invariant: "one-outcome", requestId, index, message: "request never got an outcome" });
      }
    }
  }
  return out;
};

/**
 * Never report success that was not read back: a `verified` outcome (and a `failed` one, which claims the
 * device is back to its image) needs a verify.passed for the request after its last reset and restore
 * activity, with no verify.failed after it.
 */
export const successReadBack: Check = (trace) => {
  const out: InvariantViolation[] = [];
  const lastVerify = new Map<string, "passed" | "failed" | null>();
  // noReadyWithoutVerify trusts verify.passed; this check makes sure it was earned.
  trace.forEach((e, index) => {
    if (e.requestId === null) return;
    if (e.type === "reset.started") lastVerify.set(e.requestId, null);
    else if (e.type === "state.entered" && e.state === "restoring") lastVerify.set(e.requestId, null);
    else if (e.type === "verify.passed") {
      const real = e.result.passed && e.result.mismatches.length === 0;
      if (!real) {
        out.push({
          invariant: "success-read-back",
          requestId: e.requestId,
          index,
          message: `verify.passed on a read-back that did not pass (${e.result.mismatches.length} mismatch(es))`,
        });
      }
      lastVerify.set(e.requestId, real ? "passed" : "failed");
    } else if (e.type === "verify.failed") lastVerify.set(e.requestId, "failed");
    else if (e.type === "verified" || e.type === "failed") {
      if (lastVerify.get(e.requestId) !== "passed") {
        out.push({
          invariant: "success-read-back",
          requestId: e.requestId,
          index,
          message: `outcome ${e.type} without a passed verify after the last reset/restore`,
        });
      }
    }
  });
  return out;
};

/** A dry run plans and reports; it never gates, saves, quiesces, resets or restores. */
export const dryRunTouchesNothing: Check = (trace) => {
  const out: InvariantViolation[] = [];
  const dry = new Set<string>();
  trace.forEach((e, index) => {
    if (e.type === "request.received" && e.request.dryRun === true) dry.add(e.request.requestId);
    if (e.requestId === null || !dry.has(e.requestId)) return;
    const touching =
      e.type === "reset.started" ||
      e.type === "image.persisted" ||
      (e.type === "state.entered" && TOUCHING_STATES.has(e.state));
    if (touching) {
      out.push({
        invariant: "dry-run-touches-nothing",
        requestId: e.requestId,
        index,
        message: `dry run: ${e.type}`,
      });
    }
  });
  return out;
};

/**
 * A driver taken for the reset is back (or its failure said) before the request's outcome: whoever acts on the
 * outcome finds the host as the request left it (issue #17), a refusal after the save included.
 */
export const driverBackBeforeOutcome: Check = (trace) => {
  const out: InvariantViolation[] = [];
  /** Per request: handing back now (entered, no result yet), or its outcome already said. */
  const handing = new Set<string>();
  const ended = new Set<string>();
  trace.forEach((e, index) => {
    if (e.requestId === null) return;
    if (e.type === "state.entered" && e.state === "handingBack") {
      if (ended.has(e.requestId)) {
        out.push({
          invariant: "driver-back-before-outcome",
          requestId: e.requestId,
          index,
          message: "the driver is handed back after the outcome was said",
        });
      }
      handing.add(e.requestId);
    } else if (e.type === "driver.rebound" || e.type === "driver.rebind-failed") {
      handing.delete(e.requestId);
    } else if (OUTCOME_EVENTS.has(e.type)) {
      if (handing.has(e.requestId)) {
        out.push({
          invariant: "driver-back-before-outcome",
          requestId: e.requestId,
          index,
          message: `${e.type} while the driver is being handed back`,
        });
      }
      ended.add(e.requestId);
    }
  });
  return out;
};

export const INVARIANTS: Readonly<Record<InvariantName, Check>> = {
  "no-reset-before-persist": noResetBeforePersist,
  "no-ready-without-verify": noReadyWithoutVerify,
  "no-silent-escalation": noSilentEscalation,
  "one-outcome": oneOutcome,
  "success-read-back": successReadBack,
  "dry-run-touches-nothing": dryRunTouchesNothing,
  "driver-back-before-outcome": driverBackBeforeOutcome,
};

export function checkInvariants(
  trace: readonly LifecycleEmitted[],
  opts: InvariantOptions = {},
): InvariantViolation[] {
  return Object.values(INVARIANTS).flatMap((check) => check(trace, opts));
}
