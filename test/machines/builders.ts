// Small builders for the machine tests: device facts, requests, guard state, a fake clock with timers, and a
// harness that runs the lifecycle machine with in-process step effects whose answers each test scripts.
import { type Actor, createActor, type Snapshot } from "xstate";
import type { DeviceFacts, ResetRequest } from "../../machines/facts.ts";
import { createLifecycleMachine, type LifecycleMachine } from "../../machines/lifecycle.ts";
import type {
  CommitOutput,
  LifecycleEmitted,
  LifecycleEvent,
  LifecycleInput,
  VerifyResult,
} from "../../machines/lifecycle-types.ts";
import { closedBreaker } from "../../machines/policy/breaker.ts";
import { emptyBudget } from "../../machines/policy/budget.ts";
import { emptyConcurrency } from "../../machines/policy/concurrency.ts";
import { DEFAULT_POLICY, type Policy } from "../../machines/policy/defaults.ts";
import type { GuardSnapshot, PolicyContext } from "../../machines/policy/types.ts";
import { RESUME_STEP, type StepEffects, type StepStop, stepActions } from "../../machines/steps.ts";

export const HOST = "host-a";
export const BDF = "0000:0d:00.0";
export const BRIDGE = "0000:0c:00.0";
export const SIBLING = "0000:0d:00.1";
export const T0 = Date.parse("2030-01-01T00:00:00Z");

/** A single-function CXL memory device with FLR, CXL Reset (100 ms), one committed decoder, nothing in use. */
export function facts(over: Partial<DeviceFacts> = {}): DeviceFacts {
  return {
    host: HOST,
    bdf: BDF,
    functions: [BDF],
    flrCapable: true,
    cxlResetCapable: true,
    cxlResetTimeoutMs: 100,
    cxlResetTimeoutReserved: false,
    cacheCapable: false,
    cacheEnabled: false,
    wbInvCapable: false,
    memClrCapable: false,
    configLock: false,
    decoders: [{ index: 0, base: "0x100000000", size: "0x10000000", committed: true, lockOnCommit: false }],
    memoryOnline: [],
    holders: [],
    bridge: { bdf: BRIDGE, cxlPort: true, switchId: "switch-1" },
    siblings: [],
    kernelResetMethods: ["flr", "bus", "cxl_bus"],
    vfioBound: false,
    ...over,
  };
}

let seq = 0;
export function request(over: Partial<ResetRequest> = {}): ResetRequest {
  seq += 1;
  return { requestId: `req-${seq}`, host: HOST, bdf: BDF, scope: "io", reason: "test", ...over };
}

export function guards(over: Partial<GuardSnapshot> = {}): GuardSnapshot {
  return {
    activeRequestId: null,
    quarantined: false,
    budget: emptyBudget(),
    breaker: closedBreaker(),
    concurrency: emptyConcurrency(),
    ...over,
  };
}

export function policyCtx(over: Partial<PolicyContext> = {}): PolicyContext {
  return { ...guards(), nowMs: T0, policy: { ...DEFAULT_POLICY }, ...over };
}

/** Virtual time: timers fire only when the test advances the clock. */
export class FakeClock {
  private timers: Array<{ id: number; atMs: number; fire: () => void }> = [];
  private nextId = 1;
  constructor(public nowMs = T0) {}
  now = (): number => this.nowMs;
  at(atMs: number, fire: () => void): number {
    const id = this.nextId++;
    this.timers.push({ id, atMs, fire });
    return id;
  }
  cancel(id: number): void {
    this.timers = this.timers.filter((t) => t.id !== id);
  }
  pending(): number {
    return this.timers.length;
  }
  advance(ms: number): void {
    this.nowMs += ms;
    const due = this.timers.filter((t) => t.atMs <= this.nowMs).sort((a, b) => a.atMs - b.atMs);
    this.timers = this.timers.filter((t) => t.atMs > this.nowMs);
    for (const t of due) t.fire();
  }
}

export const ACTOR_NAMES = [
  "bindDevice",
  "probeDevice",
  "acquireDevice",
  "saveImage",
  "persistImage",
  "recheckGates",
  "quiesceDevice",
  "resetDevice",
  "awaitReady",
  "restoreDevice",
  "commitDecoders",
  "verifyDevice",
  "releaseDevice",
] as const;
export type ActorName = (typeof ACTOR_NAMES)[number];

/** One scripted answer: a value to resolve with, an Error to reject with, or "hang" (never settles). */
export type Answer = unknown;
export const HANG = Symbol("hang");

export interface Call {
  src: ActorName;
  input: Record<string, unknown> & { opId: string };
}

