// A step that fails because this coordinator may not act on its device (the device lease not held here, even
// for a moment) is not the device's failure: the step wrapper lets the device go (its stored record is continued
// by whoever holds it next) before the failure reaches the machine. Seen in a sweep of NATS faults: the node
// leading the actors bucket killed for a lease time, the owner's takeover of its own device failing its
// write-ahead with "not stored, the device lease is not held here", and the machine taking that as a failed
// reset, restoring, failing again and quarantining a healthy device.
import { describe, expect, it } from "vitest";
import type { AcquireInput, QuiesceInput } from "../../machines/lifecycle-types.ts";
import type { StepStop } from "../../machines/steps.ts";
import type { AgentLink } from "../../services/coordinator/agent-link.ts";
import type { DeviceAccess } from "../../services/coordinator/effects/agent-actors.ts";
import { isNotHeld, notHeld } from "../../services/coordinator/leases.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { stepEffects } from "./step-effects.ts";

const BDF = "0000:01:00.0";

const input: QuiesceInput = {
  opId: "r1/quiescing/0",
  host: "alpha",
  bdf: BDF,
  timeoutMs: 3000,
  requestId: "r1",
  targets: [BDF],
  scope: "full",
  cacheFlush: false,
  cacheFlushTimeoutMs: 1000,
  withReset: true,
};

function stepStop(aborted = false): StepStop {
  return { aborted, onStop: () => () => undefined };
}

const gateInput: AcquireInput = {
  opId: "r1/gating/0",
  host: "alpha",
  bdf: BDF,
  timeoutMs: 3000,
  requestId: "r1",
  switchId: null,
};

/** The quiescing step (stored ahead: its write-ahead comes first) over a device whose access is `over`. */
function quiesce(over: Partial<DeviceAccess>) {
  const letGo: string[] = [];
  const access: DeviceAccess = {
    persist: async () => undefined,
    resumed: async () => undefined,
    takeRecovery: () => false,
    recovering: () => false,
    lease: () => null,
    confirmLease: async () => true,
    afterOutcome: () => undefined,
    letGo: (why) => letGo.push(why),
    ...over,
  };
  const effects = stepEffects("alpha.0000-01-00-0", access, {
    link: { issue: () => () => undefined } as unknown as AgentLink,
  });
  return {
    letGo,
    run: (stop: StepStop = stepStop()) => effects.quiesceDevice(input, stop),
    gate: (stop: StepStop = stepStop()) => effects.acquireDevice(gateInput, stop),
  };
}

describe("a step that fails because the device lease is not held here", () => {
  it("lets the device go before the failure reaches the machine", async () => {
    const q = quiesce({
      persist: () => Promise.reject(notHeld(`${BDF}: not stored, the device lease is not held here`)),
    });
    const err = await q.run().catch((e: unknown) => e);
    expect(isNotHeld(err)).toBe(true);
    expect(q.letGo).toEqual([`quiescing: ${BDF}: not stored, the device lease is not held here`]);
  });

  it("also when the lease is found gone after the step's own work", async () => {
    const q = quiesce({ confirmLease: async () => false });
    const err = await q.run().catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      "quiescing: this step is no longer current (lease lost or state left)",
    );
    expect(q.letGo).toHaveLength(1);
  });

  it("the gate finding the lease gone lets the device go: no refusal this coordinator could not store", async () => {
    const q = quiesce({ lease: () => null });
    const err = await q.gate().catch((e: unknown) => e);
    expect(isNotHeld(err)).toBe(true);
    expect(q.letGo).toEqual([`gating: ${BDF}: the device lease is not held here`]);
  });

  it("a failure of the device's own, or of the store, still goes to the machine", async () => {
    const q = quiesce({
      persist: () => Promise.reject(new CxlrcError("backend", "the actors bucket did not answer")),
    });
    await expect(q.run()).rejects.toThrow("the actors bucket did not answer");
    expect(q.letGo).toEqual([]);
  });

  it("a step whose state was left is over: nothing is let go", async () => {
    const q = quiesce({
      persist: () => Promise.reject(notHeld(`${BDF}: not stored, the device lease is not held here`)),
    });
    await expect(q.run(stepStop(true))).rejects.toThrow("no longer current");
    expect(q.letGo).toEqual([]);
  });
});
