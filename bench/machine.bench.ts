// The lifecycle machine alone: full-scope resets (CXL Reset, one function, two committed decoders), every effect
// answering at once in-process, no bus, no store. What XState and the machine (planning and gates included)
// cost per reset, beside the hand-written baseline: one async function that plans with the same policy, calls
// the same effects in the same order and emits as many events. It tells how much of the coordinator's CPU per
// reset (bench coordinator) is the machine's, and how much of that is the price of running it as an actor.
// Also the cost of one persisted form of a snapshot and its JSON, as each write of the coordinator makes it
// (runtime/snapshot.ts persistedSnapshot and storedJson), and what a step costs as an invoked child actor (as
// the lifecycle ran each effect until 2026-12-07) beside the same step as an event the effect sends back to
// the machine (as machines/steps.ts runs it now).
import { performance } from "node:perf_hooks";
import { type Actor, type AnyActorLogic, assign, createActor, fromPromise, setup } from "xstate";
import type { LifecycleMachine } from "../machines/lifecycle.ts";
import { planReset } from "../machines/policy/plan.ts";
import { persistedSnapshot, storedJson } from "../services/coordinator/runtime/snapshot.ts";
import { facts, guards, harness, policyCtx, reqEvent, request, settle } from "../test/machines/builders.ts";
import { type BenchRow, summarize } from "./lib.ts";

/** Resets at once per round, and rounds (the first one of each side is warm-up, not counted). */
const LEVELS: Array<{ n: number; rounds: number }> = [
  { n: 1, rounds: 400 },
  { n: 1000, rounds: 5 },
];

const deviceFacts = facts({
  cacheCapable: true,
  cacheEnabled: true,
  wbInvCapable: true,
  decoders: [
    { index: 0, base: "0x100000000", size: "0x10000000", committed: true, lockOnCommit: false },
    { index: 1, base: "0x110000000", size: "0x10000000", committed: true, lockOnCommit: false },
  ],
});

export interface Round {
  cpuMs: number;
  wallMs: number;
  events: number;
}

/** CPU (user + system, GC threads included) and wall time of `fn`, per reset. */
async function timed(n: number, fn: () => Promise<number>): Promise<Round> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const events = await fn();
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { cpuMs: (c.user + c.system) / 1000 / n, wallMs: wallMs / n, events: events / n };
}

/** n actors at rest in ready; each takes one full-scope request; resolves when all rest again. */
export async function machineRound(n: number): Promise<Round> {
  const h = harness({ facts: deviceFacts });
  const actors: Array<Actor<LifecycleMachine>> = [];
  for (let i = 0; i < n; i++) actors.push(h.start());
  await settle();
  h.events.length = 0;
  const r = await timed(n, async () => {
    for (const a of actors) a.send(reqEvent(request({ scope: "full" })));
    // Every effect answers at once: a reset is some 40 promise turns; wait until every actor rests.
    while (actors.some((a) => a.getSnapshot().value !== "ready" || a.getSnapshot().context.outcome === null))
      await new Promise<void>((resolve) => setImmediate(resolve));
    return h.events.length;
  });
  const notVerified = actors.filter((a) => a.getSnapshot().context.outcome !== "verified").length;
  if (notVerified > 0) throw new Error(`machine bench: ${notVerified} of ${n} resets not verified`);
  for (const a of actors) a.stop();
  return r;
}

