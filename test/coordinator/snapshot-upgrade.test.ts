// Snapshots stored by earlier versions still restore, so a rolling upgrade mid-reset continues the reset: those
// with every context field at the top level (before `run` and `step` grouped them), those from before time
// budgets moved into the effects (a deadline timer child, an absolute deadlineMs in context, step inputs
// without timeoutMs): the timer is dropped and the step run again gets a budget; and those whose step was an
// invoked child actor (what this version still writes beside its own form, for coordinators of that version).

import { describe, expect, it } from "vitest";
import { createActor, fromPromise, setup } from "xstate";
import { stepCallOf, stepCalls } from "../../machines/lifecycle.ts";
import type { LifecycleContext } from "../../machines/lifecycle-types.ts";
import { DEFAULT_POLICY } from "../../machines/policy/defaults.ts";
import { currentSnapshot } from "../../services/coordinator/device-actors.ts";
import { persistedSnapshot, REST_STATES, storedJson } from "../../services/coordinator/runtime/snapshot.ts";
import { BDF, HANG, harness, reqEvent, request, settle } from "../machines/builders.ts";

/** A context as versions before 2026-12-06 stored it: the request's progress and the step at the top level. */
function flat(context: Record<string, unknown> & { run: object; step: object }): Record<string, unknown> {
  const { run, step, ...rest } = context;
  return { ...rest, ...run, ...step };
}

/** The JSON of a snapshot with its context flat: what storedJson must write, built the plain way. */
function flatJson(snapshot: { context: Record<string, unknown> & { run: object; step: object } }): string {
  return JSON.stringify({ ...snapshot, context: flat(snapshot.context) });
}

/** The step a state runs under the default policy, as the coordinator's runtime names it (runtime/index.ts). */
const CALLS = stepCalls(DEFAULT_POLICY);
const stepOf = (state: string, context: LifecycleContext) => stepCallOf(CALLS, state, context);

/** A full reset held in its reset step, its snapshot as the coordinator stores it (persist.ts), as JSON. */
async function heldInReset() {
  const before = harness({ script: { resetDevice: [HANG] } });
  const a = before.start();
  await settle();
  a.send(reqEvent(request({ scope: "full" })));
  await settle();
  expect(a.getSnapshot().value).toBe("resetting");
  const stored = JSON.parse(JSON.stringify(persistedSnapshot(a.getSnapshot(), stepOf)));
  a.stop();
  return { before, stored };
}

describe("rest states", () => {
  it("are the machine's states tagged rest: the names stored records and events carry", () => {
    expect([...REST_STATES].sort()).toEqual(["quarantined", "ready", "unavailable"]);
  });
});

