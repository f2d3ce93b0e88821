// The step runner (machines/steps.ts): a state's entry starts its step, its answer comes back as done.<step> or
// failed.<step>, leaving the state stops it (its answer is never delivered), a stopped actor gets nothing, and
// RESUME_STEP runs the step of a restored state again. A small machine of its own, so that every case can be
// driven by hand (the lifecycle's own use is in lifecycle.test.ts, model.test.ts and snapshot-upgrade.test.ts).
import { describe, expect, it } from "vitest";
import { assign, createActor, type EventObject, setup } from "xstate";
import type { StepCall } from "../../machines/lifecycle-types.ts";
import { RESUME_STEP, type StepEffects, type StepStop, stepActions } from "../../machines/steps.ts";
import { settle } from "./builders.ts";

/** One step call as the effect saw it, and the hand that answers it. */
interface Pending {
  input: unknown;
  stop: StepStop;
  resolve(v: unknown): void;
  reject(e: unknown): void;
  stoppedBy: number;
}

/** A call of the save step with a test's own input (the runner passes inputs through untouched). */
const call = (input: object) => ({ src: "saveImage", input }) as unknown as StepCall;

function rig() {
  const pending: Pending[] = [];
  const effect = (input: unknown, stop: StepStop) =>
    new Promise((resolve, reject) => {
      const p: Pending = { input, stop, resolve, reject, stoppedBy: 0 };
      stop.onStop(() => p.stoppedBy++);
      pending.push(p);
    });
  const effects = { saveImage: effect } as unknown as StepEffects;
  type Ev = EventObject & { output?: unknown; error?: unknown };
  const machine = setup({
    types: { context: {} as { got: unknown[] }, events: {} as Ev },
    actions: { ...stepActions(effects) },
  }).createMachine({
    context: { got: [] },
    initial: "saving",
    on: {
      "step.resume": {
        actions: { type: "runStep", params: () => call({ again: true }) },
      },
    },
    states: {
      saving: {
        entry: { type: "runStep", params: () => call({ first: true }) },
        exit: "stopStep",
        on: {
          "done.saveImage": {
            target: "saved",
            actions: assign({ got: ({ context, event }) => [...context.got, event.output] }),
          },
          "failed.saveImage": {
            target: "failed",
            actions: assign({ got: ({ context, event }) => [...context.got, event.error] }),
          },
          LEAVE: "left",
        },
      },
      left: { on: { "done.saveImage": "saved", BACK: "saving" } },
      saved: {},
      failed: {},
    },
  });
  return { machine, pending };
}

describe("step runner", () => {
  it("starts the state's step after its transition, and its answer takes the state's done transition", async () => {
    const { machine, pending } = rig();
    const a = createActor(machine).start();
    expect(pending).toHaveLength(0);
    await settle(1);
    expect(pending.map((p) => p.input)).toEqual([{ first: true }]);
    expect(pending[0]!.stop.aborted).toBe(false);
    pending[0]!.resolve({ image: 1 });
    await settle();
    expect(a.getSnapshot().value).toBe("saved");
    expect(a.getSnapshot().context.got).toEqual([{ image: 1 }]);
  });

  it("delivers a failure as failed.<step> with the error", async () => {
    const { machine, pending } = rig();
    const a = createActor(machine).start();
    await settle();
    const boom = new Error("save failed");
    pending[0]!.reject(boom);
    await settle();
    expect(a.getSnapshot().value).toBe("failed");
    expect(a.getSnapshot().context.got).toEqual([boom]);
  });

  it("stops a step whose state was left: its flag reads aborted, its listener runs, its answer is dropped", async () => {
    const { machine, pending } = rig();
    const a = createActor(machine).start();
    await settle();
    a.send({ type: "LEAVE" });
    expect(pending[0]!.stop.aborted).toBe(true);
    expect(pending[0]!.stoppedBy).toBe(1);
    // "left" would take done.saveImage to "saved": the late answer never reaches it.
    pending[0]!.resolve({ image: "late" });
    await settle();
    expect(a.getSnapshot().value).toBe("left");
    // Entered again: a new run, answered on its own.
    a.send({ type: "BACK" });
    await settle();
    expect(pending).toHaveLength(2);
    pending[1]!.resolve({ image: 2 });
    await settle();
    expect(a.getSnapshot().value).toBe("saved");
    expect(a.getSnapshot().context.got).toEqual([{ image: 2 }]);
  });

  it("gives a stopped actor nothing, and its step's flag reads aborted", async () => {
    const { machine, pending } = rig();
    const a = createActor(machine).start();
    await settle();
    const before = a.getSnapshot().context.got;
    a.stop();
    expect(pending[0]!.stop.aborted).toBe(true);
    pending[0]!.resolve({ image: "after stop" });
    await settle();
    expect(a.getSnapshot().status).toBe("stopped");
    expect(a.getSnapshot().context.got).toBe(before);
  });

  it("runs the step again in an actor restored mid-step when sent RESUME_STEP", async () => {
    const { machine, pending } = rig();
    const a = createActor(machine).start();
    await settle();
    const stored = a.getPersistedSnapshot();
    a.stop();
    // Restored: nothing runs until the host says so (no child actor is stored to invoke again).
    const b = createActor(machine, { snapshot: stored }).start();
    await settle();
    expect(pending).toHaveLength(1);
    b.send(RESUME_STEP);
    await settle();
    expect(pending.map((p) => p.input)).toEqual([{ first: true }, { again: true }]);
    pending[1]!.resolve({ image: 3 });
    await settle();
    expect(b.getSnapshot().value).toBe("saved");
  });
});
