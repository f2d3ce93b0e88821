// The lifecycle machine's contract with the coordinator: context, events it accepts, events it emits
// (the coordinator publishes them), and the input/output of every actor the coordinator provides.
import type { ResetMethod, Scope } from "../shared/bus/agent-messages.ts";
import type { DeviceFacts, ResetRequest } from "./facts.ts";
import type { GuardSnapshot, Outcome, Plan, Refusal } from "./policy/types.ts";

/** Where the persisted image lives (JetStream KV key and the revision written). */
export interface ImageRef {
  key: string;
  revision: number;
}

export interface VerifyMismatch {
  bdf?: string;
  /** Register field name, e.g. "dvsec.control.mem_enable" or "decoder0.base". */
  field: string;
  /** "pci": PCI config state (what an io restore writes); "cxl" (default): CXL state an FLR must not touch. */
  area?: "pci" | "cxl";
  expected?: unknown;
  actual?: unknown;
}

export interface VerifyResult {
  passed: boolean;
  mismatches: VerifyMismatch[];
}

export interface CommittedDecoder {
  bdf: string;
  index: number;
  /** Lock On Commit + Committed after the reset: kept by the device, left alone and verified. */
  retained: boolean;
}

/** Every actor gets the operation id, the device and its time budget (ms from when the step starts running). */
export interface OpInput {
  opId: string;
  host: string;
  bdf: string;
  timeoutMs: number;
}
export interface RequestOpInput extends OpInput {
  requestId: string;
}

export type BindInput = OpInput;
export type ProbeInput = OpInput;
export interface AcquireInput extends RequestOpInput {
  /** The device's switch (its slot is taken with the host's), from the facts the plan was made from. */
  switchId: string | null;
}
/** A refusal's `gates` are the plan's: the machine fills them in (the plan is not in the stored input). */
export type AcquireOutput = { granted: true } | { granted: false; refusal: Refusal };
export interface SaveInput extends RequestOpInput {
  targets: string[];
  /** The driver the save takes from each function (plan.handover), or null. */
  handover: Record<string, string> | null;
}
/** Give the driver back (bind it, put its driver_override back) and read the device against its image. */
export interface HandBackInput extends RequestOpInput {
  /** The driver of each function to bind again (plan.handover). */
  drivers: Record<string, string>;
  image: ImageRef | null;
  scope: Scope;
  /** The reset was begun: the device was changed for this request (not only saved before a refusal). */
  afterReset: boolean;
}
export interface HandBackOutput {
  /** Bound again, by function. */
  drivers: Record<string, string>;
  /** The read-back with the driver in place; null when there was no image to read against. */
  verify: VerifyResult | null;
}
export interface SaveOutput {
  image: unknown;
}
export interface PersistInput extends RequestOpInput {
  image: unknown;
  /** The plan's targets: the regate that follows reads them (its read may start with this step). */
  targets: string[];
}
export interface RecheckInput extends RequestOpInput {
  plan: Plan;
}
export interface QuiesceInput extends RequestOpInput {
  targets: string[];
  scope: Scope;
  cacheFlush: boolean;
  cacheFlushTimeoutMs: number;
  /** The reset's own operation quiesces (a plan of the device alone): this step only stores its snapshot. */
  withReset: boolean;
}
export interface ResetInput extends RequestOpInput {
  method: ResetMethod;
  targets: string[];
  memClear: boolean;
  bridge: string | null;
  unmaskSbr: boolean;
  /** The reset's own wait budget (plan.deadlines.resetWaitMs). */
  waitMs: number;
  scope: Scope;
  /** The persisted image: a step re-run after a takeover reads the device against it first. */
  image: ImageRef;
  /** Quiesce first, in the reset's operation (a plan of the device alone); its cache flush budget. */
  quiesce: { cacheFlushTimeoutMs: number } | null;
  /**
   * Restore from the image (and verify) in the reset's operation too (a plan of the device alone): the
   * restoring, committing and verifying steps of this round then report what it did instead of asking again.
   */
  restore: {
    scope: Scope;
    round: number;
    /** What restoring, committing and verifying would each have had (the plan's budgets), together. */
    timeoutMs: number;
  } | null;
}
export interface AwaitReadyInput extends RequestOpInput {
  targets: string[];
  /** How long the device may take to answer config reads again (policy.deviceReadyTimeoutMs). */
  readyTimeoutMs: number;
}
export interface RestoreInput extends RequestOpInput {
  targets: string[];
  /** io: PCI config state only. full: PCI config, DVSEC Control and Range Base, HDM Global Control. */
  scope: Scope;
  image: ImageRef;
  /** 0 for the first restore, then one more per repair or retry. */
  round: number;
}
export interface CommitInput extends RequestOpInput {
  targets: string[];
  image: ImageRef;
  commitTimeoutMs: number;
  /** Decoders expected to be kept by a CXL Reset (Lock On Commit + Committed). */
  retainedDecoders: number[];
  round: number;
}
export interface CommitOutput {
  decoders: CommittedDecoder[];
}
export interface VerifyInput extends RequestOpInput {
  targets: string[];
  scope: Scope;
  image: ImageRef;
  round: number;
}
export interface ReleaseInput extends RequestOpInput {
  outcome: Outcome;
}

