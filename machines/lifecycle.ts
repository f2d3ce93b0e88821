// The device lifecycle: one statechart from binding to verified, with the failure, repair and quarantine
// paths of reset-rules.md. Pure orchestration: every effect is a named step the coordinator runs (steps.ts:
// a state's entry asks for it, its answer comes back as `done.<step>` or `failed.<step>`), every decision a
// pure policy function, every fact it learns an emitted event.
//
// Persistence: the coordinator stores the snapshot in XState's persisted form; an actor restored in a step's
// state runs that step again (RESUME_STEP) with the same input, made from the context, hence the same
// operation id (the agent answers a repeated id with the first result). Time budgets are declared once
// (phaseBudgetMs) and travel in every step's input as `timeoutMs`; the effect wrapper enforces them from when
// the step starts running, and a timeout is an error like any other (kind "timeout"). No timer lives in the
// machine: XState loses `after` timers on restore (statelyai/xstate#5331), and a step run again simply starts
// its budget again.

import { assertEvent, assign, emit, enqueueActions, setup } from "xstate";
import type { Scope } from "../shared/bus/agent-messages.ts";
import type { ResetRequest } from "./facts.ts";
import type {
  LastError,
  LifecycleContext,
  LifecycleEmitted,
  LifecycleEvent,
  LifecycleInput,
  RunState,
  StepCall,
  VerifyResult,
} from "./lifecycle-types.ts";
import { opIdFor } from "./op-id.ts";
import { restoreInResetMs } from "./policy/deadlines.ts";
import { DEFAULT_POLICY, type Policy } from "./policy/defaults.ts";
import { handoverText, regate } from "./policy/gates.ts";
import { planReset, resetsAlone } from "./policy/plan.ts";
import type { Refusal, RefusalReason, ResetPhase } from "./policy/types.ts";

/** The machine's clock (ms). Injected so tests and model checks control time; the coordinator passes Date.now. */
export interface LifecycleClock {
  now(): number;
}

/** Tag of the states a device rests in: nothing runs, the lease can go (the coordinator's REST_STATES). */
export const REST = "rest";
/**
 * Tag of a state that is not stored on its own: it ends at once in a rest state, whose record stores what it
 * did (releasing: the outcome goes out with the rest state's write, one write instead of two).
 */
export const UNSTORED = "unstored";

/** Phases that call an actor and carry a deadline. */
export type LifecyclePhase = "binding" | "probing" | "handingBack" | ResetPhase;

/** An error value as { kind, message }: CxlrcError and agent ErrorBody carry a kind; anything else is "internal". */
export function errorOf(err: unknown): { kind: string; message: string } {
  if (err && typeof err === "object") {
    const e = err as { kind?: unknown; message?: unknown };
    const message = typeof e.message === "string" ? e.message : String(err);
    return { kind: typeof e.kind === "string" ? e.kind : "internal", message };
  }
  return { kind: "internal", message: String(err) };
}

/** Success is what was read back: passed and not a single mismatch. */
export function verifyPassed(result: VerifyResult): boolean {
  return result.passed && result.mismatches.length === 0;
}

/** An io-scope verify that found CXL state changed: the FLR reached beyond CXL.io. */
function isScopeViolation(context: LifecycleContext, result: VerifyResult): boolean {
  return context.run.restoreScope === "io" && result.mismatches.some((m) => m.area !== "pci");
}

function refusalOf(
  context: LifecycleContext,
  request: Pick<ResetRequest, "requestId" | "host" | "bdf">,
  reason: RefusalReason,
  message: string,
): Refusal {
  return {
    kind: "refusal",
    requestId: request.requestId,
    host: request.host,
    bdf: request.bdf,
    reason,
    message,
    details: {},
    gates: context.plan?.gates ?? [],
  };
}

function initialContext(input: LifecycleInput): LifecycleContext {
  return {
    host: input.host,
    bdf: input.bdf,
    facts: null,
    probeCount: 0,
    request: null,
    guards: null,
    plan: null,
    refusal: null,
    image: null,
    run: freshRun("io"),
    scopeViolations: input.scopeViolations ?? 0,
    mismatches: [],
    outcome: null,
    quarantineReason: null,
    step: { phase: null, timeoutMs: null, lastOpId: null },
    timings: [],
    lastError: null,
  };
}

/** A request's progress before anything was done for it. */
function freshRun(restoreScope: Scope): RunState {
  return {
    pendingImage: null,
    persisted: false,
    leaseHeld: false,
    handoverArmed: false,
    restoreScope,
    round: 0,
    retries: 0,
    repairing: false,
    resetStarted: false,
    resetCompleted: false,
  };
}

/** The context with some of the request's progress changed (assign's partial update for `run`). */
function runWith(context: LifecycleContext, change: Partial<RunState>): { run: RunState } {
  return { run: { ...context.run, ...change } };
}