/** The same work by hand: plan, then the effects in the machine's order, an event per state and per fact. */
async function byHand(emit: (e: object) => void): Promise<void> {
  const req = request({ scope: "full" });
  const effect = <T>(value: T) => Promise.resolve(value);
  const enter = (state: string) => emit({ type: "state.entered", state, requestId: req.requestId });
  emit({ type: "request.received", request: req });
  enter("planning");
  const plan = planReset(req, deviceFacts, policyCtx({ ...guards() }));
  if (plan.kind !== "plan")
    throw new Error(`machine bench: the hand-written plan was refused: ${plan.reason}`);
  emit({ type: "plan", plan });
  enter("gating");
  await effect({ granted: true });
  enter("savingImage");
  const image = await effect({ image: { version: 1, bdf: req.bdf } });
  enter("persistingImage");
  const ref = await effect({ key: `image.${req.requestId}`, revision: 7, image });
  emit({ type: "image.persisted", ref });
  enter("regating");
  await effect(deviceFacts);
  enter("quiescing");
  await effect(undefined);
  enter("resetting");
  emit({ type: "reset.started", method: plan.method });
  await effect(undefined);
  emit({ type: "reset.completed", method: plan.method });
  enter("awaitingReady");
  await effect(undefined);
  enter("restoring");
  await effect(undefined);
  enter("committingDecoders");
  // As the machine bench's commit effect answers: decoder 0 committed (harness default).
  const committed = await effect({ decoders: [{ bdf: req.bdf, index: 0, retained: false }] });
  for (const d of committed.decoders) emit({ type: "decoder.committed", decoder: d });
  enter("verifying");
  const verify = await effect({ passed: true, mismatches: [] });
  emit({ type: "verify.passed", verify });
  emit({ type: "verified", scope: plan.scope, method: plan.method });
  enter("releasing");
  await effect(undefined);
  enter("ready");
}

async function handRound(n: number): Promise<Round> {
  let events = 0;
  const emit = () => {
    events++;
  };
  return timed(n, async () => {
    await Promise.all(Array.from({ length: n }, () => byHand(emit)));
    return events;
  });
}

/** The persisted form of a snapshot taken mid-reset (what each write of the coordinator serializes). */
async function persistedForm(runs: number): Promise<BenchRow> {
  const h = harness({ facts: deviceFacts, script: { quiesceDevice: [new Promise(() => undefined)] } });
  const a = h.start();
  await settle();
  a.send(reqEvent(request({ scope: "full" })));
  await settle();
  if (a.getSnapshot().value !== "quiescing")
    throw new Error("machine bench: the actor did not hold in quiescing");
  const samples = new Array<number>(runs);
  let bytes = 0;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    bytes = storedJson(persistedSnapshot(a.getSnapshot())).length;
    samples[i] = (performance.now() - t0) * 1000;
  }
  a.stop();
  const { p50, p99, mean } = summarize(samples.slice(runs / 10));
  return {
    name: "machine snapshot, persisted form + JSON (quiescing, mid-reset)",
    runs: runs - runs / 10,
    value: mean,
    unit: "µs/write",
    p50,
    p99,
    ratio: `${bytes} bytes`,
  };
}

/** Steps in a row, as many as a full reset invokes on its way from gating to releasing (lifecycle.ts). */
const STEPS = 11;

/**
 * A chain of STEPS states, each running one effect that answers at once: as an invoked promise actor (a child
 * actor created, started and stopped per step, its result a done event), or (the baseline) started from the
 * state's entry and answered with an event sent to the machine itself.
 */
function stepChains(): { invoked: AnyActorLogic; evented: AnyActorLogic } {
  type Ctx = { n: number };
  const next = (i: number) => (i === STEPS - 1 ? "done" : `s${i + 1}`);
  const count = assign({ n: ({ context }: { context: Ctx }) => context.n + 1 });
  const invokedStates: Record<string, object> = { done: { type: "final" } };
  const eventedStates: Record<string, object> = { done: { type: "final" } };
  for (let i = 0; i < STEPS; i++) {
    invokedStates[`s${i}`] = {
      invoke: {
        src: "effect",
        input: ({ context }: { context: Ctx }) => context.n,
        onDone: { target: next(i), actions: count },
      },
    };
    eventedStates[`s${i}`] = {
      entry: ({ context, self }: { context: Ctx; self: { send(e: { type: "done" }): void } }) => {
        void Promise.resolve(context.n).then(() => self.send({ type: "done" }));
      },
      on: { done: { target: next(i), actions: count } },
    };
  }
  const invoked = setup({
    types: { context: {} as Ctx },
    actors: { effect: fromPromise(async ({ input }: { input: number }) => input) },
  }).createMachine({ context: { n: 0 }, initial: "s0", states: invokedStates as never });
  const evented = setup({ types: { context: {} as Ctx } }).createMachine({
    context: { n: 0 },
    initial: "s0",
    states: eventedStates as never,
  });
  return { invoked, evented };
}

