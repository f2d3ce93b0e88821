// What each event kind carries in its envelope's `data`: one zod schema per kind the coordinator publishes on
// cxlrc.evt.> and per kind a host agent publishes on cxlrc.agt.>, and the typed envelopes built from them.
// Closed where a client decides on a value (outcome kinds, refusal reasons, scope, method), open elsewhere:
// every data object is a z.looseObject, so a field a newer coordinator adds is kept and ignored, never an error
// (the contract: additive changes only within envelope v1). Clients import this file; it imports zod and
// shared/bus only. The coordinator's own types (machines/, services/coordinator) are checked against these
// schemas by test/contract.
import { z } from "zod";
import { Bdf, ErrorBody, ResetMethod, Scope } from "./agent-messages.ts";
import { EventEnvelope } from "./codec.ts";

const Count = z.number().int().nonnegative();
const Millis = z.number().nonnegative();
const Drivers = z.record(Bdf, z.string()).describe("driver name by function");

// ---------------------------------------------------------------------------------------------------
// The vocabulary of plans, refusals and outcomes (machines/policy/types.ts)

/** How a request ends: exactly one outcome event per request id, on cxlrc.evt.> only. */
export const OUTCOME_KINDS = ["verified", "failed", "quarantined", "refused", "planned"] as const;
export const Outcome = z.enum(OUTCOME_KINDS);
export type Outcome = z.infer<typeof Outcome>;

export const REFUSAL_REASONS = [
  "bad-request",
  "quarantined",
  "deadline-passed",
  "in-progress",
  "flr-unsupported",
  "no-full-reset-method",
  "method-unsupported",
  "mem-clear-unsupported",
  "breaker-open",
  "cooldown",
  "device-busy",
  "sibling-busy",
  "host-busy",
  "switch-busy",
  "device-unavailable",
  "gate-unavailable",
  "save-failed",
  "persist-failed",
  "regate-failed",
] as const;
/** Why a request was refused (nothing destructive was done). */
export const RefusalReason = z.enum(REFUSAL_REASONS);
export type RefusalReason = z.infer<typeof RefusalReason>;

/** One gate of the policy, evaluated for a plan or a refusal. */
export const GateResult = z.looseObject({
  /** request, quarantine, deadline, lease, method, mem-clear, breaker, budget, device-busy, siblings… */
  gate: z.string().min(1),
  passed: z.boolean(),
  /** Set when the gate refuses. */
  reason: RefusalReason.optional(),
  /** One human sentence, whether it passed or not. */
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
  retryAfterMs: Millis.optional(),
});
export type GateResult = z.infer<typeof GateResult>;

/** The request as a device's actor holds it: resolved to one device (a selector becomes one request per device). */
export const DeviceRequest = z.looseObject({
  /** The submitted id, or `<id>@<bdf-token>` for each device a selector named. */
  requestId: z.string().min(1),
  host: z.string().min(1),
  bdf: Bdf,
  scope: Scope,
  allowEscalation: z.boolean().optional(),
  memClear: z.boolean().optional(),
  reason: z.string(),
  deadline: z.string().optional(),
  dryRun: z.boolean().optional(),
  method: ResetMethod.optional(),
  includeSiblings: z.boolean().optional(),
});
export type DeviceRequest = z.infer<typeof DeviceRequest>;

