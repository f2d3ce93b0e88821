// The lifecycle machine's effects, backed by NATS: each named step of machines/lifecycle.ts calls the host
// agent (cxlrc.agent.<host>.<op>, idempotent by opId), the KV store or the fleet guard state. Built once per
// coordinator and provided once (machine.provide({ actions: stepActions(effects) }), machines/steps.ts): an
// effect learns everything about its step from its input
// (device, operation id, time budget, plan fields) and finds the device's runtime hooks (write-ahead persist,
// lease, recovery flag) by the device key; it never reads the machine's context.
//
// Time budgets: the machine declares one per phase (input.timeoutMs); the step wrapper counts it from when the
// step starts running, after its write-ahead barrier, so a coordinator's own queueing never fails a device.
//
// Write-ahead before the device changes (a step stored "ahead", StepRules): quiescing, the first step that changes it, waits until
// the snapshot naming it is durably stored, with the image already in the store: a coordinator that takes the
// device over never finds a snapshot from before the decision to reset. The request's first step (gating) runs
// beside the write that stores the request (stored "along"). Every later step rides along with the next write (the
// rest state's, which carries the outcome): an owner that resumes from the decision repeats the steps after it,
// each idempotent by its operation id (the agent's reply cache and its reset journal: never a second reset) or
// by design (a restore decommits first, a verify reads). A plan that took a driver away also stores its
// snapshot before it binds the driver again (handingBack, once the reset was begun): an owner that resumes
// after the hand-back never restores under a bound driver. A step that runs again after a restore (the runtime
// sends RESUME_STEP to an actor restored in a step's state) re-reads the device where repeating it blindly would
// be wrong (the reset itself).

import type { NatsConnection } from "@nats-io/transport-node";
import { nuid } from "@nats-io/transport-node";
import type { DeviceFacts } from "../../../machines/facts.ts";
import type {
  AcquireInput,
  AcquireOutput,
  AwaitReadyInput,
  BindInput,
  CommitInput,
  CommitOutput,
  CommittedDecoder,
  HandBackInput,
  HandBackOutput,
  ImageRef,
  PersistInput,
  ProbeInput,
  QuiesceInput,
  RecheckInput,
  ReleaseInput,
  ResetInput,
  RestoreInput,
  SaveInput,
  SaveOutput,
  VerifyInput,
  VerifyMismatch,
  VerifyResult,
} from "../../../machines/lifecycle-types.ts";
import type { Policy } from "../../../machines/policy/defaults.ts";
import { resetsAlone } from "../../../machines/policy/plan.ts";
import type { Refusal } from "../../../machines/policy/types.ts";
import type { StepEffects, StepStop } from "../../../machines/steps.ts";
import type {
  AgentFeature,
  AgentResult,
  VerifyResult as AgentVerify,
  InventoryResult,
  RestoreResult,
} from "../../../shared/bus/agent-contract.ts";
import type { Scope } from "../../../shared/bus/agent-messages.ts";
import type { AgentCallParams } from "../../../shared/bus/client.ts";
import { errorFromBody } from "../../../shared/bus/codec.ts";
import { deadlineCheck } from "../../../shared/bus/deadline-check.ts";
import { type AgentOp, deviceKey } from "../../../shared/bus/subjects.ts";
import { CxlrcError, isCxlrcError } from "../../../shared/errors.ts";
import type { Logger } from "../../../shared/log.ts";
import { remember } from "../../../shared/remember.ts";
import { backoffDelay, retry } from "../../../shared/retry.ts";
import type { AgentLink } from "../agent-link.ts";
import type { FleetStore } from "../fleet-state.ts";
import { isNotHeld, type Lease, notHeld } from "../leases.ts";
import { factsFromProbe } from "../probe-facts.ts";
import type { CoordinatorStore, ImageRecord } from "../store.ts";
import { NEVER_STOPS, type StepGate, type StopFlag, withBudget } from "./step-budget.ts";

/** What the hand-back reads of a stored image: the driver_override it found. */
type ImageLike = { driver?: { override?: string | null } };

/** Test hook: called around every step's effect, so a test can stop a coordinator at an exact point. */
export type StepHook = (
  phase: string,
  point: "before" | "after",
  info: { host: string; bdf: string; requestId: string | null; opId: string },
) => Promise<void> | void;

/** The runtime's hooks for one device's actor (never its context: what a step needs is in its input). */
export interface DeviceAccess {
  /**
   * Store the latest snapshot and the events emitted so far, and wait for the acknowledgements (with
   * `namedEnough`: not for events the stored record names, which whoever takes it over sends again).
   */
  persist(opts?: { namedEnough?: boolean }): Promise<void>;
  /** Resolves when the device may run its step (one taken over waits for its recovery pass's claims). */
  resumed(): Promise<void>;
  /** True once, for the first step run in `phase` after the actor was restored from a snapshot in it. */
  takeRecovery(phase: string): boolean;
  /** What takeRecovery(phase) would answer, without taking it. */
  recovering(phase: string): boolean;
  /** The device lease, while held. */
  lease(): Lease | null;
  /** The lease is still ours right now (renewed recently, or renewed on the spot): safe to act. */
  confirmLease(): Promise<boolean>;
  /**
   * Run `release` once the device's latest outcome is acknowledged on the stream (at once when none waits),
   * or when the device is given up here first.
   */
  afterOutcome(release: () => Promise<void>): void;
  /**
   * Stop driving the device here (its actor stopped, its lease given back): its stored record is the truth, and
   * whoever holds the device next continues it from there.
   */
  letGo(why: string): void;
}

