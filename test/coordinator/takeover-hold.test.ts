// A recovery pass claims every device it takes over before any of them runs its next step: claims are a few
// KV operations, steps are agent work; a pass of hundreds must not claim its last devices behind the work of
// its first (the scale bench's 500 taken over in one pass).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StepHook } from "../../services/coordinator/effects/agent-actors.ts";
import { openStore } from "../../services/coordinator/store.ts";
import { deviceKey } from "../../shared/bus/subjects.ts";
import { publishRequest, rootPortHost, sleep, startWorld, TEST_POLICY, type World } from "./helpers.ts";

const HOST = "hold";
const N = 4;
// Every device of the host resets at once (and sits on its own root port, so no switch limits them either).
const policy = { ...TEST_POLICY, maxConcurrentPerHost: N, maxConcurrentPerSwitch: N };
const bdfs = Array.from({ length: N }, (_, i) => `0000:0${i + 1}:00.0`);

describe("takeover: a pass claims all it takes, then they run", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([rootPortHost(HOST, N)]);
  });
  afterAll(async () => {
    await w?.close();
  });

  it("no device taken over runs a step before every device of the pass is claimed", async () => {
    // A holds every device before its reset, then crashes there.
    let arrived = 0;
    let allThere: () => void = () => undefined;
    const there = new Promise<void>((r) => {
      allThere = r;
    });
    const hold: StepHook = async (phase, point) => {
      if (phase !== "resetting" || point !== "before") return;
      if (++arrived === N) allThere();
      await new Promise(() => undefined);
    };
    const a = await w.coordinator({ id: "hold-A", stepHook: hold, leaseTtlMs: 2000, policy });
    for (const [i, bdf] of bdfs.entries())
      await publishRequest(w.js, { requestId: `th-${i}`, host: HOST, bdf, scope: "full", reason: "t" });
    await there;
    await a.crash();
    // Every lease of A gone before B starts: B's first pass finds all four free.
    await sleep(3000);

    const store = await openStore(w.nc, { leaseTtlMs: 2000 });
    const owners = async () =>
      Promise.all(bdfs.map(async (bdf) => (await store.loadActor(deviceKey(HOST, bdf)))?.value.owner));
    const seenAtFirstStep: Array<string | undefined>[] = [];
    let first = true;
    const watch: StepHook = async () => {
      if (!first) return;
      first = false;
      seenAtFirstStep.push(await owners());
    };
    const b = await w.coordinator({ id: "hold-B", stepHook: watch, leaseTtlMs: 2000, policy });
    for (const i of bdfs.keys())
      expect((await b.handle.waitForOutcome(`th-${i}`, 30_000)).outcome).toBe("verified");
    expect(seenAtFirstStep).toEqual([bdfs.map(() => "hold-B")]);
  }, 60_000);
});