/** What the coordinator will do for a request: scope, method, targets, gates, deadlines. */
export const Plan = z.looseObject({
  kind: z.literal("plan"),
  requestId: z.string().min(1),
  host: z.string().min(1),
  bdf: Bdf,
  requestedScope: Scope,
  scope: Scope,
  method: ResetMethod,
  /** io was asked, full is planned (only with allowEscalation). */
  escalated: z.boolean(),
  escalationReason: z.string().nullable(),
  dryRun: z.boolean(),
  /** The request's deadline (ISO): the reset does not start after it. */
  startBy: z.string().nullable(),
  /** Every function of the device. */
  functions: z.array(Bdf),
  /** Every function the plan saves, quiesces, resets, restores and verifies. */
  targets: z.array(Bdf),
  /** Functions below the same bridge that joined an SBR plan. */
  siblings: z.array(Bdf),
  /** SBR: the bridge whose secondary bus is reset. */
  bridge: Bdf.nullable(),
  unmaskSbr: z.boolean(),
  memClear: z.boolean(),
  cacheFlush: z.boolean(),
  /** not-set, untouched, retained, relock-last or retained-or-relock. */
  configLock: z.string(),
  committedDecoders: z.array(Count),
  /** The driver taken from each function for the reset and bound again after it (null: none). */
  handover: Drivers.nullable().optional(),
  retainedDecoders: z.array(Count),
  deadlines: z.looseObject({
    /** Each phase's time budget, ms from entering it. */
    phasesMs: z.record(z.string(), Millis),
    agentCallMs: Millis,
    cacheFlushMs: Millis,
    resetWaitMs: Millis,
    commitPerDecoderMs: Millis,
  }),
  gates: z.array(GateResult),
  /** The phases the reset goes through, in order (gating, savingImage, … releasing). */
  steps: z.array(z.string()),
  notes: z.array(z.string()),
});
export type Plan = z.infer<typeof Plan>;

/** Why a request was refused, in a code and a sentence, and when it is worth asking again. */
export const Refusal = z.looseObject({
  kind: z.literal("refusal"),
  requestId: z.string().min(1),
  host: z.string().min(1),
  bdf: Bdf,
  reason: RefusalReason,
  message: z.string(),
  details: z.record(z.string(), z.unknown()),
  /** Ask again after this long (busy host or switch, cooldown). Absent: not worth retrying as it is. */
  retryAfterMs: Millis.optional(),
  /** Every gate evaluated (a dry run reports them all). */
  gates: z.array(GateResult),
});
export type Refusal = z.infer<typeof Refusal>;

/** A register field read back different from the image (machines' VerifyMismatch). */
export const VerifyMismatch = z.looseObject({
  bdf: Bdf.optional(),
  /** "dvsec.control.memEnable", "decoder0.control.committed"… */
  field: z.string(),
  /** pci: CXL.io state (restored by every scope); cxl: state an io-scope reset must not touch. */
  area: z.enum(["pci", "cxl"]).optional(),
  expected: z.unknown().optional(),
  actual: z.unknown().optional(),
});
export type VerifyMismatch = z.infer<typeof VerifyMismatch>;

export const VerifyReport = z.looseObject({ passed: z.boolean(), mismatches: z.array(VerifyMismatch) });
export type VerifyReport = z.infer<typeof VerifyReport>;

/** The step that failed last: its phase and the error's kind and sentence. */
export const LastError = z.looseObject({ phase: z.string(), kind: z.string(), message: z.string() });
export type LastError = z.infer<typeof LastError>;

export const StepError = z.looseObject({ kind: z.string(), message: z.string() });

/** Where a saved image is stored: its key in the cxlrc-images bucket and the revision written. */
export const ImageRef = z.looseObject({ key: z.string().min(1), revision: Count });

/** A release with restore: the last known good image put back and verified, function by function. */
export const RestoreReport = z.looseObject({
  verified: z.boolean(),
  image: z.looseObject({
    key: z.string(),
    revision: Count,
    requestId: z.string().nullable(),
    savedAt: z.string(),
    verifiedAt: z.string(),
  }),
  functions: z.array(
    z.looseObject({
      bdf: Bdf,
      decoders: z.array(z.looseObject({ index: Count, action: z.string() })),
      passed: z.boolean(),
      mismatches: z.array(
        z.looseObject({
          field: z.string(),
          expected: z.unknown().optional(),
          actual: z.unknown().optional(),
        }),
      ),
    }),
  ),
  error: StepError.optional(),
});
export type RestoreReport = z.infer<typeof RestoreReport>;

