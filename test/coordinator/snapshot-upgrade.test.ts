// Snapshots stored by the version before time budgets moved into the effects (a deadline timer child, an
// absolute deadlineMs in context, step inputs without timeoutMs) still restore: the timer is dropped and the
// re-invoked step gets a budget, so a rolling upgrade mid-reset continues the reset.
import { describe, expect, it } from "vitest";
import { currentSnapshot } from "../../services/coordinator/device-actors.ts";
import { BDF, HANG, harness, reqEvent, request, settle } from "../machines/builders.ts";

describe("stored snapshot upgrade", () => {
  it("a mid-reset snapshot with a deadline timer continues with the step's budget", async () => {
    const before = harness({ script: { resetDevice: [HANG] } });
    const a = before.start();
    await settle();
    a.send(reqEvent(request({ scope: "full" })));
    await settle();
    expect(a.getSnapshot().value).toBe("resetting");
    const stored = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    a.stop();

    // The previous version's shape.
    const { timeoutMs: _t, ...ctx } = stored.context;
    const budget = stored.context.timeoutMs as number;
    stored.context = { ...ctx, deadlineMs: ctx.timings.at(-1).startMs + budget };
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

    const upgraded = currentSnapshot(stored) as typeof stored;
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
