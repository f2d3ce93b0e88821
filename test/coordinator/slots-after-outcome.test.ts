// A request's slots go back once its outcome is acknowledged on the stream (runtime/slots.ts): not before (a
// host's next reset would show up before this one's end), at once when the device is given up here, once only.
// The runtime around it is a stand-in (a logger); the device record is the real one.
import { describe, expect, it } from "vitest";
import { device } from "../../services/coordinator/runtime/device.ts";
import { releaseAfterOutcome } from "../../services/coordinator/runtime/slots.ts";
import type { DeviceRuntime } from "../../services/coordinator/runtime/types.ts";
import { silentLogger } from "../../shared/log.ts";

function world() {
  const errors: string[] = [];
  const log = { ...silentLogger, error: (_o: unknown, msg: string) => errors.push(msg) };
  const rt = { o: { now: () => Date.now() }, devices: new Map(), log: () => log } as unknown as DeviceRuntime;
  const d = device(rt, "h1", "0000:01:00.0");
  let ack!: () => void;
  d.outcomeSent = new Promise<void>((r) => {
    ack = r;
  });
  const released: string[] = [];
  const release = (id: string) => async () => {
    released.push(id);
  };
  return { rt, d, ack: () => ack(), released, release, errors };
}

const turn = () => new Promise((r) => setImmediate(r));

describe("slots back after the outcome", () => {
  it("waits for the outcome's acknowledgement, then releases once and clears itself", async () => {
    const w = world();
    releaseAfterOutcome(w.rt, w.d, w.release("r1"));
    const done = w.d.pendingRelease!.done;
    await turn();
    expect(w.released).toEqual([]);
    w.ack();
    await done;
    expect(w.released).toEqual(["r1"]);
    expect(w.d.pendingRelease).toBeNull();
    // Acknowledged and forced both: still once.
    expect(w.d.outcomeSent).toBeNull();
  });

  it("releases at once when no outcome waits, and when the device is given up first", async () => {
    const w = world();
    w.d.outcomeSent = null;
    releaseAfterOutcome(w.rt, w.d, w.release("none"));
    await w.d.pendingRelease?.done;
    expect(w.released).toEqual(["none"]);

    const v = world();
    releaseAfterOutcome(v.rt, v.d, v.release("abandoned"));
    const entry = v.d.pendingRelease!;
    entry.now();
    await entry.done;
    expect(v.released).toEqual(["abandoned"]);
    v.ack();
    entry.now();
    await turn();
    expect(v.released).toEqual(["abandoned"]);
  });

  it("a later request's release makes the earlier one due now", async () => {
    const w = world();
    releaseAfterOutcome(w.rt, w.d, w.release("first"));
    const first = w.d.pendingRelease!.done;
    w.d.outcomeSent = new Promise(() => undefined);
    releaseAfterOutcome(w.rt, w.d, w.release("second"));
    await first;
    expect(w.released).toEqual(["first"]);
    expect(w.d.pendingRelease).not.toBeNull();
  });

  it("a release that fails is logged and still settles", async () => {
    const w = world();
    w.d.outcomeSent = null;
    releaseAfterOutcome(w.rt, w.d, async () => {
      throw new Error("breaker key not written");
    });
    await w.d.pendingRelease!.done;
    expect(w.errors).toEqual(["request slots not given back"]);
    expect(w.d.pendingRelease).toBeNull();
  });
});