// ---------------------------------------------------------------------------------------------------
// The coordinator's events (cxlrc.evt.<host>.<bdf-token>.<kind>)

const published = {
  /** The coordinator that published the event. */
  coordinator: z.string().min(1),
  /** When the device's actor decided it (ms since the epoch); absent on events decided outside an actor. */
  atMs: z.number().optional(),
};
/** A coordinator event's data: who published it, when the actor decided it, and the kind's own fields. */
const data = <S extends z.ZodRawShape>(description: string, shape: S) =>
  z.looseObject({ ...published, ...shape }).describe(description);
const Operator = z.string().min(1);

/** The data of each kind the coordinator publishes. A kind not listed here is new: ignore it. */
export const COORDINATOR_EVENT_DATA = {
  "request.received": data("A device's actor took the request (before planning).", {
    request: DeviceRequest,
  }),
  "request.rejected": data(
    "Outcome of a request refused as a message (bad field, unknown host or device) before it reached a device; bdf is null.",
    {
      error: ErrorBody,
      /** Its sequence in CXLRC_REQUESTS and the subject it came on. */
      streamSeq: Count.optional(),
      subject: z.string().optional(),
    },
  ),
  "request.duplicate": data(
    "The request was delivered again and is taken already: nothing more happens for it.",
    {
      streamSeq: Count,
      redelivered: z.boolean(),
    },
  ),
  "request.waiting": data("The request waits for a host or switch slot (its position in the queue).", {
    reason: z.string(),
    position: Count,
    running: z.array(z.string()),
  }),
  plan: data("The plan. With dryRun: true, a dry run's answer and its last event.", {
    plan: Plan,
    request: DeviceRequest.optional(),
    dryRun: z.boolean().optional(),
  }),
  refused: data("Outcome: refused before anything destructive was done (reason, message, retryAfterMs).", {
    outcome: z.literal("refused"),
    refusal: Refusal,
    dryRun: z.boolean().optional(),
  }),
  planned: data("Outcome of a dry run decided by a device's actor (dry runs are answered with plan today).", {
    outcome: z.literal("planned"),
    plan: Plan,
  }),
  verified: data("Outcome: reset, restored and read back equal to the image.", {
    outcome: z.literal("verified"),
    scope: Scope,
    method: ResetMethod,
    /** A scope violation was found and repaired by a full restore before the verify passed. */
    repaired: z.boolean(),
  }),
  failed: data("Outcome: the reset did not complete; the device was put back (recovered) and can be used.", {
    outcome: z.literal("failed"),
    error: LastError.nullable(),
    recovered: z.boolean(),
  }),
  quarantined: data(
    "Outcome: the device could not be brought back; no reset until an operator releases it.",
    {
      outcome: z.literal("quarantined"),
      reason: z.string(),
      error: LastError.nullable(),
    },
  ),
  "state.entered": data(
    "The device's lifecycle entered a state (ready, planning, savingImage, resetting…).",
    {
      state: z.string(),
    },
  ),
  "image.persisted": data("The image saved before the reset is stored (KV cxlrc-images).", {
    image: ImageRef,
  }),
  "reset.started": data("The reset of the plan's targets begins.", {
    scope: Scope,
    method: ResetMethod,
    targets: z.array(Bdf),
    memClear: z.boolean(),
  }),
  "reset.completed": data("The reset completed; restoring follows.", { scope: Scope, method: ResetMethod }),
  "decoder.committed": data("An HDM decoder is committed again (or was retained by a CXL Reset).", {
    decoder: z.looseObject({ bdf: Bdf, index: Count, retained: z.boolean() }),
  }),
  "verify.passed": data("The device read back equal to its image.", {
    scope: Scope,
    round: Count,
    result: VerifyReport,
  }),
  "verify.failed": data("The device read back different from its image: the fields.", {
    scope: Scope,
    round: Count,
    mismatches: z.array(VerifyMismatch),
  }),
  "scope.violation": data(
    "An io-scope reset changed CXL state: the fields, and the device's violations so far.",
    {
      fields: z.array(VerifyMismatch),
      count: Count,
    },
  ),
  "step.failed": data("A step failed: its phase, the error, and whether it is tried again.", {
    phase: z.string(),
    error: StepError,
    willRetry: z.boolean(),
  }),
  "driver.rebound": data(
    "The driver taken for the reset is bound again, and the device read back under it.",
    {
      drivers: Drivers,
      verify: VerifyReport.nullable(),
    },
  ),
  "driver.rebind-failed": data("The driver taken for the reset could not be bound again.", {
    drivers: Drivers,
    error: StepError,
  }),
  released: data("An operator took the device out of quarantine (with restore: the report).", {
    operator: Operator,
    reason: z.string(),
    restore: RestoreReport.optional(),
  }),
  "release.failed": data(
    "A release with restore did not verify: the device stays quarantined, for quarantineReason.",
    {
      operator: Operator,
      reason: z.string(),
      quarantineReason: z.string(),
      restore: RestoreReport,
    },
  ),
  "lease.lost": data(
    "The coordinator lost the device's lease (renew-failed, gone, taken, expired): it says no more.",
    {
      reason: z.string(),
    },
  ),
  recovered: data("A coordinator continues a device stored mid-operation (its owner died or let it go).", {
    state: z.string(),
    previousOwner: z.string(),
  }),
  "breaker.closed": data('An operator closed the fleet circuit breaker (host "_coordinator", bdf null).', {
    operator: Operator,
    reason: z.string(),
  }),
} as const;