/** What a step that answers nothing answers (its effect is an async function without a value). */
// biome-ignore lint/suspicious/noConfusingVoidType: an effect's Promise<void> is its answer type, not a value.
type Nothing = void;

/** Each step of the lifecycle: what its effect takes and what it answers (the coordinator's effects/agent-actors.ts). */
export interface StepTypes {
  bindDevice: { input: BindInput; output: Nothing };
  probeDevice: { input: ProbeInput; output: DeviceFacts };
  acquireDevice: { input: AcquireInput; output: AcquireOutput };
  saveImage: { input: SaveInput; output: SaveOutput };
  persistImage: { input: PersistInput; output: ImageRef };
  recheckGates: { input: RecheckInput; output: DeviceFacts };
  quiesceDevice: { input: QuiesceInput; output: Nothing };
  resetDevice: { input: ResetInput; output: Nothing };
  awaitReady: { input: AwaitReadyInput; output: Nothing };
  restoreDevice: { input: RestoreInput; output: Nothing };
  commitDecoders: { input: CommitInput; output: CommitOutput };
  verifyDevice: { input: VerifyInput; output: VerifyResult };
  releaseDevice: { input: ReleaseInput; output: Nothing };
  handBackDriver: { input: HandBackInput; output: HandBackOutput };
}
export type StepName = keyof StepTypes;
/** A step to run: its effect's name and input (machines/steps.ts runs it). */
export type StepCall = { [K in StepName]: { src: K; input: StepTypes[K]["input"] } }[StepName];
/** The effect's answer, sent to the device's actor by the step runner (never by anything else). */
export type StepDone = { [K in StepName]: { type: `done.${K}`; output: StepTypes[K]["output"] } }[StepName];
/** The effect's failure, likewise. */
export type StepFailed = { [K in StepName]: { type: `failed.${K}`; error: unknown } }[StepName];

export type LifecycleEvent =
  | StepDone
  | StepFailed
  /** A device restored mid-step (a takeover, a restart): its state's step runs again (machines/steps.ts). */
  | { type: "step.resume" }
  | { type: "RESET_REQUESTED"; request: ResetRequest; guards: GuardSnapshot }
  /** Operator: take the device out of quarantine. */
  | { type: "RELEASE"; operator: string; reason: string }
  /** Operator: a release with restore did not verify; the device stays quarantined, for this reason now. */
  | { type: "RELEASE_FAILED"; reason: string }
  | { type: "PROBE" }
  | { type: "FACTS_UPDATED"; facts: DeviceFacts };

export interface LifecycleInput {
  host: string;
  bdf: string;
  /** Scope violations already counted against the device. */
  scopeViolations?: number;
}

export interface PhaseTiming {
  phase: string;
  round: number;
  startMs: number;
  endMs: number | null;
}

export interface LastError {
  phase: string;
  kind: string;
  message: string;
}

/**
 * How far the request has come, and its restore chain: fresh for every request. One object in the context, not
 * ten fields beside the others: see LifecycleContext.
 */