/** Finds a device's hooks by key (deviceKey(host, bdf)); undefined once the device is not driven here. */
export type DeviceDirectory = (key: string) => DeviceAccess | undefined;

export interface AgentActorDeps {
  nc: NatsConnection;
  /** Agent calls, and the agent events believed for the operations issued through it. */
  link: AgentLink;
  store: CoordinatorStore;
  fleet: FleetStore;
  coordinatorId: string;
  policy: Policy;
  log: Logger;
  now: () => number;
  /** The host's inventory (cached briefly by the caller). */
  inventory(host: string, fresh?: boolean): Promise<InventoryResult>;
  /** The features of the host's agent (shared/bus/agent-contract.ts AGENT_FEATURES); default: its inventory's. */
  agentFeatures?(host: string): Promise<ReadonlySet<string>>;
  hook?: StepHook;
  /** The runtime's one step gate: steps (agent calls, stores) beyond its limit queue before their budget starts. */
  gate: StepGate;
}

const MAX_OP_ID = 128;
/** Operation id of one target of a multi-function step (stable: the plan's target order is fixed). */
export function targetOpId(opId: string, index: number, count: number): string {
  if (count <= 1) return opId;
  const id = `${opId}#${index}`;
  return id.length <= MAX_OP_ID ? id : `${opId.slice(0, MAX_OP_ID - 4)}#${index}`;
}
/** A read that must really happen now (never answered from the agent's cache). */
const freshOpId = (opId: string, what: string) => `${opId.slice(0, 80)}/${what}/${nuid.next()}`;

function stale(phase: string): CxlrcError {
  return notHeld(`${phase}: this step is no longer current (lease lost or state left)`);
}

/**
 * How a step meets the store and the step gate, declared with the step (createAgentActors).
 *
 * `store: "ahead"`: its snapshot is stored before it starts (only for the inputs `storeWhen` accepts, when
 * given). Quiescing is the last step before the device changes: the image is stored by then (persistingImage),
 * and its snapshot is the decision to reset (an owner that resumes from it quiesces again and resets under the
 * same operation id). Handing back after a reset: the device is restored and read back; an owner that resumes
 * from there binds the driver again (idempotent) instead of repeating the reset's steps under it (a request
 * refused before its reset has no such steps to repeat).
 *
 * `store: "along"`: its snapshot is written while it runs (started before the step's work, waited for when it
 * ends). Gating: a request's first step ends only once the request is stored (the write its dispatch makes
 * anyway), so nothing that touches the device runs for a request a crash would deliver again; its grant (the
 * device's attempt budget, counted once per request id, and the slots its dispatch took) is idempotent, so it
 * runs beside that write.
 *
 * No `store`: the step rides along with the next write. The steps after the decision (reset, restore, commit,
 * verify) write nothing of their own: their events go out with the outcome's write (or one of their own after
 * HOLD_MS, runtime/outbox.ts). An owner that resumes from the quiescing snapshot repeats the reset's operation
 * id (quiescing again first where the plan has other functions), which the agent answers with the first reply
 * (its reset journal, kept on disk: never a second reset). One that resumes from "resetting" (stored by such a
 * write while a reset ran long) reads the device first (resetDevice, takeRecovery): wiped, the reset happened
 * and the restore runs (again: idempotent, decommit first, then write and commit in order); intact, the reset
 * goes out under its operation id, and an agent that ran it (and the restore in it) answers with its first
 * reply.
 *
 * `namedEnough`: the write needs the snapshot stored, not its events acknowledged (gating only needs the request
 * stored: its dispatch wrote it, naming the request's first events, which a new owner sends again).
 *
 * `gated`: the step calls the agent and queues at the step gate (at most MAX_RUNNING_STEPS at once). Gating,
 * persisting the image and releasing only touch the store, and gating may wait for a host slot that a release
 * frees: they never queue behind agent work. A function: gated when it says so, asked as the step's work is about
 * to start; a step whose answer an earlier operation already brought (the restore, commit and verify a device
 * reset alone ran in its reset's operation) calls nothing, and does not queue behind the steps that do.
 */
interface StepRules<I> {
  store?: "ahead" | "along";
  storeWhen?: (input: I) => boolean;
  namedEnough?: boolean;
  gated?: boolean | ((input: I, access: DeviceAccess) => boolean);
}

const GATED = { gated: true } as const;

/**
 * How long a step reads an image again while the images bucket does not answer (a NATS node lost: its streams
 * elect new leaders, which a restarted 2.9.10 node has been seen to take 10-15 s to serve).
 */
const IMAGE_READ_MS = 30_000;

/** A wait for the bus's store or lease bucket, left out of the step's budget (StopFlag.outside). */
function bus<T>(signal: StopFlag, p: Promise<T>): Promise<T> {
  return signal.outside ? signal.outside(p) : p;
}

/** Decoders committed by a full restore, kept for the commit step that reports them (bounded). */
const COMMITTED_KEPT = 4096;
/** Reads made early (regate probe, a reset's answering functions, a restore's verify), kept for their step. */
const EARLY_KEPT = 4096;

/** The decoders a restore left committed (written now, retained through the reset, or kept as they were). */
function committedOf(bdf: string, r: RestoreResult): CommittedDecoder[] {
  return r.decoders
    .filter((d) => d.action === "committed" || d.action === "retained" || d.action === "kept")
    .map((d) => ({ bdf, index: d.index, retained: d.action === "retained" }));
}