export type CoordinatorEventKind = keyof typeof COORDINATOR_EVENT_DATA;
export const COORDINATOR_EVENT_KINDS = Object.keys(COORDINATOR_EVENT_DATA) as CoordinatorEventKind[];
export type CoordinatorEventData<K extends CoordinatorEventKind> = z.output<
  (typeof COORDINATOR_EVENT_DATA)[K]
>;

export function isCoordinatorEventKind(kind: string): kind is CoordinatorEventKind {
  return Object.hasOwn(COORDINATOR_EVENT_DATA, kind);
}

// ---------------------------------------------------------------------------------------------------
// A host agent's events (cxlrc.agt.<host>.<bdf-token|agent>.<kind>): progress, never outcomes

const agentData = <S extends z.ZodRawShape>(description: string, shape: S) =>
  z.looseObject(shape).describe(description);
const Hex = z.string().regex(/^0x[0-9a-f]+$/);

/** The data of each kind an agent publishes. A kind not listed here is new: ignore it. */
export const AGENT_EVENT_DATA = {
  "agent.started": agentData("The agent serves (host-level: bdf null).", {
    version: z.string(),
    backend: z.string(),
    devices: Count,
  }),
  "agent.stopped": agentData("The agent stopped serving.", { uptimeMs: Millis }),
  heartbeat: agentData("Every heartbeatMs (5 s), core NATS, on cxlrc.agt.<host>.agent.heartbeat.", {
    host: z.string(),
    version: z.string(),
    devices: Count,
    inFlight: Count,
    uptimeMs: Millis,
  }),
  "op.started": agentData("An operation began: its params, without an image (opId in the envelope).", {
    op: z.string(),
    params: z.record(z.string(), z.unknown()),
  }),
  "op.completed": agentData("An operation ended: its result when under 8 KiB, else only its size.", {
    op: z.string(),
    durationMs: Millis,
    result: z.unknown().optional(),
    resultBytes: Count.optional(),
  }),
  "op.failed": agentData("An operation failed: the error.", {
    op: z.string(),
    durationMs: Millis,
    error: ErrorBody,
  }),
  "image.saved": agentData("The image is saved (its checksum).", {
    checksum: z.string(),
    cxl: z.boolean(),
    decoders: Count,
    durationMs: Millis,
  }),
  "kernel-view.differs": agentData(
    "The kernel's view of the decoders under the driver disagreed with the BAR.",
    {
      differences: z.array(z.string()),
    },
  ),
  "driver.bound": agentData("A driver was bound (bind operation).", {
    driver: z.string().nullable(),
    previous: z.string().nullable(),
  }),
  "driver.unbound": agentData("The save took the device's driver for the reset.", {
    driver: z.string().nullable(),
    override: z.string().nullable(),
  }),
  "driver.rebound": agentData("The driver taken for the reset is bound again.", {
    driver: z.string().nullable(),
    override: z.string().nullable(),
  }),
  "quiesce.bus-master-off": agentData("Bus Master cleared (what it was).", { busMasterWas: z.boolean() }),
  "quiesce.completed": agentData("Quiesced (cache: flushed or not-needed).", {
    scope: Scope,
    cache: z.string(),
    durationMs: Millis,
  }),
  "cache.flush-started": agentData("Caching disabled, write-back and invalidate initiated when capable.", {
    wbInvInitiated: z.boolean(),
  }),
  "cache.flushed": agentData("Cache Invalid read back set.", { waitedMs: Millis, reads: Count }),
  "cache.flush-timeout": agentData("Cache Invalid never set: the reset does not go ahead.", {
    waitedMs: Millis,
    status2: Hex,
  }),
  "reset.started": agentData("The reset operation begins.", {
    method: ResetMethod,
    memClear: z.boolean().optional(),
  }),
  "reset.initiated": agentData(
    "The reset was written to the device (method-specific facts beside the method).",
    {
      method: ResetMethod,
    },
  ),
  "reset.transactions-pending": agentData("Transactions Pending did not clear before an FLR.", {
    waitedMs: Millis,
  }),
  "reset.timeout-reserved": agentData(
    "The device declares a reserved CXL Reset timeout: the longest is used.",
    {
      register: z.string(),
      value: Hex,
      code: Count,
      usingMs: Millis,
    },
  ),
  "reset.disable-caching-unreachable": agentData("DVSEC Control2 read all-ones after the reset.", {
    register: z.string(),
    value: Hex,
  }),
  "reset.functions-answered": agentData("After a bus reset: the functions below the bridge that answered.", {
    bridge: Bdf,
    reached: z.array(Bdf),
    unreached: z.array(Bdf),
    behindBridges: z.array(Bdf),
  }),
  "reset.completed": agentData("The reset completed and the target answers again.", {
    method: ResetMethod,
    durationMs: Millis,
    target: Bdf,
    reached: z.array(Bdf),
  }),
  "reset.failed": agentData("The reset failed: the error's kind and details beside the method.", {
    method: ResetMethod,
    durationMs: Millis,
    kind: z.string(),
  }),
  "restore.started": agentData("The restore begins (the image's checksum).", {
    scope: Scope,
    checksum: z.string(),
  }),
  "restore.dvsec": agentData("DVSEC Control and ranges written (CONFIG_LOCK as found).", {
    configLocked: z.boolean(),
  }),
  "restore.completed": agentData("The restore completed (decoders written).", {
    scope: Scope,
    durationMs: Millis,
    decoders: Count,
  }),
  "restore.failed": agentData("The restore failed: the error's kind and details beside the scope.", {
    scope: Scope,
    kind: z.string(),
  }),
  "decoder.retained": agentData("A locked, committed decoder was kept through the reset and left alone.", {
    decoder: Count,
    register: z.string(),
    value: Hex,
  }),
  "decoder.decommitted": agentData("A committed decoder was decommitted before it is written.", {
    decoder: Count,
    waitedMs: Millis,
  }),
  "decoder.committed": agentData("A decoder was written and committed.", {
    decoder: Count,
    base: Hex,
    size: Hex,
    waitedMs: Millis,
  }),
  "verify.completed": agentData("The device was compared with the image.", {
    scope: Scope,
    passed: z.boolean(),
    /** How many fields differ (the reply names them). */
    mismatches: Count,
    scopeViolation: z.boolean(),
    registers: z.array(z.string()).optional(),
  }),
} as const;