export interface RunState {
  /** Saved but not yet persisted (dropped once the KV write is acknowledged). */
  pendingImage: unknown;
  persisted: boolean;
  /** The device's lease (and slots) may be held for this request: release before going back to ready. */
  leaseHeld: boolean;
  /** The plan's driver may have been taken (gating was entered with a hand-over): every exit gives it back. */
  handoverArmed: boolean;
  restoreScope: Scope;
  /** Restore round: 0, then +1 per repair or retry (part of the operation ids). */
  round: number;
  /** Restores retried after a failure (bounded by policy.restoreRetries). */
  retries: number;
  repairing: boolean;
  resetStarted: boolean;
  resetCompleted: boolean;
}

/** The phase running (or last run, until a resting state), its time budget (ms once its step runs) and op id. */
export interface StepState {
  phase: string | null;
  timeoutMs: number | null;
  lastOpId: string | null;
}

/**
 * The machine's context. XState copies it on every `assign` with `Object.assign({}, context, update)`, and V8
 * keeps an object built that way in fast mode only up to about 19 properties; past that every copy is a hash
 * table (measured: the machine 20-30 % slower per reset, bench/machine.bench.ts). So fields that change together
 * are grouped (run, step) and the top level stays at CONTEXT_KEYS_MAX (test/machines/lifecycle.test.ts checks).
 */
export interface LifecycleContext {
  host: string;
  bdf: string;
  facts: DeviceFacts | null;
  probeCount: number;
  request: ResetRequest | null;
  /** The coordinator's guard snapshot sent with the request, for planning (dropped once the plan is made). */
  guards: GuardSnapshot | null;
  plan: Plan | null;
  refusal: Refusal | null;
  image: ImageRef | null;
  run: RunState;
  /** Counted against the device across requests; an operator release clears it. */
  scopeViolations: number;
  mismatches: VerifyMismatch[];
  outcome: Outcome | null;
  quarantineReason: string | null;
  step: StepState;
  timings: PhaseTiming[];
  lastError: LastError | null;
}

/** The most top-level fields the context may have and stay a fast object when XState copies it (see above). */
export const CONTEXT_KEYS_MAX = 18;

interface EmittedBase {
  host: string;
  bdf: string;
  requestId: string | null;
  atMs: number;
}

export type LifecycleEmitted = EmittedBase &
  (
    | { type: "state.entered"; state: string }
    | { type: "request.received"; request: ResetRequest }
    | { type: "plan"; plan: Plan; request: ResetRequest }
    | { type: "image.persisted"; image: ImageRef }
    | { type: "reset.started"; scope: Scope; method: ResetMethod; targets: string[]; memClear: boolean }
    | { type: "reset.completed"; scope: Scope; method: ResetMethod }
    | { type: "decoder.committed"; decoder: CommittedDecoder }
    /** result: the agent's read-back as reported, so a checker can tell a real pass from a mislabelled one. */
    | { type: "verify.passed"; scope: Scope; round: number; result: VerifyResult }
    | { type: "verify.failed"; scope: Scope; round: number; mismatches: VerifyMismatch[] }
    | { type: "scope.violation"; fields: VerifyMismatch[]; count: number }
    | { type: "step.failed"; phase: string; error: { kind: string; message: string }; willRetry: boolean }
    | { type: "released"; operator: string; reason: string }
    | { type: "driver.rebound"; drivers: Record<string, string>; verify: VerifyResult | null }
    | {
        type: "driver.rebind-failed";
        drivers: Record<string, string>;
        error: { kind: string; message: string };
      }
    // Terminal outcomes: exactly one per request id.
    | { type: "refused"; outcome: "refused"; refusal: Refusal }
    | { type: "planned"; outcome: "planned"; plan: Plan }
    | { type: "verified"; outcome: "verified"; scope: Scope; method: ResetMethod; repaired: boolean }
    | { type: "failed"; outcome: "failed"; error: LastError | null; recovered: true }
    | { type: "quarantined"; outcome: "quarantined"; reason: string; error: LastError | null }
  );

export type LifecycleEmittedType = LifecycleEmitted["type"];
export const OUTCOME_EVENTS: ReadonlySet<string> = new Set<Outcome>([
  "refused",
  "planned",
  "verified",
  "failed",
  "quarantined",
]);
