// Events held for a snapshot write (runtime/outbox.ts holdFor): stored by a write of their own after HOLD_MS when
// nothing else stores them, but held up to HOLD_LOADED_MS while steps queue at the step gate (an overloaded
// coordinator spends its turns on the steps; at 1,000 resets at once these writes were 2 of 8 per reset).
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { HOLD_LOADED_MS, HOLD_MS, holdFor } from "../../services/coordinator/runtime/outbox.ts";
import type { Device, DeviceRuntime } from "../../services/coordinator/runtime/types.ts";

/** A runtime whose step gate is `load.queued`, counting the writes made for held events. */
function world() {
  const load = { queued: false };
  const writes: number[] = [];
  const rt = {
    queued: () => load.queued,
    persist: async () => {
      writes.push(performance.now());
    },
  } as unknown as DeviceRuntime;
  const d = {
    held: [{ event: { id: "e1", kind: "state.entered" }, sent: () => undefined }],
    actor: {},
    holdTimer: null,
  } as unknown as Device;
  return { load, writes, rt, d };
}

describe("events held for a snapshot write", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("get a write of their own after HOLD_MS when nothing else stored them", async () => {
    const { writes, rt, d } = world();
    holdFor(rt, d);
    holdFor(rt, d); // one timer per device, however many events wait
    await vi.advanceTimersByTimeAsync(HOLD_MS - 1);
    expect(writes).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(writes).toHaveLength(1);
  });

  it("wait up to HOLD_LOADED_MS while steps queue, and go as soon as the queue is gone", async () => {
    const loaded = world();
    loaded.load.queued = true;
    holdFor(loaded.rt, loaded.d);
    await vi.advanceTimersByTimeAsync(HOLD_LOADED_MS - 1);
    expect(loaded.writes).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(loaded.writes).toHaveLength(1);

    const eased = world();
    eased.load.queued = true;
    const t0 = performance.now();
    holdFor(eased.rt, eased.d);
    await vi.advanceTimersByTimeAsync(3 * HOLD_MS - 100);
    expect(eased.writes).toHaveLength(0);
    eased.load.queued = false;
    await vi.advanceTimersByTimeAsync(100);
    expect(eased.writes.map((t) => t - t0)).toEqual([3 * HOLD_MS]);
  });

  it("stored meanwhile by another write (none held any more): no write is made for them", async () => {
    const { writes, rt, d } = world();
    holdFor(rt, d);
    d.held.length = 0;
    await vi.advanceTimersByTimeAsync(HOLD_LOADED_MS);
    expect(writes).toHaveLength(0);
  });
});
