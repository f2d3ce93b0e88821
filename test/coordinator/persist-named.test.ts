// A write-ahead with nothing new to store waits for the device's events sent since, unless the stored record
// names them (namedEnough: gating, whose dispatch stored the request with its first events): whoever takes the
// record over sends those again. Held events said without a write are named by no record: always waited for.
// The runtime around persist() is a stand-in here (its store, lease table and publisher); persist is the real one.

import { describe, expect, it } from "vitest";
import { createActor, createMachine } from "xstate";
import { device } from "../../services/coordinator/runtime/device.ts";
import { persist } from "../../services/coordinator/runtime/persist.ts";
import type { Device, DeviceRuntime } from "../../services/coordinator/runtime/types.ts";
import { silentLogger } from "../../shared/log.ts";

function world() {
  const sent: string[] = [];
  const records: Array<{ announce?: Array<{ id: string }> }> = [];
  let flushes = 0;
  let revision = 0;
  const o = {
    id: "c1",
    now: () => Date.now(),
    leases: { get: () => ({ key: "k" }) },
    events: {
      unsent: () =>
        sent.map((id) => ({ id, kind: "state.entered", time: new Date().toISOString(), data: {} })),
      flush: async () => {
        flushes++;
        sent.length = 0;
      },
    },
    store: {
      saveActorJson: async (_key: string, _summary: unknown, _revision: unknown, json: string) => {
        records.push(JSON.parse(json) as { announce?: Array<{ id: string }> });
        return ++revision;
      },
      loadActor: async () => null,
    },
  };
  const rt = {
    o,
    devices: new Map(),
    stopping: false,
    log: () => silentLogger,
    abandon: () => undefined,
    // What outbox.ts does with held events once stored: they go out (unacknowledged until flushed).
    announce: (d: Device, n: number) => {
      for (const h of d.held.splice(0, n)) sent.push(h.event.id);
    },
  } as unknown as DeviceRuntime;
  const d = device(rt, "h1", "0000:01:00.0");
  const machine = createMachine({ initial: "a", states: { a: { on: { GO: "b" } }, b: {} } });
  d.actor = createActor(machine).start() as unknown as Device["actor"];
  const hold = (id: string) =>
    d.held.push({
      event: { id, kind: "state.entered", time: new Date().toISOString(), data: {} },
      sent: () => undefined,
    });
  return { rt, d, sent, records, hold, flushes: () => flushes };
}

describe("write-ahead with nothing new to store", () => {
  it("does not wait for events the stored record names when namedEnough; waits otherwise", async () => {
    const w = world();
    w.hold("e1");
    w.hold("e2");
    await persist(w.rt, w.d, true);
    expect(w.records.at(-1)?.announce?.map((e) => e.id)).toEqual(["e1", "e2"]);
    expect(w.sent).toEqual(["e1", "e2"]);
    expect(w.flushes()).toBe(0);

    // Same snapshot, its events in flight and named by the record: not waited for.
    await persist(w.rt, w.d, true, true);
    expect(w.flushes()).toBe(0);
    expect(w.records).toHaveLength(1);
    // Without namedEnough (a write-ahead that must not run ahead of them): waited for.
    await persist(w.rt, w.d, true);
    expect(w.flushes()).toBe(1);
  });

  it("waits for held events said without a write, and for sent ones no record names", async () => {
    const w = world();
    await persist(w.rt, w.d, true);
    // Held since the last write, same snapshot: said now, named by no record.
    w.hold("e3");
    await persist(w.rt, w.d, true, true);
    expect(w.flushes()).toBe(1);
    expect(w.records).toHaveLength(1);
    // In flight, and not in the record of the last write.
    w.sent.push("e4");
    await persist(w.rt, w.d, true, true);
    expect(w.flushes()).toBe(2);
  });

  it("writes a changed snapshot without waiting, naming what is in flight", async () => {
    const w = world();
    await persist(w.rt, w.d, true);
    w.sent.push("e5");
    w.d.actor!.send({ type: "GO" } as never);
    await persist(w.rt, w.d, true, true);
    expect(w.records).toHaveLength(2);
    expect(w.records.at(-1)?.announce?.map((e) => e.id)).toEqual(["e5"]);
    expect(w.flushes()).toBe(0);
  });
});