export type AgentEventKind = keyof typeof AGENT_EVENT_DATA;
export const AGENT_EVENT_KINDS = Object.keys(AGENT_EVENT_DATA) as AgentEventKind[];
export type AgentEventData<K extends AgentEventKind> = z.output<(typeof AGENT_EVENT_DATA)[K]>;

export function isAgentEventKind(kind: string): kind is AgentEventKind {
  return Object.hasOwn(AGENT_EVENT_DATA, kind);
}

// ---------------------------------------------------------------------------------------------------
// Typed envelopes

/** The envelope of one kind, its data typed. */
export function typedEnvelope<K extends string, D extends z.ZodType>(kind: K, data: D) {
  return EventEnvelope.extend({ kind: z.literal(kind), data });
}
type TypedEnvelopes<M extends Record<string, z.ZodType>> = {
  [K in keyof M & string]: ReturnType<typeof typedEnvelope<K, M[K]>>;
};
function typedEnvelopes<M extends Record<string, z.ZodType>>(map: M): TypedEnvelopes<M> {
  // Object.fromEntries forgets which key holds which schema; each entry is built from its own key's schema.
  return Object.fromEntries(
    Object.entries(map).map(([kind, schema]) => [kind, typedEnvelope(kind, schema)]),
  ) as TypedEnvelopes<M>;
}

