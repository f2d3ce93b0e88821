// How the lifecycle's steps run: a state's entry asks for its step (runStep, with the effect's name and input),
// leaving the state stops it (stopStep), and the effect's answer comes back to the device's actor as an event
// (`done.<step>` with its output, `failed.<step>` with its error) that only the state that asked handles. The
// host of the effects (the coordinator, a test's harness) provides the two actions once per machine
// (stepActions); the machine sees only step names and inputs.
//
// Not an invoked child actor per step: XState creates, starts and stops an actor for each invoke, which cost
// 3.5× this form's CPU per step (bench machine, "a step as an invoked child actor"). What the child actor
// gave, this keeps: an answer of a step already
// left (or of a stopped actor) is never delivered, the effect's stop flag is set when its state is left, and a
// device restored mid-step runs its step again with the same input (the operation id is in the context, so
// the agent answers a repeated operation with its first result): the host sends RESUME_STEP after restoring.
import type { AnyActorRef } from "xstate";
import type { StepCall, StepName, StepTypes } from "./lifecycle-types.ts";

/**
 * What a running step's effect checks before each thing it does, and may listen to: set once its state is left
 * or its actor stopped. Read on demand (the actor's status is asked when `aborted` is read).
 */
export interface StepStop {
  readonly aborted: boolean;
  /** Call `fn` when the step is stopped by leaving its state (not when its actor stops); returns an "off". */
  onStop(fn: () => void): () => void;
}

/** A step's effect: its input and stop flag in, its output out (a rejection is the step's failure). */
export type StepEffect<K extends StepName> = (
  input: StepTypes[K]["input"],
  stop: StepStop,
) => Promise<StepTypes[K]["output"]>;
export type StepEffects = { [K in StepName]: StepEffect<K> };

/** Sent by the host to an actor it restored from a stored snapshot: the state's step runs again. */
export const RESUME_STEP = { type: "step.resume" } as const;

class Run implements StepStop {
  stopped = false;
  private listeners: Array<() => void> | null = null;
  constructor(private readonly self: AnyActorRef) {}
  get aborted(): boolean {
    return this.stopped || this.self.getSnapshot().status !== "active";
  }
  onStop(fn: () => void): () => void {
    this.listeners ??= [];
    this.listeners.push(fn);
    return () => {
      const i = this.listeners?.indexOf(fn) ?? -1;
      if (i >= 0) this.listeners!.splice(i, 1);
    };
  }
  stop(): void {
    this.stopped = true;
    const listeners = this.listeners;
    this.listeners = null;
    for (const fn of listeners ?? []) fn();
  }
}

/**
 * The lifecycle's runStep and stopStep actions over these effects (machine.provide({ actions })). One step runs
 * per actor at a time: a new one stops the one before.
 */
export function stepActions(effects: StepEffects) {
  const running = new WeakMap<AnyActorRef, Run>();
  const stop = (self: AnyActorRef) => {
    const run = running.get(self);
    if (!run) return;
    running.delete(self);
    run.stop();
  };
  const start = (self: AnyActorRef, call: StepCall) => {
    stop(self);
    const run = new Run(self);
    running.set(self, run);
    // After the transition that asked for it, as XState starts an invoked actor: the snapshot the effect's
    // hooks read (the write-ahead) is the one of its state.
    const effect = effects[call.src] as (input: unknown, stop: StepStop) => Promise<unknown>;
    void Promise.resolve()
      .then(() => effect(call.input, run))
      .then(
        (output) => {
          if (running.get(self) !== run || run.aborted) return;
          running.delete(self);
          self.send({ type: `done.${call.src}`, output });
        },
        (error: unknown) => {
          if (running.get(self) !== run || run.aborted) return;
          running.delete(self);
          self.send({ type: `failed.${call.src}`, error });
        },
      );
  };
  return {
    runStep: ({ self }: { self: AnyActorRef }, call: StepCall) => start(self, call),
    stopStep: ({ self }: { self: AnyActorRef }) => stop(self),
  };
}
