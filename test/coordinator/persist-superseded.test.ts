// A snapshot write tried again while the store does not answer stops once its device was given up and taken
// again meanwhile (lease lost during a NATS fault, then a recovery pass took the device anew): tried again,
// it wrote the old actor's snapshot at the revision the device had when it was given up (none: expected
// revision null), lost the compare-and-set to the record, and gave up the device's new run with it: the
// takeover's actor then failed its write-ahead and went on to quarantine a healthy device (chaos sweep, NATS
// node leading the actors bucket killed for a lease time).
import { describe, expect, it } from "vitest";
import type { ActorSummary } from "../../services/coordinator/actor-index.ts";
import { isNotHeld } from "../../services/coordinator/leases.ts";
import { persist } from "../../services/coordinator/runtime/persist.ts";
import type { Device, DeviceRuntime } from "../../services/coordinator/runtime/types.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";
import { harness } from "../machines/builders.ts";

/** A device driven by a live actor under `lease`, and a runtime whose store answers as `save` says. */
function world(save: (revision: number | null, attempt: number) => Promise<number>) {
  const h = harness();
  const writes: Array<number | null> = [];
  const abandoned: string[] = [];
  const state = { lease: {} as object | undefined };
  const d = {
    key: "alpha.0000-01-00-0",
    host: "alpha",
    bdf: "0000:01:00.0",
    writing: Promise.resolve(),
    actor: h.start(),
    held: [],
    lastWritten: null,
    requests: [],
    revision: 5 as number | null,
    storedOwner: null,
  } as unknown as Device;
  const rt = {
    stopping: false,
    o: {
      id: "c-test",
      now: Date.now,
      leases: { get: () => state.lease },
      store: {
        saveActorJson: (_key: string, _s: ActorSummary, revision: number | null) => {
          writes.push(revision);
          return save(revision, writes.length);
        },
        loadActor: () => Promise.reject(new CxlrcError("timeout", "the actors bucket does not answer")),
      },
      events: { unsent: () => [], flush: async () => undefined },
    },
    announce: () => undefined,
    log: () => silentLogger,
    abandon: (_d: Device, why: string) => abandoned.push(why),
  } as unknown as DeviceRuntime;
  return { d, rt, h, writes, abandoned, state };
}

describe("a snapshot write tried again while the store does not answer", () => {
  it("goes on for the same run until it lands", async () => {
    const w = world(async (_revision, attempt) => {
      if (attempt === 1) throw new CxlrcError("timeout", "no answer from the actors bucket");
      return 6;
    });
    await persist(w.rt, w.d);
    expect(w.writes).toEqual([5, 5]);
    expect(w.d.revision).toBe(6);
    expect(w.abandoned).toEqual([]);
  });

  it("stops, and gives nothing up, once the device was given up and taken again meanwhile", async () => {
    const w = world(async () => {
      // While the first attempt waits: the lease is lost (the device given up: no revision known), and a
      // recovery pass takes the device again under a new lease with a new actor.
      w.d.revision = null;
      w.d.actor = w.h.start();
      w.state.lease = {};
      throw new CxlrcError("timeout", "no answer from the actors bucket");
    });
    const err = await persist(w.rt, w.d, true).catch((e: unknown) => e);
    expect(isNotHeld(err)).toBe(true);
    expect((err as Error).message).toBe(
      "0000:01:00.0: not stored, the device was given up while its write was tried",
    );
    expect(w.writes).toEqual([5]);
    expect(w.abandoned).toEqual([]);
  });

  it("stops when the lease is lost while it waits to try again", async () => {
    const w = world(async (_revision, attempt) => {
      if (attempt === 1) {
        setTimeout(() => {
          w.state.lease = undefined;
        }, 0);
        throw new CxlrcError("timeout", "no answer from the actors bucket");
      }
      return 6;
    });
    const err = await persist(w.rt, w.d, true).catch((e: unknown) => e);
    expect(isNotHeld(err)).toBe(true);
    expect(w.writes).toEqual([5]);
  });
});