/** Per-request fields, fresh for every RESET_REQUESTED. */
function requestFields(request: ResetRequest, guards: LifecycleContext["guards"]): Partial<LifecycleContext> {
  return {
    request,
    guards,
    plan: null,
    refusal: null,
    image: null,
    run: freshRun(request.scope),
    mismatches: [],
    outcome: null,
    quarantineReason: null,
    timings: [],
    lastError: null,
  };
}

function phaseBudgetMs(context: LifecycleContext, policy: Policy, phase: LifecyclePhase): number {
  if (phase === "binding" || phase === "probing") return policy.agentCallTimeoutMs;
  if (phase === "handingBack") return 2 * policy.agentCallTimeoutMs;
  return context.plan?.deadlines.phasesMs[phase] ?? policy.leaseTimeoutMs;
}

/** Phases inside the restore chain carry the round in their operation id; the others run once per request. */
const ROUND_PHASES: ReadonlySet<string> = new Set(["restoring", "committingDecoders", "verifying"]);

export const systemClock: LifecycleClock = { now: () => Date.now() };

/**
 * Each step state's effect and its input, under a policy: the state's entry runs it (runStep), RESUME_STEP runs it
 * again in an actor restored mid-step, and the stored form names it for coordinators that invoked steps as child
 * actors (runtime/snapshot.ts persistedSnapshot). Inputs are made from the context when the step starts.
 */
export function stepCalls(policy: Policy) {
  // Every step input starts with these: the operation id and time budget set on entering the phase, and the
  // device. The effect wrapper counts the budget from when the step starts running (startToClose), never
  // from when the state was entered: a coordinator's own queueing does not fail a device.
  const device = (context: LifecycleContext) => ({
    opId: context.step.lastOpId!,
    host: context.host,
    bdf: context.bdf,
    timeoutMs: context.step.timeoutMs!,
  });
  const op = (context: LifecycleContext) => ({ ...device(context), requestId: context.request!.requestId });
  // A restore and its verify: the plan's functions, against the stored image, in this round of the restore chain.
  const fromImage = (context: LifecycleContext) => ({
    ...op(context),
    targets: context.plan!.targets,
    scope: context.run.restoreScope,
    image: context.image!,
    round: context.run.round,
  });

  return {
    binding: (context) => ({ src: "bindDevice", input: device(context) }),
    probing: (context) => ({ src: "probeDevice", input: device(context) }),
    gating: (context) => ({
      src: "acquireDevice",
      input: { ...op(context), switchId: context.facts?.bridge?.switchId ?? null },
    }),
    savingImage: (context) => ({
      src: "saveImage",
      input: { ...op(context), targets: context.plan!.targets, handover: context.plan!.handover ?? null },
    }),
    persistingImage: (context) => ({
      src: "persistImage",
      input: {
        ...op(context),
        image: context.run.pendingImage,
        targets: context.plan?.targets ?? [context.bdf],
      },
    }),
    regating: (context) => ({ src: "recheckGates", input: { ...op(context), plan: context.plan! } }),
    quiescing: (context) => ({
      src: "quiesceDevice",
      input: {
        ...op(context),
        targets: context.plan!.targets,
        scope: context.plan!.scope,
        cacheFlush: context.plan!.cacheFlush,
        cacheFlushTimeoutMs: context.plan!.deadlines.cacheFlushMs,
        withReset: resetsAlone(context.plan!, context.bdf),
      },
    }),
    resetting: (context) => {
      const plan = context.plan!;
      // The device alone: quiesced first and restored after, in the reset's own operation.
      const alone = resetsAlone(plan, context.bdf);
      return {
        src: "resetDevice",
        input: {
          ...op(context),
          method: plan.method,
          targets: plan.targets,
          memClear: plan.memClear,
          bridge: plan.bridge,
          unmaskSbr: plan.unmaskSbr,
          waitMs: plan.deadlines.resetWaitMs,
          scope: plan.scope,
          image: context.image!,
          quiesce: alone ? { cacheFlushTimeoutMs: plan.deadlines.cacheFlushMs } : null,
          restore: alone
            ? {
                scope: context.run.restoreScope,
                round: context.run.round,
                timeoutMs: restoreInResetMs(plan.deadlines.phasesMs),
              }
            : null,
        },
      };
    },
    awaitingReady: (context) => ({
      src: "awaitReady",
      input: { ...op(context), targets: context.plan!.targets, readyTimeoutMs: policy.deviceReadyTimeoutMs },
    }),
    restoring: (context) => ({ src: "restoreDevice", input: fromImage(context) }),
    committingDecoders: (context) => ({
      src: "commitDecoders",
      input: {
        ...op(context),
        targets: context.plan!.targets,
        image: context.image!,
        commitTimeoutMs: context.plan!.deadlines.commitPerDecoderMs,
        retainedDecoders: context.plan!.retainedDecoders,
        round: context.run.round,
      },
    }),
    verifying: (context) => ({ src: "verifyDevice", input: fromImage(context) }),
    handingBack: (context) => ({
      src: "handBackDriver",
      input: {
        ...op(context),
        drivers: context.plan!.handover!,
        image: context.image,
        scope: context.run.restoreScope,
        afterReset: context.run.resetStarted,
      },
    }),
    releasing: (context) => ({ src: "releaseDevice", input: { ...op(context), outcome: context.outcome! } }),
  } satisfies Record<string, (context: LifecycleContext) => StepCall>;
}
/** The states that run a step. */
export type StepStateName = keyof ReturnType<typeof stepCalls>;