/** What a reset's operation says of the restore it ran after the reset (ResetResult.restore). */
type RestoredAtReset = NonNullable<AgentResult<"reset">["restore"]>;

/** Agent verify mismatches (register + field, domain) as the machine's VerifyMismatch. */
function mismatchesOf(bdf: string, r: AgentVerify): VerifyMismatch[] {
  return r.mismatches.map((m) => ({
    bdf,
    field: `${m.register}.${m.field}`,
    area: m.domain,
    expected: m.expected,
    actual: m.actual,
  }));
}

/**
 * The regate reads the host's inventory afresh only for a plan with other functions than the device: their
 * holders (drivers, memory) come from it (policy/gates.ts deviceBusyGate); the device's own come from its
 * probe, and so do the functions below its bridge (siblingGate).
 */
export function regateNeedsInventory(bdf: string, targets: readonly string[]): boolean {
  return targets.some((t) => t !== bdf);
}

/** Did the reset of this plan already happen? Judged from the device against the persisted image. */
export function resetHappened(scope: Scope, mismatches: VerifyMismatch[]): boolean {
  // FLR and SBR clear the BARs; CXL Reset and SBR clear the HDM decoders and HDM Global Control. Quiesce
  // changes neither (Bus Master is in pci.command, Disable Caching in DVSEC Control2), so they are not counted.
  return mismatches.some(
    (m) => /^pci\.bar\d\./.test(m.field) || (scope === "full" && /^(decoder\d+|hdm)\./.test(m.field)),
  );
}