/** Each coordinator event kind's whole envelope (source "coordinator"). */
export const COORDINATOR_EVENTS = typedEnvelopes(COORDINATOR_EVENT_DATA);
/** Each agent event kind's whole envelope (source "agent"). */
export const AGENT_EVENTS = typedEnvelopes(AGENT_EVENT_DATA);

type Union<M extends Record<string, z.ZodType>> = z.ZodDiscriminatedUnion<Array<M[keyof M]>, "kind">;
function unionOf<M extends Record<string, z.ZodObject>>(map: M): Union<M> {
  const options = Object.values(map) as Array<M[keyof M]>;
  return z.discriminatedUnion("kind", options as [M[keyof M], ...Array<M[keyof M]>]);
}

/**
 * A coordinator event of a known kind, its data typed: a discriminated union on `kind`. Parse an envelope
 * with it only when isCoordinatorEventKind(kind) (an unknown kind is not an error: ignore it).
 */
export const CoordinatorEvent = unionOf(COORDINATOR_EVENTS);
export type CoordinatorEvent = z.output<typeof CoordinatorEvent>;
/** An agent event of a known kind, its data typed (same rules). */
export const AgentEvent = unionOf(AGENT_EVENTS);
export type AgentEvent = z.output<typeof AgentEvent>;
/** The outcome events: the one event that ends a request. */
export type OutcomeEvent = Extract<CoordinatorEvent, { kind: Outcome }>;

/**
 * An envelope read on cxlrc.evt.> as its typed event: null for a kind this version does not know (ignore it) or
 * an envelope that is not the coordinator's (agents publish kinds of the same names on cxlrc.agt.>); a ZodError
 * is thrown when a known kind's data does not match (a bug on one side, not a new field). Believe an outcome
 * only from a message whose subject is under cxlrc.evt.>: the envelope alone does not prove who sent it.
 */
export function coordinatorEventOf(env: EventEnvelope): CoordinatorEvent | null {
  if (env.source !== undefined && env.source !== "coordinator") return null;
  return isCoordinatorEventKind(env.kind) ? CoordinatorEvent.parse(env) : null;
}

/** An envelope read on cxlrc.agt.> as its typed event (same rules). */
export function agentEventOf(env: EventEnvelope): AgentEvent | null {
  if (env.source !== undefined && env.source !== "agent") return null;
  return isAgentEventKind(env.kind) ? AgentEvent.parse(env) : null;
}