/** The step a state runs, made from the context (null: the state runs none). */
export function stepCallOf(
  calls: ReturnType<typeof stepCalls>,
  state: string,
  context: LifecycleContext,
): StepCall | null {
  return Object.hasOwn(calls, state) ? calls[state as StepStateName](context) : null;
}

/**
 * The lifecycle under one coordinator's policy (its configuration: the same for every device it drives, so it is
 * the machine's, not a field of each device's context; a device taken over runs under its new owner's policy,
 * and a running plan keeps the deadlines it was made with).
 */
export function createLifecycleMachine(clock: LifecycleClock = systemClock, policy: Policy = DEFAULT_POLICY) {
  const base = (
    context: LifecycleContext,
    requestId: string | null = context.request?.requestId ?? null,
  ) => ({
    host: context.host,
    bdf: context.bdf,
    requestId,
    atMs: clock.now(),
  });
  const STEP_CALLS = stepCalls(policy);
  const stepCall = (state: StepStateName, context: LifecycleContext): StepCall => STEP_CALLS[state](context);

  return setup({
    types: {
      context: {} as LifecycleContext,
      events: {} as LifecycleEvent,
      input: {} as LifecycleInput,
      emitted: {} as LifecycleEmitted,
    },
    guards: {
      planRefused: ({ context }) => context.refusal !== null,
      isDryRun: ({ context }) => context.plan?.dryRun === true,
      leaseHeld: ({ context }) => context.run.leaseHeld,
      restoringFullScope: ({ context }) => context.run.restoreScope === "full",
      outcomeIsQuarantine: ({ context }) => context.outcome === "quarantined",
      /** The driver was (or may have been) taken and goes back now: not when policy keeps a quarantined device unbound. */
      handsBack: ({ context }) =>
        context.run.handoverArmed &&
        Object.keys(context.plan?.handover ?? {}).length > 0 &&
        !(context.outcome === "quarantined" && policy.quarantineUnbound),
      /** reset-rules Failures: retry the restore once from the image (policy.restoreRetries), then quarantine. */
      canRetryRestore: ({ context }) => context.image !== null && context.run.retries < policy.restoreRetries,
    },
    actions: {
      announce: emit(({ context }, params: { state: string }) => ({
        ...base(context),
        type: "state.entered" as const,
        state: params.state,
      })),
      /** Start a phase: its operation id, its time budget, its timing record. */
      enterPhase: assign(({ context }, params: { phase: LifecyclePhase }) => {
        const startMs = clock.now();
        const round = ROUND_PHASES.has(params.phase) ? context.run.round : 0;
        const subject =
          params.phase === "binding" || params.phase === "probing"
            ? `${context.host}/${context.bdf}/${context.probeCount + 1}`
            : context.request!.requestId;
        return {
          step: {
            phase: params.phase,
            timeoutMs: phaseBudgetMs(context, policy, params.phase),
            lastOpId: opIdFor(subject, params.phase, round),
          },
          probeCount: params.phase === "probing" ? context.probeCount + 1 : context.probeCount,
          timings: [...context.timings, { phase: params.phase, round, startMs, endMs: null }],
        };
      }),
      leavePhase: assign(({ context }) => {
        const timings = [...context.timings];
        const last = timings.at(-1);
        if (last && last.endMs === null) timings[timings.length - 1] = { ...last, endMs: clock.now() };
        // phase stays set: the transition's actions (recordError) run after exit and name it.
        return { timings };
      }),
      /** A resting state: no phase runs. */
      rest: assign(({ context }) => ({ step: { ...context.step, phase: null, timeoutMs: null } })),
      startRequest: assign(({ event }) => {
        assertEvent(event, "RESET_REQUESTED");
        return requestFields(event.request, event.guards);
      }),
      receiveRequest: emit(({ context, event }) => {
        assertEvent(event, "RESET_REQUESTED");
        return {
          ...base(context, event.request.requestId),
          type: "request.received" as const,
          request: event.request,
        };
      }),
      /** A request while the device is busy, unprobed or quarantined: refused at once, the running one untouched. */
      refuseArrival: enqueueActions(({ context, event, enqueue }, params: { reason: RefusalReason }) => {
        assertEvent(event, "RESET_REQUESTED");
        const r = event.request;
        const message =
          params.reason === "quarantined"
            ? `${context.bdf} is quarantined: no reset until an operator releases it`
            : params.reason === "in-progress"
              ? `${context.bdf} is already being reset by request ${context.request?.requestId ?? "?"}`
              : `${context.bdf} is not probed yet (or not reachable)`;
        const running = params.reason === "in-progress" ? (context.request?.requestId ?? null) : null;
        const refusal = {
          ...refusalOf(context, r, params.reason, message),
          // The request it met: a controller can follow that one instead of asking again.
          ...(running !== null ? { details: { activeRequestId: running } } : {}),
          gates: [],
        };
        enqueue.emit({ ...base(context, r.requestId), type: "request.received", request: r });
        enqueue.emit({ ...base(context, r.requestId), type: "refused", outcome: "refused", refusal });
      }),
      makePlan: assign(({ context }) => {
        const result = planReset(context.request!, context.facts!, {
          ...context.guards!,
          nowMs: clock.now(),
          policy,
        });
        // The guard snapshot served its purpose; keep the persisted snapshot small.
        return result.kind === "plan"
          ? { plan: result, refusal: null, guards: null }
          : { plan: null, refusal: result, guards: null };
      }),
      emitPlan: enqueueActions(({ context, enqueue }) => {
        if (context.plan)
          enqueue.emit({ ...base(context), type: "plan", plan: context.plan, request: context.request! });
      }),
      refuse: assign(
        ({ context }, params: { reason: RefusalReason; message: string; leaseMaybeHeld?: boolean }) => ({
          refusal: refusalOf(context, context.request!, params.reason, params.message),
          ...runWith(context, { leaseHeld: context.run.leaseHeld || params.leaseMaybeHeld === true }),
        }),
      ),
      recordError: assign(({ context }, params: { kind: string; message: string }) => ({
        lastError: { phase: context.step.phase ?? "unknown", ...params } satisfies LastError,
      })),
      /** The one terminal outcome of the request. */
      announceOutcome: enqueueActions(({ context, enqueue }) => {
        const b = base(context);
        switch (context.outcome) {
          case "refused":
            enqueue.emit({ ...b, type: "refused", outcome: "refused", refusal: context.refusal! });
            return;
          case "planned":
            enqueue.emit({ ...b, type: "planned", outcome: "planned", plan: context.plan! });
            return;
          case "verified":
            enqueue.emit({
              ...b,
              type: "verified",
              outcome: "verified",
              scope: context.plan!.scope,
              method: context.plan!.method,
              repaired: context.run.repairing,
            });
            return;
          case "failed":
            enqueue.emit({
              ...b,
              type: "failed",
              outcome: "failed",
              error: context.lastError,
              recovered: true,
            });
            return;
          case "quarantined":
            enqueue.emit({
              ...b,
              type: "quarantined",
              outcome: "quarantined",
              reason: context.quarantineReason ?? "unknown",
              error: context.lastError,
            });
            return;
          case null:
            return;
        }
      }),
      /** Start the state's step (machines/steps.ts): provided by the host of the effects. */
      runStep: (_args, _call: StepCall) => {
        throw new Error(
          "lifecycle step runner not provided (machine.provide({ actions: stepActions(effects) }))",
        );
      },
      /** Stop the state's step (provided with runStep). */
      stopStep: (_args) => undefined,
    },
  }).createMachine({
    id: "device",
    context: ({ input }) => initialContext(input),
    initial: "binding",
    // While a reset runs, another request is refused at once without disturbing it (ready, quarantined and the
    // states before ready handle requests themselves).
    on: {
      RESET_REQUESTED: { actions: { type: "refuseArrival", params: { reason: "in-progress" } } },
      // An actor restored in a step's state (steps.ts RESUME_STEP): the step runs again.
      "step.resume": {
        actions: enqueueActions(({ context, self, enqueue }) => {
          const call = stepCallOf(STEP_CALLS, self.getSnapshot().value as string, context);
          if (call) enqueue({ type: "runStep", params: call });
        }),
      },
    },
    states: {
      binding: {
        entry: [
          { type: "announce", params: { state: "binding" } },
          { type: "enterPhase", params: { phase: "binding" } },
          { type: "runStep", params: ({ context }) => stepCall("binding", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.bindDevice": "probing",
          "failed.bindDevice": {
            target: "unavailable",
            actions: { type: "recordError", params: ({ event }) => errorOf(event.error) },
          },
          RESET_REQUESTED: { actions: { type: "refuseArrival", params: { reason: "device-unavailable" } } },
        },
      },

      probing: {
        entry: [
          { type: "announce", params: { state: "probing" } },
          { type: "enterPhase", params: { phase: "probing" } },
          { type: "runStep", params: ({ context }) => stepCall("probing", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.probeDevice": { target: "ready", actions: assign({ facts: ({ event }) => event.output }) },
          "failed.probeDevice": {
            target: "unavailable",
            actions: { type: "recordError", params: ({ event }) => errorOf(event.error) },
          },
          RESET_REQUESTED: { actions: { type: "refuseArrival", params: { reason: "device-unavailable" } } },
        },
      },

      /** Bind or probe failed: nothing known about the device; a PROBE tries again. */
      unavailable: {
        tags: [REST],
        entry: [{ type: "announce", params: { state: "unavailable" } }, "rest"],
        on: {
          PROBE: "probing",
          RESET_REQUESTED: { actions: { type: "refuseArrival", params: { reason: "device-unavailable" } } },
        },
      },

      ready: {
        tags: [REST],
        entry: [{ type: "announce", params: { state: "ready" } }, "rest"],
        on: {
          RESET_REQUESTED: { target: "planning", actions: ["startRequest", "receiveRequest"] },
          PROBE: "probing",
          FACTS_UPDATED: { actions: assign({ facts: ({ event }) => event.facts }) },
        },
      },

      /** Pure: planReset decides scope, method, targets, gates and deadlines from the facts and the guards. */
      planning: {
        entry: [{ type: "announce", params: { state: "planning" } }, "makePlan", "emitPlan"],
        always: [
          { guard: "planRefused", target: "refused" },
          { guard: "isDryRun", target: "reporting" },
          { target: "gating" },
        ],
      },

      /** Dry run: the plan event was the report; nothing was touched. */
      reporting: {
        entry: [
          { type: "announce", params: { state: "reporting" } },
          assign({ outcome: "planned" as const }),
          "announceOutcome",
        ],
        always: "ready",
      },

      /** Under the coordinator's CAS: device lease, host/switch slots, attempt budget, breaker. */
      gating: {
        entry: [
          { type: "announce", params: { state: "gating" } },
          { type: "enterPhase", params: { phase: "gating" } },
          // Stored with gating's write-ahead, before the save can take the driver: every exit gives it back.
          assign(({ context }) =>
            runWith(context, { handoverArmed: Object.keys(context.plan?.handover ?? {}).length > 0 }),
          ),
          { type: "runStep", params: ({ context }) => stepCall("gating", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.acquireDevice": [
            {
              guard: ({ event }) => event.output.granted,
              target: "savingImage",
              actions: assign(({ context }) =>
                runWith(context, { leaseHeld: true, restoreScope: context.plan!.scope }),
              ),
            },
            {
              target: "refused",
              actions: assign({
                refusal: ({ context, event }) =>
                  event.output.granted
                    ? null
                    : { ...event.output.refusal, gates: context.plan?.gates ?? event.output.refusal.gates },
              }),
            },
          ],
          "failed.acquireDevice": {
            target: "refused",
            actions: {
              type: "refuse",
              params: ({ event }) => ({
                reason: "gate-unavailable",
                message: `could not acquire the device: ${errorOf(event.error).message}`,
                leaseMaybeHeld: true,
              }),
            },
          },
        },
      },

      // Write-ahead (reset-rules step 2): nothing destructive before the image is durably stored. Until then a
      // failure leaves the device as it was, so the request is refused, not failed.
      savingImage: {
        entry: [
          { type: "announce", params: { state: "savingImage" } },
          { type: "enterPhase", params: { phase: "savingImage" } },
          { type: "runStep", params: ({ context }) => stepCall("savingImage", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.saveImage": {
            target: "persistingImage",
            actions: assign(({ context, event }) => runWith(context, { pendingImage: event.output.image })),
          },
          "failed.saveImage": {
            target: "refused",
            actions: {
              type: "refuse",
              params: ({ event }) => ({
                reason: "save-failed",
                message: `image not saved: ${errorOf(event.error).message}`,
              }),
            },
          },
        },
      },

      persistingImage: {
        entry: [
          { type: "announce", params: { state: "persistingImage" } },
          { type: "enterPhase", params: { phase: "persistingImage" } },
          { type: "runStep", params: ({ context }) => stepCall("persistingImage", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.persistImage": {
            target: "regating",
            actions: [
              assign(({ context, event }) => ({
                image: event.output,
                ...runWith(context, { persisted: true, pendingImage: null }),
              })),
              emit(({ context, event }) => ({
                ...base(context),
                type: "image.persisted" as const,
                image: event.output,
              })),
            ],
          },
          "failed.persistImage": {
            target: "refused",
            actions: {
              type: "refuse",
              params: ({ event }) => ({
                reason: "persist-failed",
                message: `image not persisted: ${errorOf(event.error).message}`,
              }),
            },
          },
        },
      },

      // Gates again, under the lease, on freshly read facts (holders open the device, siblings appear). It sits
      // right before the first step that changes the device (quiesce: Bus Master off, cache write-back, which
      // begins the reset sequence), so a refusal here still leaves the device exactly as it was.
      regating: {
        entry: [
          { type: "announce", params: { state: "regating" } },
          { type: "enterPhase", params: { phase: "regating" } },
          { type: "runStep", params: ({ context }) => stepCall("regating", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.recheckGates": [
            {
              guard: ({ context, event }) =>
                context.run.persisted && regate(context.plan!, event.output, clock.now()) === null,
              target: "quiescing",
              actions: assign({ facts: ({ event }) => event.output }),
            },
            {
              target: "refused",
              actions: assign({
                facts: ({ event }) => event.output,
                refusal: ({ context, event }) =>
                  regate(context.plan!, event.output, clock.now()) ??
                  refusalOf(context, context.request!, "persist-failed", "the image is not persisted"),
              }),
            },
          ],
          "failed.recheckGates": {
            target: "refused",
            actions: {
              type: "refuse",
              params: ({ event }) => ({
                reason: "regate-failed",
                message: `gates could not be re-checked: ${errorOf(event.error).message}`,
              }),
            },
          },
        },
      },

      // From here on the device is being changed: a failure goes to `failed` (restore from the image).
      quiescing: {
        entry: [
          { type: "announce", params: { state: "quiescing" } },
          { type: "enterPhase", params: { phase: "quiescing" } },
          { type: "runStep", params: ({ context }) => stepCall("quiescing", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.quiesceDevice": "resetting",
          "failed.quiesceDevice": {
            target: "failed",
            actions: { type: "recordError", params: ({ event }) => errorOf(event.error) },
          },
        },
      },

      resetting: {
        entry: [
          { type: "announce", params: { state: "resetting" } },
          { type: "enterPhase", params: { phase: "resetting" } },
          assign(({ context }) => runWith(context, { resetStarted: true })),
          emit(({ context }) => ({
            ...base(context),
            type: "reset.started" as const,
            scope: context.plan!.scope,
            method: context.plan!.method,
            targets: context.plan!.targets,
            memClear: context.plan!.memClear,
          })),
          { type: "runStep", params: ({ context }) => stepCall("resetting", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.resetDevice": {
            target: "awaitingReady",
            actions: [
              assign(({ context }) => runWith(context, { resetCompleted: true })),
              emit(({ context }) => ({
                ...base(context),
                type: "reset.completed" as const,
                scope: context.plan!.scope,
                method: context.plan!.method,
              })),
            ],
          },
          "failed.resetDevice": {
            target: "failed",
            actions: { type: "recordError", params: ({ event }) => errorOf(event.error) },
          },
        },
      },

      awaitingReady: {
        entry: [
          { type: "announce", params: { state: "awaitingReady" } },
          { type: "enterPhase", params: { phase: "awaitingReady" } },
          { type: "runStep", params: ({ context }) => stepCall("awaitingReady", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.awaitReady": "restoring",
          "failed.awaitReady": {
            target: "failed",
            actions: { type: "recordError", params: ({ event }) => errorOf(event.error) },
          },
        },
      },

      // io: PCI config state only. full (and every repair): PCI config, DVSEC Control and Range Base, HDM
      // Global Control; the decoders follow in committingDecoders.
      restoring: {
        entry: [
          { type: "announce", params: { state: "restoring" } },
          { type: "enterPhase", params: { phase: "restoring" } },
          { type: "runStep", params: ({ context }) => stepCall("restoring", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.restoreDevice": [
            { guard: "restoringFullScope", target: "committingDecoders" },
            { target: "verifying" },
          ],
          "failed.restoreDevice": {
            target: "failed",
            actions: { type: "recordError", params: ({ event }) => errorOf(event.error) },
          },
        },
      },

      // Decoders 0..n-1, each committed and polled before the next; then CONFIG_LOCK if it was set, clear
      // Disable Caching, and the saved Command register last (reset-rules step 5).
      committingDecoders: {
        entry: [
          { type: "announce", params: { state: "committingDecoders" } },
          { type: "enterPhase", params: { phase: "committingDecoders" } },
          { type: "runStep", params: ({ context }) => stepCall("committingDecoders", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.commitDecoders": {
            target: "verifying",
            actions: enqueueActions(({ context, event, enqueue }) => {
              for (const decoder of event.output.decoders) {
                enqueue.emit({ ...base(context), type: "decoder.committed", decoder });
              }
            }),
          },
          "failed.commitDecoders": {
            target: "failed",
            actions: { type: "recordError", params: ({ event }) => errorOf(event.error) },
          },
        },
      },

      // Read back. Only a pass reported by the agent with no mismatch counts (never success without read-back).
      verifying: {
        entry: [
          { type: "announce", params: { state: "verifying" } },
          { type: "enterPhase", params: { phase: "verifying" } },
          { type: "runStep", params: ({ context }) => stepCall("verifying", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.verifyDevice": [
            {
              // A repaired scope violation that reaches the policy's threshold quarantines the device.
              guard: ({ context, event }) =>
                verifyPassed(event.output) &&
                context.run.repairing &&
                context.scopeViolations >= policy.scopeViolationQuarantineThreshold,
              target: "returning",
              actions: [
                emit(({ context, event }) => ({
                  ...base(context),
                  type: "verify.passed" as const,
                  scope: context.run.restoreScope,
                  round: context.run.round,
                  result: event.output,
                })),
                assign({
                  outcome: "quarantined" as const,
                  quarantineReason: ({ context }) =>
                    `${context.scopeViolations} scope violation(s): io-scope resets changed CXL state (threshold ${policy.scopeViolationQuarantineThreshold})`,
                }),
              ],
            },
            {
              guard: ({ event }) => verifyPassed(event.output),
              target: "returning",
              actions: [
                emit(({ context, event }) => ({
                  ...base(context),
                  type: "verify.passed" as const,
                  scope: context.run.restoreScope,
                  round: context.run.round,
                  result: event.output,
                })),
                // A reset that errored but whose device was restored and read back: the request failed, the
                // device is back to its image.
                assign({
                  outcome: ({ context }) =>
                    (context.run.resetCompleted ? "verified" : "failed") as "verified" | "failed",
                }),
              ],
            },
            {
              guard: ({ context, event }) => isScopeViolation(context, event.output),
              target: "repairing",
              actions: [
                emit(({ context, event }) => ({
                  ...base(context),
                  type: "verify.failed" as const,
                  scope: context.run.restoreScope,
                  round: context.run.round,
                  mismatches: event.output.mismatches,
                })),
                assign({ mismatches: ({ event }) => event.output.mismatches }),
              ],
            },
            {
              target: "failed",
              actions: [
                emit(({ context, event }) => ({
                  ...base(context),
                  type: "verify.failed" as const,
                  scope: context.run.restoreScope,
                  round: context.run.round,
                  mismatches: event.output.mismatches,
                })),
                assign({
                  mismatches: ({ event }) => event.output.mismatches,
                  lastError: ({ context, event }) => ({
                    phase: "verifying",
                    kind: "verify-mismatch",
                    message:
                      event.output.mismatches.length === 0
                        ? `verify (${context.run.restoreScope}) did not pass`
                        : `verify (${context.run.restoreScope}) mismatches: ${event.output.mismatches.map((m) => m.field).join(", ")}`,
                  }),
                }),
              ],
            },
          ],
          "failed.verifyDevice": {
            target: "failed",
            actions: { type: "recordError", params: ({ event }) => errorOf(event.error) },
          },
        },
      },

      // io reset changed CXL state: publish it, count it against the device, and repair by the full-scope
      // restore + verify of the saved image (reset-rules io step 5).
      repairing: {
        entry: [
          { type: "announce", params: { state: "repairing" } },
          assign(({ context }) => ({
            scopeViolations: context.scopeViolations + 1,
            ...runWith(context, { restoreScope: "full", round: context.run.round + 1, repairing: true }),
          })),
          emit(({ context }) => ({
            ...base(context),
            type: "scope.violation" as const,
            fields: context.mismatches.filter((m) => m.area !== "pci"),
            count: context.scopeViolations,
          })),
        ],
        always: "restoring",
      },

      // A step after the image was persisted failed (error, mismatch, or agent silent past its deadline):
      // retry the restore from the image (policy.restoreRetries), then quarantine.
      failed: {
        entry: { type: "announce", params: { state: "failed" } },
        always: [
          {
            guard: "canRetryRestore",
            target: "restoring",
            actions: [
              emit(({ context }) => ({
                ...base(context),
                type: "step.failed" as const,
                phase: context.lastError?.phase ?? "unknown",
                error: {
                  kind: context.lastError?.kind ?? "internal",
                  message: context.lastError?.message ?? "",
                },
                willRetry: true,
              })),
              assign(({ context }) =>
                runWith(context, {
                  retries: context.run.retries + 1,
                  round: context.run.round + 1,
                  // A full reset (or a repair) wiped CXL state: only a full-scope restore brings it back.
                  restoreScope:
                    context.run.repairing || context.plan!.scope === "full"
                      ? "full"
                      : context.run.restoreScope,
                }),
              ),
            ],
          },
          {
            target: "returning",
            actions: [
              emit(({ context }) => ({
                ...base(context),
                type: "step.failed" as const,
                phase: context.lastError?.phase ?? "unknown",
                error: {
                  kind: context.lastError?.kind ?? "internal",
                  message: context.lastError?.message ?? "",
                },
                willRetry: false,
              })),
              assign({
                outcome: "quarantined" as const,
                quarantineReason: ({ context }) =>
                  `restore from the image failed ${context.run.retries + 1} time(s): ${context.lastError?.message ?? "unknown error"}`,
              }),
            ],
          },
        ],
      },

      // The refusal is said on the way out (concluding), once a driver taken for the reset is back.
      refused: {
        entry: [{ type: "announce", params: { state: "refused" } }, assign({ outcome: "refused" as const })],
        always: "returning",
      },

      // On the way out of a request: the driver taken for the reset goes back first (issue #17).
      returning: {
        always: [{ guard: "handsBack", target: "handingBack" }, { target: "concluding" }],
      },

      // The driver bound again, its driver_override put back, and the device read against its image with the
      // driver in place (verify twice). A driver that does not come back fails the request, with an event an
      // SRE can alert on; nothing else on the host is touched.
      handingBack: {
        entry: [
          { type: "announce", params: { state: "handingBack" } },
          { type: "enterPhase", params: { phase: "handingBack" } },
          { type: "runStep", params: ({ context }) => stepCall("handingBack", context) },
        ],
        exit: ["leavePhase", "stopStep"],
        on: {
          "done.handBackDriver": {
            target: "concluding",
            actions: [
              emit(({ context, event }) => ({
                ...base(context),
                type: "driver.rebound" as const,
                drivers: event.output.drivers,
                verify: event.output.verify,
              })),
              assign(({ context, event }): Partial<LifecycleContext> => {
                const v = event.output.verify;
                if (!v || v.passed || context.outcome !== "verified") return {};
                return {
                  outcome: "failed" as const,
                  lastError: {
                    phase: "handingBack",
                    kind: "verify-mismatch",
                    message: `with driver ${handoverText(event.output.drivers)} bound again the device differs from its image: ${v.mismatches.map((m: { field: string }) => m.field).join(", ")}`,
                  },
                };
              }),
            ],
          },
          "failed.handBackDriver": {
            target: "concluding",
            actions: [
              emit(({ context, event }) => ({
                ...base(context),
                type: "driver.rebind-failed" as const,
                drivers: context.plan!.handover!,
                error: { kind: errorOf(event.error).kind, message: errorOf(event.error).message },
              })),
              assign(({ context, event }) => ({
                outcome: context.outcome === "verified" ? ("failed" as const) : context.outcome,
                lastError: {
                  phase: "handingBack",
                  kind: errorOf(event.error).kind,
                  message: `driver ${handoverText(context.plan!.handover!)} not bound again: ${errorOf(event.error).message}`,
                },
              })),
            ],
          },
        },
      },

      /** The outcome, once the driver is back, then the lease and slots go back. */
      concluding: {
        entry: "announceOutcome",
        always: [{ guard: "leaseHeld", target: "releasing" }, { target: "ready" }],
      },

      // Give back the lease and slots; the coordinator records the outcome (budget, breaker, quarantine).
      // A release that fails is not fatal: the lease expires by its TTL.
      releasing: {
        tags: [UNSTORED],
        entry: [
          { type: "announce", params: { state: "releasing" } },
          { type: "enterPhase", params: { phase: "releasing" } },
          { type: "runStep", params: ({ context }) => stepCall("releasing", context) },
        ],
        exit: ["leavePhase", assign(({ context }) => runWith(context, { leaseHeld: false })), "stopStep"],
        on: {
          "done.releaseDevice": [
            { guard: "outcomeIsQuarantine", target: "quarantined" },
            { target: "ready" },
          ],
          "failed.releaseDevice": [
            { guard: "outcomeIsQuarantine", target: "quarantined" },
            { target: "ready" },
          ],
        },
      },

      /** No new reset until an operator releases the device; then it is probed afresh. */
      quarantined: {
        tags: [REST],
        entry: [{ type: "announce", params: { state: "quarantined" } }, "rest"],
        on: {
          RESET_REQUESTED: { actions: { type: "refuseArrival", params: { reason: "quarantined" } } },
          RELEASE: {
            target: "probing",
            actions: [
              emit(({ context, event }) => ({
                ...base(context, null),
                type: "released" as const,
                operator: event.operator,
                reason: event.reason,
              })),
              assign({ scopeViolations: 0, quarantineReason: null }),
            ],
          },
          RELEASE_FAILED: { actions: assign({ quarantineReason: ({ event }) => event.reason }) },
        },
      },
    },
  });
}

/** The machine on the system clock; the coordinator adds its steps with machine.provide({ actions: stepActions(…) }). */
export const lifecycleMachine = createLifecycleMachine();
export type LifecycleMachine = ReturnType<typeof createLifecycleMachine>;