export function createAgentActors(deps: AgentActorDeps, directory: DeviceDirectory): StepEffects {
  const { store, policy, gate } = deps;
  /** A step's budget is spent once the server confirms nothing it sent in time is still unread here. */
  const busClock = deadlineCheck(deps.nc);
  const agentFeatures =
    deps.agentFeatures ?? (async (host: string) => new Set((await deps.inventory(host)).features ?? []));
  /** Host and feature pairs whose agent was found without the feature this coordinator would use (said once each). */
  const olderAgents = new Set<string>();
  /** What the coordinator does instead of a feature the host's agent lacks. */
  const WITHOUT: Record<AgentFeature, string> = {
    "reset.restore":
      "the host's agent does not restore in the reset (an older agent): the restore goes separately",
    "save.probe":
      "the host's agent does not read the device in the save (an older agent): the read goes separately",
  };
  /** The host's agent lacks `feature`: logged once per host and feature. */
  const olderAgent = (dev: Step, feature: AgentFeature) => {
    const key = `${dev.host} ${feature}`;
    if (olderAgents.has(key)) return;
    olderAgents.add(key);
    dev.log.info({ host: dev.host, feature }, WITHOUT[feature]);
  };
  /**
   * `err` is the host's agent refusing `field` (a feature's: the agent was replaced by an older one since its
   * last inventory). It refused before doing anything, so the caller sends the operation again without the field;
   * said once, and the host's inventory (its features with it) is read afresh.
   */
  const refusedFeature = (dev: Step, err: unknown, field: string, feature: AgentFeature): boolean => {
    if (!(isCxlrcError(err) && err.kind === "bad-input" && err.message.includes(`"${field}"`))) return false;
    olderAgent(dev, feature);
    void deps.inventory(dev.host, true).catch(() => undefined);
    return true;
  };
  /** Decoders committed by a full restore, by device/request/round: committingDecoders reports them. */
  const committed = new Map<string, CommittedDecoder[]>();
  /**
   * Reads of the device started early, taken by the step that needs them (in memory only: a step run after a
   * takeover finds none and reads the device itself): the regate's probe, started with the image write that
   * precedes it (by device and request); the functions a reset's own polling saw answer (by device and
   * request); the verify a single-function restore ran in the same operation (by device, request, round and
   * image).
   */
  const regates = new Map<string, Promise<DeviceFacts>>();
  const answered = new Map<string, string[]>();
  const verifiedAtRestore = new Map<string, AgentVerify>();
  /** The restore a one-function reset ran in its own operation (by device, request, round and image). */
  const restoredAtReset = new Map<string, RestoredAtReset>();
  const requestKey = (input: { host: string; bdf: string; requestId: string }) =>
    `${deviceKey(input.host, input.bdf)}|${input.requestId}`;
  const roundKey = (input: { host: string; bdf: string; requestId: string; round: number }) =>
    `${deviceKey(input.host, input.bdf)}|${input.requestId}|${input.round}`;
  const imageRoundKey = (
    input: { host: string; bdf: string; requestId: string; round: number },
    ref: ImageRef,
  ) => `${roundKey(input)}|${ref.key}@${ref.revision}`;

  /** What one running step works with: its device, and the device's hooks. */
  interface Step {
    host: string;
    bdf: string;
    key: string;
    dev: DeviceAccess;
    log: Logger;
  }

  const agent = <Op extends AgentOp>(
    dev: Step,
    op: Op,
    opId: string,
    params: AgentCallParams<Op>,
    timeoutMs: number,
    signal: StopFlag,
  ): Promise<AgentResult<Op>> => {
    if (signal.aborted) return Promise.reject(stale(op));
    // A coordinator stopped (SIGSTOP, long pause) past its lease must not act on the device it lost.
    // The lease bucket's time (a renewal in flight, a leader being elected) is not the agent's: outside the budget.
    return bus(signal, dev.dev.confirmLease()).then((ok) => {
      if (!ok || signal.aborted) throw stale(op);
      // Under the device's lease: every target function's operation carries that lease's fencing epoch.
      return deps.link.call(dev.host, op, opId, params, {
        timeoutMs,
        leaseKey: dev.key,
        // The agent absent (restarting) or frozen (no reply, no answer to its ping): waited for within the step's
        // grace, not counted against the call.
        ...(signal.extend ? { absent: (ms: number) => signal.extend!(ms) } : {}),
      });
    });
  };

  /**
   * Every step: its write (StepRules: before it, or beside it), hooks, its time budget, its turn at the step
   * gate, and a check that it is still current before and after. The budget (input.timeoutMs) starts when the
   * step itself starts: after its snapshot is stored.
   */
  const step =
    <I extends { opId: string; host: string; bdf: string; timeoutMs: number; requestId?: string }, O>(
      phase: string,
      run: (input: I, signal: StopFlag, dev: Step) => Promise<O>,
      rules: StepRules<I> = {},
    ) =>
    async (input: I, signal: StepStop): Promise<O> => {
      const key = deviceKey(input.host, input.bdf);
      const access = directory(key);
      if (!access) throw stale(phase);
      let log: Logger | undefined;
      const dev: Step = {
        host: input.host,
        bdf: input.bdf,
        key,
        dev: access,
        // Made when the step logs (most never do): a pino child per step costs more than the step's own work.
        get log() {
          log ??= deps.log.child({ host: input.host, bdf: input.bdf });
          return log;
        },
      };
      const info = { host: input.host, bdf: input.bdf, requestId: input.requestId ?? null, opId: input.opId };
      // The step's operation id is issued to the host from now on: the agent's events for it are believed.
      const done = deps.link.issue(input.host, input.opId);
      const t0 = performance.now();
      try {
        await access.resumed();
        if (signal.aborted) throw stale(phase);
        const namedEnough = rules.namedEnough === true;
        if (rules.store === "ahead" && (rules.storeWhen?.(input) ?? true))
          await access.persist({ namedEnough });
        if (signal.aborted) throw stale(phase);
        const tReady = performance.now();
        // Caught here and rethrown after the call: a write that fails (lease lost, CAS lost) fails the step.
        const along =
          rules.store === "along"
            ? access.persist({ namedEnough }).then(
                () => null,
                (err: unknown) => err,
              )
            : null;
        await deps.hook?.(phase, "before", info);
        if (signal.aborted) throw stale(phase);
        const work = () =>
          withBudget(
            phase,
            input.timeoutMs,
            signal,
            (budget) => run(input, budget, dev),
            (passedAt) => busClock.confirm(passedAt, input.timeoutMs),
            policy.agentAbsentGraceMs,
          );
        const gated = typeof rules.gated === "function" ? rules.gated(input, access) : rules.gated === true;
        const out = gated ? await gate.run(signal, work) : await work();
        const tRan = performance.now();
        const alongErr = along ? await along : null;
        if (alongErr) throw alongErr;
        await deps.hook?.(phase, "after", info);
        if (signal.aborted || !(await access.confirmLease())) throw stale(phase);
        // Where a step's time went: waiting to start (a takeover's hold, its write-ahead), its own work (agent
        // calls, store), and the write along it still running when the work ended.
        if (deps.log.isLevelEnabled("debug")) {
          const ms = (a: number, b: number) => Math.round((b - a) * 100) / 100;
          const tEnd = performance.now();
          dev.log.debug(
            {
              phase,
              requestId: info.requestId,
              opId: input.opId,
              waitMs: ms(t0, tReady),
              runMs: ms(tReady, tRan),
              writeMs: ms(tRan, tEnd),
            },
            "step done",
          );
        }
        return out;
      } catch (err) {
        // Failed because this coordinator may not act on the device (its lease not held here, for a moment or
        // for good): not the device's failure. The machine never takes it (a NATS node lost for a lease time
        // must not send a healthy device down the failure path, to quarantine); the device is let go, and the
        // stored record is continued by whoever holds the device next, here or on a peer. A step whose state
        // was left is over anyway.
        if (isNotHeld(err) && !signal.aborted) access.letGo(`${phase}: ${(err as Error).message}`);
        throw err;
      } finally {
        done();
      }
    };

  const probe = async (dev: Step, opId: string, bdf: string, signal: StopFlag, freshInventory = false) => {
    const [p, inv] = await Promise.all([
      // Brief: planning reads the facts, never the decoded registers (four fifths of a full result).
      agent(dev, "probe", opId, { bdf, brief: true }, policy.agentCallTimeoutMs, signal),
      deps.inventory(dev.host, freshInventory).catch(() => null),
    ]);
    return factsFromProbe(dev.host, p, inv);
  };

  /**
   * A function's image of a stored revision, which a step sends its agent: from the store, which keeps the
   * revisions it wrote or read lately in this process. Waited for outside the step's budget (the store's time
   * is not the agent's), and read again while the images bucket does not answer (a leader elected after a NATS
   * node was lost), for up to IMAGE_READ_MS: a healthy device is not sent down the failure path, to
   * quarantine, because the bus could not hand its image over for a moment.
   */
  const imageOf = async (ref: ImageRef, bdf: string, signal: StopFlag): Promise<unknown> => {
    const rec = await bus(signal, readImage(ref, signal));
    if (!rec) {
      throw new CxlrcError("internal", `image ${ref.key} revision ${ref.revision} is not in the store`, {
        key: ref.key,
        revision: ref.revision,
      });
    }
    const img = rec.images[bdf];
    if (img === undefined) {
      throw new CxlrcError("internal", `image ${ref.key}@${ref.revision} has no image of ${bdf}`, { bdf });
    }
    return img;
  };

  const readImage = (ref: ImageRef, signal: StopFlag) =>
    retry(() => store.getImageRevision(ref.key, ref.revision), {
      deadlineMs: IMAGE_READ_MS,
      baseMs: 100,
      maxMs: 1000,
      jitter: "equal",
      // A record that does not decode stays so; a store that does not answer may answer the next read.
      retryIf: (err) => !signal.aborted && !(isCxlrcError(err) && err.kind === "decode"),
    });

  const verifyAll = async (
    dev: Step,
    opId: string,
    targets: string[],
    scope: Scope,
    ref: ImageRef,
    signal: StopFlag,
  ): Promise<VerifyResult> => {
    const mismatches: VerifyMismatch[] = [];
    let passed = true;
    for (const [i, bdf] of targets.entries()) {
      const r = (await agent(
        dev,
        "verify",
        targetOpId(opId, i, targets.length),
        { bdf, scope, image: await imageOf(ref, bdf, signal) },
        policy.verifyTimeoutMs,
        signal,
      )) as AgentVerify;
      passed &&= r.passed;
      mismatches.push(...mismatchesOf(bdf, r));
    }
    return { passed, mismatches };
  };

  const restoreAll = async (
    dev: Step,
    opId: string,
    targets: string[],
    scope: Scope,
    ref: ImageRef,
    signal: StopFlag,
    /** One function: the agent verifies it in the same operation, and the result is kept here under this key. */
    verifyAs?: string,
  ): Promise<CommittedDecoder[]> => {
    const decoders: CommittedDecoder[] = [];
    const andVerify = verifyAs !== undefined && targets.length === 1;
    for (const [i, bdf] of targets.entries()) {
      const r = (await agent(
        dev,
        "restore",
        targetOpId(opId, i, targets.length),
        { bdf, scope, image: await imageOf(ref, bdf, signal), ...(andVerify ? { verify: true } : {}) },
        policy.agentCallTimeoutMs + policy.verifyTimeoutMs * (andVerify ? 2 : 1),
        signal,
      )) as RestoreResult;
      if (andVerify) keepVerify(verifyAs, bdf, r);
      decoders.push(...committedOf(bdf, r));
    }
    return decoders;
  };

  /**
   * What an earlier operation of the round brought for a step that then only reports it (and asks nothing, so
   * it does not queue at the step gate): the restore a device reset alone ran in its reset's operation, and the
   * verify a one-function restore ran in its own. Undefined: the step asks the agent.
   */
  const restoreBrought = (input: RestoreInput) =>
    resetsAlone(input, input.bdf) ? restoredAtReset.get(imageRoundKey(input, input.image)) : undefined;
  const verifyBrought = (input: VerifyInput) => {
    const v = verifiedAtRestore.get(imageRoundKey(input, input.image));
    return v && input.targets.length === 1 && v.bdf === input.targets[0] ? v : undefined;
  };

  /** The verify a one-function restore ran in its operation, kept for the verifying step (under `verifyAs`). */
  const keepVerify = (verifyAs: string, bdf: string, r: RestoreResult) => {
    if (r.verify && r.verify.bdf === bdf) remember(verifiedAtRestore, verifyAs, r.verify, EARLY_KEPT);
  };

  return {
    /** Binding the actor to the device: the device must be in the host's inventory (no driver change). */
    bindDevice: step<BindInput, void>(
      "binding",
      async (input, signal) => {
        if (signal.aborted) throw stale("binding");
        const inv = await deps.inventory(input.host, true);
        if (!inv.devices.some((d) => d.functions.includes(input.bdf))) {
          throw new CxlrcError("device-absent", `no device ${input.bdf} on host ${input.host}`, {
            bdf: input.bdf,
          });
        }
      },
      GATED,
    ),

    probeDevice: step<ProbeInput, DeviceFacts>(
      "probing",
      (input, signal, dev) => probe(dev, freshOpId(input.opId, "probe"), input.bdf, signal, true),
      GATED,
    ),

    /** Slots, budget and breaker in one CAS on the fleet state, under the device lease. */
    acquireDevice: step<AcquireInput, AcquireOutput>(
      "gating",
      async (input, signal, dev) => {
        const lease = dev.dev.lease();
        const refusal = (
          reason: Refusal["reason"],
          message: string,
          retryAfterMs?: number,
        ): AcquireOutput => ({
          granted: false,
          refusal: {
            kind: "refusal",
            requestId: input.requestId,
            host: input.host,
            bdf: input.bdf,
            reason,
            message,
            details: {},
            ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
            gates: [],
          },
        });
        // Not this coordinator's to decide (the lease went between the step's check and here): no refusal it
        // could not store anyway; the device is let go, and whoever holds it next runs the gate.
        if (!lease || lease.lost) throw notHeld(`${input.bdf}: the device lease is not held here`);
        const claim = {
          requestId: input.requestId,
          host: input.host,
          switchId: input.switchId,
          key: dev.key,
          bdf: input.bdf,
          owner: deps.coordinatorId,
        };
        // A host or switch full of another coordinator's resets is waited for (a slot frees within a reset's
        // time), within most of the gating budget; the other guards refuse at once.
        const waitUntil = performance.now() + input.timeoutMs * 0.8;
        for (let n = 0; ; n++) {
          // The grant writes the device's attempt budget: the store's time (a bucket electing a leader after a
          // NATS node was lost) is not counted against gating; a store that fails refuses as before.
          const r = await bus(signal, deps.fleet.grant(claim, deps.now()));
          if (r.granted) return { granted: true };
          const busy = r.reason === "host-busy" || r.reason === "switch-busy";
          const delay = backoffDelay(n, { baseMs: 20, maxMs: 250 });
          if (!busy || performance.now() + delay >= waitUntil || signal.aborted) {
            return refusal(r.reason, r.message, r.retryAfterMs);
          }
          await new Promise((res) => setTimeout(res, delay));
        }
      },
      { store: "along", namedEnough: true },
    ),

    saveImage: step<SaveInput, SaveOutput>(
      "savingImage",
      async (input, signal, dev) => {
        const out: Record<string, unknown> = {};
        // The regate's read of a one-function plan goes out right behind the save (the agent runs a device's
        // operations in arrival order): its answer is in by the time the image is stored. A plan with other
        // functions reads the host inventory afresh too, beside the image write (persistImage).
        // Each function's driver in the plan is taken by that function's save (saved under it, then unbound).
        const params = (bdf: string) => {
          const driver = input.handover?.[bdf];
          return driver ? { bdf, handover: { driver } } : { bdf };
        };
        if (input.targets.length === 1 && input.targets[0] === input.bdf) {
          // An agent that offers it reads the device in the save's own operation ("save.probe"), right after
          // saving it; an older one is asked right behind the save, as a read of its own.
          let merged = (await agentFeatures(dev.host)).has("save.probe");
          if (!merged) olderAgent(dev, "save.probe");
          const save = () =>
            agent(
              dev,
              "save",
              input.opId,
              { ...params(input.bdf), ...(merged ? { probe: true } : {}) },
              policy.agentCallTimeoutMs,
              signal,
            );
          let saving = save();
          if (merged) {
            // Refused for the probe field: the save goes again without it, the read on its own (below).
            saving = saving.catch((err: unknown) => {
              if (!refusedFeature(dev, err, "probe", "save.probe")) throw err;
              merged = false;
              return save();
            });
          }
          // A save that brought no facts (an agent that refused the field, or a repeat answered after it ended)
          // leaves the read to a probe of its own.
          const early = merged
            ? saving.then(async (r) =>
                r.probe
                  ? factsFromProbe(dev.host, r.probe, await deps.inventory(dev.host).catch(() => null))
                  : probe(dev, freshOpId(input.opId, "regate"), input.bdf, NEVER_STOPS),
              )
            : probe(dev, freshOpId(input.opId, "regate"), input.bdf, NEVER_STOPS);
          early.catch(() => undefined);
          remember(regates, requestKey(input), early, EARLY_KEPT);
          // The facts read after the save are not part of the image (its checksum does not cover them).
          const { probe: _facts, ...image } = await saving;
          out[input.bdf] = image;
          return { image: { images: out } };
        }
        for (const [i, bdf] of input.targets.entries()) {
          out[bdf] = await agent(
            dev,
            "save",
            targetOpId(input.opId, i, input.targets.length),
            params(bdf),
            policy.agentCallTimeoutMs,
            signal,
          );
        }
        return { image: { images: out } };
      },
      GATED,
    ),

    /** The write-ahead itself: the image is in KV, acknowledged, before anything touches the device. */
    persistImage: step<PersistInput, ImageRef>("persistingImage", async (input, signal, dev) => {
      // The regate that follows reads the device: started now, beside the write (the device was saved),
      // unless the save sent it already.
      if (!regates.has(requestKey(input))) {
        const early = probe(
          dev,
          freshOpId(input.opId, "regate"),
          input.bdf,
          NEVER_STOPS,
          regateNeedsInventory(input.bdf, input.targets),
        );
        early.catch(() => undefined);
        remember(regates, requestKey(input), early, EARLY_KEPT);
      }
      const bundle = input.image as { images?: Record<string, unknown> } | null;
      if (!bundle?.images || Object.keys(bundle.images).length === 0) {
        throw new CxlrcError("internal", "no saved image to persist");
      }
      const base = {
        v: 1 as const,
        host: input.host,
        savedAt: new Date(deps.now()).toISOString(),
        requestId: input.requestId,
        opId: input.opId,
        coordinator: deps.coordinatorId,
      };
      // The other functions first (their own last known good state), the request's device last: its
      // revision is the reference the restore uses.
      for (const [bdf, image] of Object.entries(bundle.images)) {
        if (bdf === input.bdf) continue;
        if (signal.aborted) throw stale("persistingImage");
        await bus(signal, store.putImage({ ...base, bdf, images: { [bdf]: image } }, signal));
      }
      if (signal.aborted) throw stale("persistingImage");
      const record: ImageRecord = { ...base, bdf: input.bdf, images: bundle.images };
      // The store's time (its writes tried again while the images bucket elects a leader, up to its attempts)
      // is not the step's: nothing is touched before the image is stored, so waiting for it is safe.
      const revision = await bus(signal, store.putImage(record, signal));
      return { key: deviceKey(input.host, input.bdf), revision };
    }),

    recheckGates: step<RecheckInput, DeviceFacts>(
      "regating",
      async (input, signal, dev) => {
        const early = regates.get(requestKey(input));
        regates.delete(requestKey(input));
        // Restored into this step (a takeover): whatever this process read before is not this run's read.
        if (early && !dev.dev.takeRecovery("regating")) {
          try {
            return await early;
          } catch {
            // read again below: the error that counts is this step's own
          }
        }
        return probe(
          dev,
          freshOpId(input.opId, "regate"),
          input.bdf,
          signal,
          regateNeedsInventory(input.bdf, input.plan.targets),
        );
      },
      GATED,
    ),

    quiesceDevice: step<QuiesceInput, void>(
      "quiescing",
      async (input, signal, dev) => {
        // The device alone: its reset operation quiesces it (after this step's write-ahead, the decision).
        if (input.withReset) return;
        for (const [i, bdf] of input.targets.entries()) {
          await agent(
            dev,
            "quiesce",
            targetOpId(input.opId, i, input.targets.length),
            { bdf, scope: input.scope },
            policy.agentCallTimeoutMs + input.cacheFlushTimeoutMs,
            signal,
          );
        }
      },
      { store: "ahead", gated: true },
    ),

    resetDevice: step<ResetInput, void>(
      "resetting",
      async (input, signal, dev) => {
        answered.delete(requestKey(input));
        if (dev.dev.takeRecovery("resetting")) {
          // The snapshot says "resetting" but not whether the reset was issued: read the device. Wiped state
          // (or a device still not answering) means it was. Intact state means it was not, or that the restore
          // after it ran too (nothing after the decision writes a snapshot of its own): the reset goes out under
          // the same operation id, which an agent that ran it answers with its first reply, never a second reset.
          try {
            const check = await verifyAll(
              dev,
              freshOpId(input.opId, "recheck"),
              [input.bdf],
              input.scope,
              input.image,
              signal,
            );
            if (resetHappened(input.scope, check.mismatches)) {
              dev.log.info(
                { bdf: input.bdf, requestId: input.requestId },
                "recovery: the reset had happened; not repeating it",
              );
              return;
            }
            dev.log.info(
              { bdf: input.bdf, requestId: input.requestId },
              "recovery: the device is intact (not reset, or restored since); issuing the reset under its operation id",
            );
          } catch (err) {
            if (isCxlrcError(err) && (err.kind === "not-ready" || err.kind === "device-absent")) {
              dev.log.info({ bdf: input.bdf }, "recovery: the device is still in reset; not repeating it");
              return;
            }
            throw err;
          }
        }
        // The restore rides in the reset only where the host's agent offers it (an agent older than this
        // coordinator refuses the field): otherwise the restoring step restores, as for several functions.
        let restore =
          input.restore && (await agentFeatures(dev.host)).has("reset.restore") ? input.restore : null;
        if (input.restore && !restore) olderAgent(dev, "reset.restore");
        const call = async () =>
          agent(
            dev,
            "reset",
            input.opId,
            {
              bdf: input.bdf,
              method: input.method,
              ...(input.memClear ? { memClear: true } : {}),
              ...(input.quiesce ? { quiesce: { scope: input.scope } } : {}),
              ...(restore
                ? {
                    restore: {
                      scope: restore.scope,
                      image: await imageOf(input.image, input.bdf, signal),
                      verify: true,
                    },
                  }
                : {}),
            },
            policy.agentCallTimeoutMs +
              input.waitMs +
              policy.deviceReadyTimeoutMs +
              (input.quiesce?.cacheFlushTimeoutMs ?? 0) +
              (restore?.timeoutMs ?? 0),
            signal,
          );
        let done: Awaited<ReturnType<typeof call>>;
        try {
          done = await call();
        } catch (err) {
          // Refused for the restore field: the same operation goes again without it.
          if (!(restore && refusedFeature(dev, err, "restore", "reset.restore"))) throw err;
          restore = null;
          done = await call();
        }
        remember(answered, requestKey(input), done.reached, EARLY_KEPT);
        if (restore && done.restore) {
          const key = imageRoundKey({ ...input, round: restore.round }, input.image);
          remember(restoredAtReset, key, done.restore, EARLY_KEPT);
        }
      },
      GATED,
    ),

    /**
     * Until every target answers config reads (vendor id not all-ones). A probe is the read: it fails on the
     * vendor id while the function is not ready; a later failure (the component block behind a BAR the reset
     * cleared) means the function answers, which is all this step waits for — restore puts the BARs back.
     */
    awaitReady: step<AwaitReadyInput, void>(
      "awaitingReady",
      async (input, signal, dev) => {
        const until = performance.now() + input.readyTimeoutMs;
        // The functions the reset's own polling saw answer (its result's `reached`) are not asked again.
        const restored = dev.dev.takeRecovery("awaitingReady");
        const reached = new Set(restored ? [] : (answered.get(requestKey(input)) ?? []));
        answered.delete(requestKey(input));
        for (const bdf of input.targets) {
          if (reached.has(bdf)) continue;
          for (let n = 0; ; n++) {
            try {
              await agent(
                dev,
                "probe",
                freshOpId(input.opId, `ready${n}`),
                { bdf, brief: true },
                policy.agentCallTimeoutMs,
                signal,
              );
              break;
            } catch (err) {
              if (!isCxlrcError(err)) throw err;
              const notYet =
                err.kind === "not-ready" || err.kind === "timeout" || err.details.register === "pci.vendorId";
              if (!notYet) {
                if (err.kind === "device-absent") break; // answers config reads; MMIO waits for the restore
                throw err;
              }
              if (performance.now() >= until) throw err;
              await new Promise((r) => setTimeout(r, 10));
            }
          }
        }
      },
      {
        gated: (input, access) => {
          const reached = answered.get(requestKey(input));
          return access.recovering("awaitingReady") || !input.targets.every((bdf) => reached?.includes(bdf));
        },
      },
    ),

    restoreDevice: step<RestoreInput, void>(
      "restoring",
      async (input, signal, dev) => {
        const key = imageRoundKey(input, input.image);
        const atReset = restoreBrought(input);
        restoredAtReset.delete(key);
        const restored = dev.dev.takeRecovery("restoring");
        let decoders: CommittedDecoder[];
        if (atReset && !restored) {
          // Restored (and verified) by the reset's operation: this step reports it, or fails as the restore did.
          if (!atReset.ok)
            throw errorFromBody(atReset.error, { subject: `restore after the reset of ${input.bdf}` });
          keepVerify(key, input.bdf, atReset.result);
          decoders = committedOf(input.bdf, atReset.result);
        } else {
          decoders = await restoreAll(dev, input.opId, input.targets, input.scope, input.image, signal, key);
        }
        if (input.scope === "full") remember(committed, roundKey(input), decoders, COMMITTED_KEPT);
      },
      { gated: (input, access) => access.recovering("restoring") || !restoreBrought(input) },
    ),

    /**
     * The agent's full restore commits the decoders in order and reads them back; this step reports them.
     * After a restore of the actor (nothing in memory), it reads the device: verified → report the image's
     * committed decoders; not → restore again (idempotent: decommit first).
     */
    commitDecoders: step<CommitInput, CommitOutput>(
      "committingDecoders",
      async (input, signal, dev) => {
        const known = committed.get(roundKey(input));
        if (known) {
          committed.delete(roundKey(input));
          return { decoders: known };
        }
        const check = await verifyAll(
          dev,
          freshOpId(input.opId, "check"),
          input.targets,
          "full",
          input.image,
          signal,
        );
        if (check.passed && check.mismatches.length === 0) {
          const facts = await Promise.all(
            input.targets.map(async (bdf) => ({
              bdf,
              f: await probe(dev, freshOpId(input.opId, "read"), bdf, signal),
            })),
          );
          return {
            decoders: facts.flatMap(({ bdf, f }) =>
              f.decoders
                .filter((d) => d.committed)
                .map((d) => ({ bdf, index: d.index, retained: input.retainedDecoders.includes(d.index) })),
            ),
          };
        }
        return { decoders: await restoreAll(dev, input.opId, input.targets, "full", input.image, signal) };
      },
      { gated: (input) => !committed.has(roundKey(input)) },
    ),

    verifyDevice: step<VerifyInput, VerifyResult>(
      "verifying",
      (input, signal, dev) => {
        // Verified by the restore of this round in the same operation (one function): that read is this step's.
        const atRestore = verifyBrought(input);
        verifiedAtRestore.delete(imageRoundKey(input, input.image));
        const restored = dev.dev.takeRecovery("verifying");
        if (atRestore && !restored) {
          return Promise.resolve({
            passed: atRestore.passed,
            mismatches: mismatchesOf(atRestore.bdf, atRestore),
          });
        }
        return verifyAll(dev, input.opId, input.targets, input.scope, input.image, signal);
      },
      { gated: (input, access) => access.recovering("verifying") || !verifyBrought(input) },
    ),

    /**
     * The driver back (bound, its driver_override as the image found it) and the device read against its
     * image with the driver in place. Without a stored image (the save never finished) only the bind.
     */
    handBackDriver: step<HandBackInput, HandBackOutput>(
      "handingBack",
      async (input, signal, dev) => {
        const entries = Object.entries(input.drivers);
        const drivers: Record<string, string> = {};
        let verify = null as HandBackOutput["verify"];
        // Every function's driver goes back even if one fails: the first failure is thrown after the rest.
        let failure: unknown = null;
        for (const [i, [bdf, driver]] of entries.entries()) {
          try {
            const image = input.image ? ((await imageOf(input.image, bdf, signal)) as ImageLike) : null;
            const r = await agent(
              dev,
              "bind",
              targetOpId(input.opId, i, entries.length),
              {
                bdf,
                driver,
                override: image?.driver?.override ?? null,
                ...(image ? { verify: { scope: input.scope, image } } : {}),
              },
              2 * policy.agentCallTimeoutMs,
              signal,
            );
            drivers[bdf] = r.driver ?? driver;
            if (r.verify) {
              const mismatches = mismatchesOf(bdf, r.verify);
              verify = {
                passed: (verify?.passed ?? true) && r.verify.passed,
                mismatches: [...(verify?.mismatches ?? []), ...mismatches],
              };
            }
          } catch (e) {
            failure ??= e;
          }
        }
        if (failure !== null) throw failure;
        return { drivers, verify };
      },
      { store: "ahead", storeWhen: (input) => input.afterReset },
    ),

    /**
     * Slots back and the outcome counted by the breaker, once the outcome is on the stream (a host's next reset
     * never shows up before this one's end); the device lease goes when the rest state is stored. Nothing waits
     * here: the rest state's write stores the outcome with it, and the slots go when that write's events are
     * acknowledged.
     */
    releaseDevice: step<ReleaseInput, void>("releasing", async (input, _signal, dev) => {
      dev.dev.afterOutcome(() => deps.fleet.finish(input.requestId, input.outcome, deps.now()));
    }),
  };
}

export type AgentActors = ReturnType<typeof createAgentActors>;
