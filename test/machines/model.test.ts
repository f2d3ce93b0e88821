// Model-based: @xstate/graph walks the lifecycle, feeding it every answer each actor may give (done, error,
// deadline), requests and operator actions. Each generated path is replayed with XState's transition function,
// the events it emits are collected, and the invariants are checked on them.
import { getShortestPaths, getSimplePaths, type StatePath, type TraversalOptions } from "@xstate/graph";
import { describe, expect, it } from "vitest";
import {
  type AnyMachineSnapshot,
  type EventObject,
  initialTransition,
  type SnapshotFrom,
  transition,
} from "xstate";
import { checkInvariants } from "../../machines/invariants.ts";
import { createLifecycleMachine, type LifecycleMachine } from "../../machines/lifecycle.ts";
import type { LifecycleEmitted, LifecycleEvent, LifecycleInput } from "../../machines/lifecycle-types.ts";
import { BDF, HOST, T0 } from "./builders.ts";
import { type ModelOptions, modelEvents, serializeModelState } from "./model.ts";

const clock = { now: () => T0 };
const input: LifecycleInput = { host: HOST, bdf: BDF };
const model = createLifecycleMachine(clock);

const RESTING = new Set(["ready", "quarantined", "unavailable"]);

type Path = StatePath<AnyMachineSnapshot, EventObject>;
type Snap = SnapshotFrom<LifecycleMachine>;

/** The events a transition emitted (XState's pure transition returns them as xstate.emit actions). */
function emitted(actions: Array<{ type: string; params?: unknown }>): LifecycleEmitted[] {
  return actions.flatMap((a) =>
    a.type === "xstate.emit" ? [(a.params as { event: LifecycleEmitted }).event] : [],
  );
}

/** Every request in a path is a new request: give it its own id (the model reuses one per variant). */
function renumber(event: EventObject, requestsBefore: number): EventObject {
  const e = event as EventObject & { request?: { requestId: string } };
  if (e.type !== "RESET_REQUESTED" || !e.request) return event;
  const request = { ...e.request, requestId: `${e.request.requestId}-${requestsBefore + 1}` };
  return { ...e, request } as EventObject;
}

interface TrieNode {
  children: Map<string, { event: EventObject; expected: string; node: TrieNode }>;
  ends: Path[];
}

/**
 * Replay every path with XState's pure transition function and collect what it emits. Paths share long
 * prefixes, so they are replayed as a tree: each distinct prefix is computed once.
 */
function check(paths: Path[]) {
  const started = performance.now();
  const root: TrieNode = { children: new Map(), ends: [] };
  for (const path of paths) {
    let node = root;
    for (const step of path.steps) {
      if (step.event.type === "xstate.init") continue;
      const key = JSON.stringify(step.event);
      let child = node.children.get(key);
      if (!child) {
        child = {
          event: step.event,
          expected: String(step.state.value),
          node: { children: new Map(), ends: [] },
        };
        node.children.set(key, child);
      }
      node = child.node;
    }
    node.ends.push(path);
  }

  const failures: string[] = [];
  const visited = new Set<string>();
  let transitions = 0;
  const walk = (node: TrieNode, snap: Snap, trace: LifecycleEmitted[], requests: number, route: string[]) => {
    for (const path of node.ends) {
      const complete = RESTING.has(String(path.state.value));
      for (const v of checkInvariants(trace, { complete })) {
        failures.push(`${v.invariant} (${v.message}) on ${route.join(" > ")}`);
      }
    }
    for (const { event, expected, node: next } of node.children.values()) {
      const sent = renumber(event, requests);
      const [after, actions] = transition(model, snap, sent as LifecycleEvent);
      transitions += 1;
      const out = emitted(actions as Array<{ type: string; params?: unknown }>);
      for (const e of out) if (e.type === "state.entered") visited.add(e.state);
      if (String(after.value) !== expected) {
        failures.push(
          `after ${route.join(" > ")} > ${event.type}: model ${expected}, replay ${String(after.value)}`,
        );
        continue;
      }
      walk(next, after, [...trace, ...out], sent === event ? requests : requests + 1, [...route, event.type]);
    }
  };
  const [initial, actions] = initialTransition(model, input);
  const first = emitted(actions as Array<{ type: string; params?: unknown }>);
  for (const e of first) if (e.type === "state.entered") visited.add(e.state);
  walk(root, initial, first, 0, []);
  return { failures, visited, transitions, ms: Math.round(performance.now() - started) };
}

// The generated events are plain EventObjects, not the machine's own event type: cast once here.
const traversal = (opts: ModelOptions) =>
  ({
    input,
    events: modelEvents(opts),
    serializeState: serializeModelState,
  }) as unknown as TraversalOptions<SnapshotFrom<LifecycleMachine>, LifecycleEvent, LifecycleInput>;

describe("model-based: invariants on every generated path", () => {
  it("shortest path to every reachable state (all answers, deadlines everywhere, repeated requests, release)", () => {
    const paths = getShortestPaths(
      model,
      traversal({
        deadlinesEverywhere: true,
        moreRequests: true,
        requestVariants: ["io", "ioEscalate", "full", "dryRun"],
        factsVariants: ["capable", "bridgeOnly", "driverBound"],
      }),
    );
    const { failures, visited, transitions, ms } = check(paths);
    console.log(
      `model: ${paths.length} shortest paths checked (${transitions} transitions replayed in ${ms} ms)`,
    );
    expect(paths.length).toBeGreaterThan(200);
    expect(paths.length).toBeLessThan(2000);
    expect(failures).toEqual([]);
    // Every state of the chart is reached by some path (the routing states on the way out of a request,
    // which announce nothing, are passed whenever a request ends).
    const routing = new Set(["returning", "concluding"]);
    expect([...visited].sort()).toEqual(
      Object.keys(model.root.states)
        .filter((s) => !routing.has(s))
        .sort(),
    );
  });

  it("every simple path of one request (each failure point, retries, repairs)", () => {
    const paths = getSimplePaths(
      model,
      traversal({
        deadlinesEverywhere: false,
        moreRequests: false,
        requestVariants: ["io", "ioEscalate", "full", "dryRun"],
        factsVariants: ["capable", "bridgeOnly", "driverBound"],
      }),
    );
    const { failures, transitions, ms } = check(paths);
    console.log(
      `model: ${paths.length} simple paths checked (${transitions} transitions replayed in ${ms} ms)`,
    );
    expect(paths.length).toBeGreaterThan(1000);
    expect(paths.length).toBeLessThan(5000);
    expect(failures).toEqual([]);
    const outcomes = new Set(paths.map((p) => (p.state.context as { outcome: string | null }).outcome));
    expect([...outcomes].sort()).toEqual(
      expect.arrayContaining(["failed", "quarantined", "refused", "verified"]),
    );
  });
});