/** n actors of `machine` at once, each through its chain to the final state. */
function chainRound(machine: AnyActorLogic, n: number): Promise<Round> {
  return timed(n, async () => {
    await Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise<void>((resolve) => {
            const a = createActor(machine);
            a.subscribe({ complete: () => resolve() });
            a.start();
          }),
      ),
    );
    return 0;
  });
}

/** Per step: the invoked child actor's cost over the event's, n chains at once, interleaved rounds. */
async function stepForms(n: number, rounds: number): Promise<BenchRow[]> {
  const { invoked, evented } = stepChains();
  const inv: number[] = [];
  const evt: number[] = [];
  for (let r = 0; r <= rounds; r++) {
    const a = await chainRound(invoked, n);
    const b = await chainRound(evented, n);
    if (r === 0) continue;
    inv.push((a.cpuMs * 1000) / STEPS);
    evt.push((b.cpuMs * 1000) / STEPS);
  }
  const a = summarize(inv);
  const b = summarize(evt);
  return [
    {
      name: `a step as an invoked child actor, ${n} chains of ${STEPS} at once: CPU per step`,
      runs: rounds * n * STEPS,
      value: median(inv),
      unit: "µs CPU",
      p50: a.p50,
      p99: a.p99,
      ratio: `${(median(inv) / median(evt)).toFixed(1)}× the event form; ${((STEPS * (median(inv) - median(evt))) / 1000).toFixed(2)} ms more per reset of ${STEPS} steps`,
    },
    {
      name: `a step as an event sent back to the machine (baseline), ${n} chains at once: CPU per step`,
      runs: rounds * n * STEPS,
      value: median(evt),
      unit: "µs CPU",
      p50: b.p50,
      p99: b.p99,
    },
  ];
}

function median(xs: number[]): number {
  return summarize(xs).p50;
}

export async function bench(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const { n, rounds } of LEVELS) {
    const machine: Round[] = [];
    const hand: Round[] = [];
    // Interleaved, the first of each side warm-up: both run under the same load and the same JIT state.
    for (let r = 0; r <= rounds; r++) {
      const m = await machineRound(n);
      const b = await handRound(n);
      if (r === 0) continue;
      machine.push(m);
      hand.push(b);
    }
    const mCpu = machine.map((x) => x.cpuMs);
    const hCpu = hand.map((x) => x.cpuMs);
    const m = summarize(mCpu);
    const b = summarize(hCpu);
    const runs = rounds * n;
    rows.push({
      name: `lifecycle machine, full/cxl, ${n} at once: CPU per reset (effects in-process, instant)`,
      runs,
      value: median(mCpu),
      unit: "ms CPU",
      p50: m.p50,
      p99: m.p99,
      ratio: `${(median(mCpu) / median(hCpu)).toFixed(1)}× hand-written; wall ${median(machine.map((x) => x.wallMs)).toFixed(3)} ms/reset; ${machine[0]!.events.toFixed(0)} events/reset`,
    });
    rows.push({
      name: `hand-written lifecycle (baseline), full/cxl, ${n} at once: CPU per reset`,
      runs,
      value: median(hCpu),
      unit: "ms CPU",
      p50: b.p50,
      p99: b.p99,
      ratio: `wall ${median(hand.map((x) => x.wallMs)).toFixed(3)} ms/reset; ${hand[0]!.events.toFixed(0)} events/reset`,
    });
  }
  rows.push(await persistedForm(5000));
  rows.push(...(await stepForms(1000, 5)));
  return rows;
}