const PASSED: VerifyResult = { passed: true, mismatches: [] };

export interface HarnessOptions {
  clock?: FakeClock;
  facts?: DeviceFacts;
  /** Answers per actor, used in order; when a list runs out the default answer is used. */
  script?: Partial<Record<ActorName, Answer[]>>;
  /** The machine's policy: DEFAULT_POLICY with these changes. */
  policy?: Partial<Policy>;
}

export interface Harness {
  clock: FakeClock;
  machine: LifecycleMachine;
  calls: Call[];
  events: LifecycleEmitted[];
  /** Budgets armed by hanging steps (as the coordinator's step wrapper does: from the step's start). */
  armed: Array<{ src: ActorName; timeoutMs: number; atMs: number }>;
  start(input?: Partial<LifecycleInput>, snapshot?: Snapshot<unknown>): Actor<LifecycleMachine>;
  callsTo(src: ActorName): Call[];
  types(): string[];
}

export function harness(opts: HarnessOptions = {}): Harness {
  const clock = opts.clock ?? new FakeClock();
  const deviceFacts = opts.facts ?? facts();
  const script: Partial<Record<ActorName, Answer[]>> = {};
  for (const [k, v] of Object.entries(opts.script ?? {})) script[k as ActorName] = [...(v as Answer[])];
  const calls: Call[] = [];
  const events: LifecycleEmitted[] = [];
  const armed: Harness["armed"] = [];

  const defaults: Record<ActorName, (input: Record<string, unknown>) => unknown> = {
    bindDevice: () => undefined,
    probeDevice: () => deviceFacts,
    acquireDevice: () => ({ granted: true }),
    saveImage: () => ({ image: { version: 1, bdf: BDF } }),
    persistImage: (input) => ({ key: `image.${String(input.requestId)}`, revision: 7 }),
    recheckGates: () => deviceFacts,
    quiesceDevice: () => undefined,
    resetDevice: () => undefined,
    awaitReady: () => undefined,
    restoreDevice: () => undefined,
    commitDecoders: (): CommitOutput => ({ decoders: [{ bdf: BDF, index: 0, retained: false }] }),
    verifyDevice: () => PASSED,
    releaseDevice: () => undefined,
  };

  const effect =
    (src: ActorName) =>
    (
      input: Record<string, unknown> & { opId: string; timeoutMs: number },
      stop: StepStop,
    ): Promise<unknown> => {
      calls.push({ src, input });
      const queue = script[src];
      const answer = queue && queue.length > 0 ? queue.shift() : defaults[src](input);
      if (answer === HANG) {
        // A silent agent: the step's budget runs out (the coordinator's wrapper rejects with kind "timeout").
        armed.push({ src, timeoutMs: input.timeoutMs, atMs: clock.now() });
        return new Promise((_, reject) => {
          const id = clock.at(clock.now() + input.timeoutMs, () =>
            reject(Object.assign(new Error(`${src} passed its deadline`), { kind: "timeout" })),
          );
          stop.onStop(() => clock.cancel(id));
        });
      }
      if (answer instanceof Error) return Promise.reject(answer);
      return Promise.resolve(answer);
    };

  // Test doubles share one untyped effect shape; the machine checks nothing about them at runtime.
  const implementations = {
    actions: stepActions(
      Object.fromEntries(ACTOR_NAMES.map((n) => [n, effect(n)])) as unknown as StepEffects,
    ),
  };
  const policy = { ...DEFAULT_POLICY, ...opts.policy };
  const machine = createLifecycleMachine(clock, policy).provide(implementations) as LifecycleMachine;

  return {
    clock,
    machine,
    calls,
    events,
    armed,
    start(input = {}, snapshot) {
      const a = createActor(machine, {
        input: { host: HOST, bdf: BDF, ...input },
        ...(snapshot ? { snapshot } : {}),
      });
      a.on("*", (e) => events.push(e as LifecycleEmitted));
      a.start();
      // As the coordinator's runtime does: a restored actor runs its state's step again.
      if (snapshot) a.send(RESUME_STEP);
      return a;
    },
    callsTo: (src) => calls.filter((c) => c.src === src),
    types: () => events.filter((e) => e.type !== "state.entered").map((e) => e.type),
  };
}

/** Let every resolved promise actor deliver its answer. */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

export function reqEvent(req: ResetRequest, g: GuardSnapshot = guards()): LifecycleEvent {
  return { type: "RESET_REQUESTED", request: req, guards: g };
}

export function statesEntered(events: LifecycleEmitted[]): string[] {
  return events.flatMap((e) => (e.type === "state.entered" ? [e.state] : []));
}