describe("stored snapshot upgrade", () => {
  it("is stored flat, as earlier versions stored and read it, and reads back grouped as it was", async () => {
    const { stored } = await heldInReset();
    // The policy is the machine's (its coordinator's), not the device's: never in a snapshot.
    expect(stored.context).not.toHaveProperty("policy");
    const inMemory = stored.context;
    const written = JSON.parse(storedJson(stored)) as typeof stored;
    expect(written.context).not.toHaveProperty("run");
    expect(written.context).not.toHaveProperty("step");
    expect(written.context).not.toHaveProperty("policy");
    expect(written.context).toMatchObject({ restoreScope: "full", persisted: true, phase: "resetting" });
    expect((currentSnapshot(written) as typeof stored).context).toEqual(inMemory);
  });

  it("is written as the same text as the flat context's JSON, without building the flat object", async () => {
    const { stored } = await heldInReset();
    expect(storedJson(stored)).toBe(flatJson(stored));
    // Text an agent put in the snapshot (an error's message) is never taken for the context's place.
    const withText = { ...stored, error: { message: '"\u0000context"' } };
    expect(storedJson(withText)).toBe(flatJson(withText));
    const noRun = { ...stored, context: { ...stored.context, run: {}, step: undefined } };
    expect(storedJson(noRun)).toBe(flatJson(noRun as unknown as typeof stored));
    expect(storedJson({ value: "ready" })).toBe('{"value":"ready"}');
  });

  it("is XState's persisted form, without its walk of the context, in every state of a reset", async () => {
    const h = harness();
    const a = h.start();
    const seen: string[] = [];
    let withStep = 0;
    const sub = a.subscribe((snap) => {
      const ours = persistedSnapshot(snap);
      const theirs = a.getPersistedSnapshot() as Record<string, unknown>;
      // The same object and the same text (key order too): no actor reference in the context was replaced.
      expect(ours).toEqual(theirs);
      expect(JSON.stringify(ours)).toBe(JSON.stringify(theirs));
      expect(storedJson(ours)).toBe(storedJson(theirs));
      // As stored: the same, and the running step as the child actor a coordinator of the invoking versions
      // stored (and invokes again when it restores the record).
      const state = snap.value as string;
      const stored = persistedSnapshot(snap, stepOf);
      const call = stepOf(state, snap.context);
      expect({ ...stored, children: {} }).toEqual(theirs);
      expect(stored.children).toEqual(
        call
          ? {
              [call.src]: {
                snapshot: { status: "active", output: undefined, error: undefined, input: call.input },
                src: call.src,
                systemId: undefined,
                syncSnapshot: false,
              },
            }
          : {},
      );
      if (call) withStep++;
      seen.push(JSON.stringify(snap.value));
    });
    await settle();
    a.send(reqEvent(request({ scope: "full" })));
    await settle();
    sub.unsubscribe();
    expect(a.getSnapshot().value).toBe("ready");
    // Every step of a full reset was looked at, most of them with their step in the stored form.
    for (const state of ["gating", "savingImage", "resetting", "verifying", "ready"])
      expect(seen).toContain(JSON.stringify(state));
    expect(withStep).toBeGreaterThan(5);
    a.stop();
  });

  it("names the running step in the form XState stores an invoked promise actor in", async () => {
    // What a coordinator that invoked its steps stored for one, taken from XState itself.
    const input = { opId: "r-1/resetting/0", host: "h", bdf: BDF, timeoutMs: 5000 };
    const invoking = setup({
      actors: { resetDevice: fromPromise(async () => new Promise<void>(() => undefined)) },
    }).createMachine({
      initial: "resetting",
      states: { resetting: { invoke: { id: "resetDevice", src: "resetDevice", input: () => input } } },
    });
    const old = createActor(invoking).start();
    const theirs = JSON.parse(JSON.stringify(old.getPersistedSnapshot())) as { children: unknown };
    old.stop();
    const { stored } = await heldInReset();
    const ours = stored.children as Record<string, { snapshot: { input: unknown } }>;
    expect(Object.keys(ours)).toEqual(["resetDevice"]);
    expect(
      JSON.stringify({
        resetDevice: { ...ours.resetDevice, snapshot: { ...ours.resetDevice!.snapshot, input } },
      }),
    ).toBe(JSON.stringify(theirs.children));
    // And this version reads it without the child: the step runs from the context, not from the stored input.
    expect((currentSnapshot(stored) as { children: object }).children).toEqual({});
  });

  it("a snapshot stored with a policy in its context runs under the loading coordinator's policy", async () => {
    const { before, stored } = await heldInReset();
    // As versions before 2026-12-07 could hold it: a policy that would retry the restore five times.
    stored.context = { ...stored.context, policy: { ...DEFAULT_POLICY, restoreRetries: 5 } };
    const upgraded = currentSnapshot(stored) as typeof stored;
    expect(upgraded.context).not.toHaveProperty("policy");
    // The new owner's policy: no retry, the first failed restore quarantines.
    const after = harness({
      clock: before.clock,
      policy: { restoreRetries: 0 },
      script: { restoreDevice: [new Error("write failed")] },
    });
    const b = after.start({}, upgraded);
    await settle();
    expect(after.callsTo("restoreDevice")).toHaveLength(1);
    expect(b.getSnapshot().value).toBe("quarantined");
  });

  it("a mid-reset snapshot with every field at the top level continues where it was, fields grouped", async () => {
    const { before, stored } = await heldInReset();
    const grouped = stored.context;
    stored.context = flat(grouped);
    expect(stored.context).toHaveProperty("restoreScope", "full");

    const asStored = JSON.stringify(stored);
    const upgraded = currentSnapshot(stored) as typeof stored;
    expect(upgraded.context).toEqual(grouped);
    // Upgraded as a copy: the record it was read from stays as stored.
    expect(JSON.stringify(stored)).toBe(asStored);

    const after = harness({ clock: before.clock });
    const b = after.start({}, upgraded);
    await settle();
    const call = after.callsTo("resetDevice")[0];
    expect(call?.input.opId).toMatch(/\/resetting\/0$/);
    expect(call?.input.timeoutMs).toBe(grouped.step.timeoutMs);
    expect(b.getSnapshot().value).toBe("ready");
    expect(b.getSnapshot().context.outcome).toBe("verified");
    expect(b.getSnapshot().context.run).toMatchObject({
      persisted: true,
      leaseHeld: false,
      resetCompleted: true,
    });
  });

  it("a mid-reset snapshot with a deadline timer continues with the step's budget", async () => {
    const { before, stored } = await heldInReset();

    // The shape of the version before budgets moved into the effects.
    const { timeoutMs: _t, ...ctx } = flat(stored.context) as Record<string, unknown> & {
      timings: Array<{ startMs: number }>;
    };
    const budget = stored.context.step.timeoutMs as number;
    stored.context = { ...ctx, deadlineMs: ctx.timings.at(-1)!.startMs + budget };
    for (const child of Object.values(stored.children) as Array<{
      snapshot: { input: Record<string, unknown> };
    }>) {
      delete child.snapshot.input.timeoutMs;
    }
    stored.children.deadline = {
      snapshot: { status: "active", input: { phase: "resetting", deadlineMs: 1_900_000_000_000 } },
      src: "deadlineTimer",
      syncSnapshot: false,
      systemId: undefined,
    };

    const asStored = JSON.stringify(stored);
    const upgraded = currentSnapshot(stored) as typeof stored;
    expect(JSON.stringify(stored)).toBe(asStored);
    expect(Object.values(upgraded.children).map((c) => (c as { src: string }).src)).not.toContain(
      "deadlineTimer",
    );
    expect(upgraded.context).not.toHaveProperty("deadlineMs");

    const after = harness({ clock: before.clock });
    const b = after.start({}, upgraded);
    await settle();
    const call = after.callsTo("resetDevice")[0];
    expect(call?.input.opId).toMatch(/\/resetting\/0$/);
    expect(call?.input.timeoutMs).toBe(budget);
    expect(b.getSnapshot().value).toBe("ready");
    expect(b.getSnapshot().context.outcome).toBe("verified");
    expect(b.getSnapshot().context.bdf).toBe(BDF);
  });
});
