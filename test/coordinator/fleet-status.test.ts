// Status reports the fleet, not only this coordinator's actors: with two coordinators, each one lists the
// other's devices from the stored actors (state from the snapshot, owner named, local: false), follows a device
// that the other has driven since (its own in-memory actor is then out of date), and narrows to one host.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CoordinatorStatus } from "../../services/coordinator/service.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  control,
  publishRequest,
  type RunningCoordinator,
  readEvents,
  type StoredEvent,
  startWorld,
  until,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";

describe("fleet status with two coordinators", () => {
  let w: World;
  let a: RunningCoordinator;
  let b: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "fa" }), simpleHost({ name: "fb" })]);
    a = await w.coordinator({ id: "ca", hosts: ["fa"] });
    b = await w.coordinator({ id: "cb", hosts: ["fb"] });
  });
  afterAll(async () => {
    await w?.close();
  });

  const view = (s: CoordinatorStatus) =>
    s.devices.map((d) => `${d.host} ${d.state} owner=${d.owner} local=${d.local} lease=${d.leaseHeld}`);

  it("each coordinator lists the other's devices, from the stored actors", async () => {
    // b discovered fb; a has no actor of it, yet reports it (the watch of the actors bucket is asynchronous).
    expect(
      await until(async () =>
        view(await a.handle.status()).includes("fb ready owner=cb local=false lease=false"),
      ),
    ).toBe(true);
    expect(view(await a.handle.status())).toEqual([
      "fa ready owner=ca local=true lease=false",
      "fb ready owner=cb local=false lease=false",
    ]);
    expect(
      await until(async () =>
        view(await b.handle.status()).includes("fa ready owner=ca local=false lease=false"),
      ),
    ).toBe(true);
    // Local counts stay this coordinator's own.
    expect((await a.handle.status()).states).toEqual({ ready: 1 });
  });

  it("a device the other coordinator drove since is reported as the other stored it", async () => {
    // Requests go to whichever coordinator pulls them: send until ca runs one on fb (cb's device). cb's
    // in-memory actor of fb is then out of date; its status must report what ca stored.
    let driver: unknown = null;
    for (let i = 0; i < 40 && driver !== "ca"; i++) {
      const id = `fs-${i}`;
      await publishRequest(w.js, { requestId: id, host: "fb", bdf: BDF, scope: "io", reason: "x" });
      let verified: StoredEvent | undefined;
      await until(async () => {
        verified = (await readEvents(w.jsm, { requestId: id, source: "coordinator" })).find(
          (e) => e.event.kind === "verified",
        );
        return verified !== undefined;
      });
      driver = verified?.event.data.coordinator;
    }
    expect(driver).toBe("ca");
    const fbOf = async (c: RunningCoordinator) =>
      (await c.handle.status()).devices.find((d) => d.host === "fb");
    expect(
      await until(async () => {
        const d = await fbOf(b);
        return d?.owner === "ca" && d.state === "ready";
      }),
    ).toBe(true);
    expect(await fbOf(b)).toMatchObject({ owner: "ca", local: false, state: "ready", leaseHeld: false });
    expect(await until(async () => (await fbOf(a))?.leaseHeld === false)).toBe(true);
    expect(await fbOf(a)).toMatchObject({ owner: "ca", local: true, state: "ready" });
  });

  it("the status endpoint narrows to one host and still reports devices driven elsewhere", async () => {
    const st = await control<CoordinatorStatus>(w.nc, subjects.status, { host: "fa" });
    if (!st.ok) throw new Error(st.error.message);
    expect(st.result.devices.map((d) => d.host)).toEqual(["fa"]);
    expect(st.result.devices[0]).toMatchObject({ state: "ready", owner: "ca" });
    // Answered by either coordinator (queue group): fa is local to ca only.
    expect(st.result.devices[0]?.local).toBe(st.result.id === "ca");
  });
});
