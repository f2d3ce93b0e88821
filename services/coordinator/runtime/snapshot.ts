// A device's snapshot as stored and as run: what a stored record says (its state, the request it runs), the
// form it is written in and the form this version runs it in (older forms upgraded). The policy is not in a
// device's snapshot: it is the coordinator's, given to its machine (createLifecycleMachine).

import { lifecycleMachine, REST } from "../../../machines/lifecycle.ts";
import type { LifecycleContext, RunState, StepCall, StepState } from "../../../machines/lifecycle-types.ts";

/**
 * States a device rests in: nothing runs, the lease can go. Declared by the machine (its "rest" tag); a set of
 * names here for what carries only a state's name (a stored record, an event).
 */
export const REST_STATES: ReadonlySet<string> = new Set(
  Object.entries(lifecycleMachine.root.states)
    .filter(([, node]) => node.tags.includes(REST))
    .map(([name]) => name),
);

/** The request a stored snapshot is running (taken, no outcome yet), if any. */
export function runningRequest(snapshot: unknown): string | null {
  const ctx = (snapshot as { context?: Partial<LifecycleContext> } | undefined)?.context;
  return ctx?.request && (ctx.outcome ?? null) === null ? ctx.request.requestId : null;
}

/** The name of a snapshot's state value (a nested one as JSON). */
export function stateOf(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * A stored snapshot as this version runs it. Older forms still restore (a rolling upgrade mid-reset continues the
 * reset):
 * - the context is stored flat (storedJson): its request's progress and its step are grouped into `run` and
 *   `step` (lifecycle-types.ts LifecycleContext);
 * - children are dropped: a step is not a child actor (machines/steps.ts); the runtime runs the step of a state
 *   restored mid-step again (RESUME_STEP), its input made from the context. A record stored before time budgets
 *   moved into the effects has no budget in its context: the one its step's child carried, or the call timeout
 *   of the policy it stored, is put there; its `deadlineTimer` child goes with the others;
 * - snapshots stored before the policy became the machine's may carry one in the context: dropped (the
 *   loading coordinator's applies).
 */
export function currentSnapshot(snapshot: unknown): unknown {
  // Copied where it changes, never edited: what it is given (a record just read) stays as stored.
  const s = snapshot as {
    context?: Record<string, unknown>;
    children?: Record<string, { src?: string; snapshot?: { input?: Record<string, unknown> } }>;
  };
  let context = s.context;
  const oldPolicy = context?.policy as { agentCallTimeoutMs?: number } | undefined;
  if (context && "policy" in context) {
    const { policy: _policy, ...rest } = context;
    context = rest;
  }
  if (context && !("run" in context)) context = grouped(context);
  const step = (context as LifecycleContext | undefined)?.step;
  const children = Object.values(s.children ?? {});
  if (step && step.phase !== null && step.timeoutMs === null) {
    const carried = children.find((c) => typeof c.snapshot?.input?.timeoutMs === "number")?.snapshot?.input;
    const timeoutMs = (carried?.timeoutMs as number | undefined) ?? oldPolicy?.agentCallTimeoutMs ?? 30_000;
    context = { ...context, step: { ...step, timeoutMs } };
  }
  if (context === s.context && children.length === 0) return snapshot;
  return { ...s, ...(context ? { context } : {}), children: {} };
}

/** A context stored with every field at the top level, in this version's form. */
function grouped(flat: Record<string, unknown>): Record<string, unknown> {
  const {
    pendingImage = null,
    persisted = false,
    leaseHeld = false,
    handoverArmed = false,
    restoreScope = "io",
    round = 0,
    retries = 0,
    repairing = false,
    resetStarted = false,
    resetCompleted = false,
    phase = null,
    timeoutMs = null,
    lastOpId = null,
    deadlineMs,
    ...rest
  } = flat;
  // The budget an old absolute deadline stood for: from the phase's start to its deadline.
  const startMs = (rest.timings as Array<{ startMs?: unknown }> | undefined)?.at(-1)?.startMs;
  const budget =
    typeof deadlineMs === "number" && typeof startMs === "number" && deadlineMs > startMs
      ? deadlineMs - startMs
      : null;
  const run: RunState = {
    pendingImage,
    persisted: persisted === true,
    leaseHeld: leaseHeld === true,
    handoverArmed: handoverArmed === true,
    restoreScope: restoreScope === "full" ? "full" : "io",
    round: typeof round === "number" ? round : 0,
    retries: typeof retries === "number" ? retries : 0,
    repairing: repairing === true,
    resetStarted: resetStarted === true,
    resetCompleted: resetCompleted === true,
  };
  const step: StepState = {
    phase: typeof phase === "string" ? phase : null,
    timeoutMs: typeof timeoutMs === "number" ? timeoutMs : budget,
    lastOpId: typeof lastOpId === "string" ? lastOpId : null,
  };
  return { ...rest, run, step };
}

/** What a machine snapshot holds beside its JSON values (as XState's getPersistedSnapshot leaves them out). */
interface LiveSnapshot {
  _nodes?: unknown;
  tags?: unknown;
  machine?: unknown;
  children?: unknown;
  context?: unknown;
  can?: unknown;
  hasTag?: unknown;
  matches?: unknown;
  getMeta?: unknown;
  toJSON?: unknown;
  historyValue?: unknown;
  [key: string]: unknown;
}

/**
 * A device actor's snapshot in XState's persisted form (`actor.getPersistedSnapshot()`, xstate 5.x) without its
 * walk of the whole context for actor references to replace: the lifecycle's context is data only (no actor
 * is ever kept in it: a test holds every state's context to that), and the walk, three `in` checks per object of
 * the facts, the plan and its gates, was a fifth of a write's cost. The same object otherwise: the snapshot's
 * JSON values, its context as is, no children (the lifecycle invokes none: its steps are events,
 * machines/steps.ts), and the history value by state node ids. A test holds it equal to XState's own for every
 * state of a reset. With `stepOf`, the stored form: the running step named as the child it used to be.
 */
export function persistedSnapshot(
  snapshot: unknown,
  stepOf?: (state: string, context: LifecycleContext) => StepCall | null,
): Record<string, unknown> {
  const { _nodes, tags, machine, children, context, can, hasTag, matches, getMeta, toJSON, ...json } =
    snapshot as LiveSnapshot;
  const childrenJson: Record<string, unknown> = {};
  // The running step as a coordinator that invoked steps as child actors stored it (and restores it: it invokes
  // the child again with this input), so that one can take over a record written here, mid-step.
  const call =
    stepOf && typeof json.value === "string" ? stepOf(json.value, context as LifecycleContext) : null;
  if (call) {
    childrenJson[call.src] = {
      snapshot: { status: "active", output: undefined, error: undefined, input: call.input },
      src: call.src,
      systemId: undefined,
      syncSnapshot: false,
    };
  }
  return { ...json, context, children: childrenJson, historyValue: historyIds(json.historyValue) };
}

/** A history value by state node ids, as XState persists it. */
function historyIds(value: unknown): Record<string, Array<{ id: unknown }>> {
  const out: Record<string, Array<{ id: unknown }>> = {};
  if (typeof value !== "object" || value === null) return out;
  for (const [key, nodes] of Object.entries(value)) {
    if (Array.isArray(nodes)) out[key] = nodes.map((n: { id?: unknown }) => ({ id: n.id }));
  }
  return out;
}

/**
 * Stands for the context in the snapshot's JSON until the context's own JSON replaces it (a NUL and a nonce: no
 * text a snapshot holds before its context, an error message say, can be taken for it).
 */
const CONTEXT_MARK = `\u0000context-${Math.random().toString(36).slice(2)}`;
const CONTEXT_MARK_JSON = JSON.stringify(CONTEXT_MARK);

/**
 * The snapshot as stored (its JSON): the context flat, as every version before the `run` and `step` groups stored
 * it: those groups are how this version keeps the context in memory (lifecycle-types.ts LifecycleContext), not a
 * change of the record, so coordinators of either version read what the other wrote (currentSnapshot groups it
 * on load; a version that kept the policy in the context puts its own back when it loads a record without one).
 * Written as text, the context's own keys then the `run` and `step` groups' keys in that order, without building
 * the flat context as an object: some 30 properties, which V8 keeps as a hash table (lifecycle-types.ts
 * CONTEXT_KEYS_MAX), slow to serialize and kept by a write in flight, three times a reset.
 */
export function storedJson(snapshot: unknown): string {
  const s = snapshot as { context?: LifecycleContext };
  if (!s.context) return JSON.stringify(snapshot);
  const { run, step, ...context } = s.context;
  let json = JSON.stringify(context);
  for (const group of [run, step]) {
    const g = group === undefined ? "{}" : JSON.stringify(group);
    if (g.length > 2) json = json.length > 2 ? `${json.slice(0, -1)},${g.slice(1)}` : g;
  }
  return JSON.stringify({ ...s, context: CONTEXT_MARK }).replace(CONTEXT_MARK_JSON, () => json);
}
