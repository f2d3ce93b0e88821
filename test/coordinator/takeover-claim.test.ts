// A takeover is said only once it is claimed: the new owner's `recovered` event goes out after its claim write
// of the device's record lands, never before (a coordinator whose claim loses to another's must not appear on
// the stream as a second driver: chaos single-driver). Observed on one subscriber connection, which sees one
// publisher's messages in the order the server took them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StepHook } from "../../services/coordinator/effects/agent-actors.ts";
import { BUCKETS, deviceKey, subjects } from "../../shared/bus/subjects.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { publishRequest, startWorld, until, type World } from "./helpers.ts";

const BDF = "0000:01:00.0";
const HOST = "claim";

describe("takeover: recovered after the claim", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: HOST })]);
  });
  afterAll(async () => {
    await w?.close();
  });

  it("the new owner's claim write reaches the bus before its recovered event and before anything it does", async () => {
    let reached: () => void = () => undefined;
    const atPoint = new Promise<void>((r) => {
      reached = r;
    });
    const hook: StepHook = async (phase, point) => {
      if (phase === "restoring" && point === "before") {
        reached();
        await new Promise(() => undefined);
      }
    };
    const a = await w.coordinator({ id: "claim-A", stepHook: hook });
    await publishRequest(w.js, { requestId: "rc-claim", host: HOST, bdf: BDF, scope: "full", reason: "t" });
    await atPoint;
    await a.crash();

    // From here on, only the new owner writes the record or speaks for the device.
    const seen: string[] = [];
    const kv = w.nc.subscribe(`$KV.${BUCKETS.actors}.${deviceKey(HOST, BDF)}`, {
      callback: () => {
        seen.push("claim");
      },
    });
    const evt = w.nc.subscribe(subjects.eventsOfHost(HOST), {
      callback: (_err, m) => {
        if (m.subject.includes(".agent.")) return;
        const by = (m.json() as { data?: { coordinator?: string } }).data?.coordinator;
        // The previous owner's events (sent again by the new one) are marked: they must come first.
        seen.push(`${by === "claim-A" ? "A:" : ""}${m.subject.split(".").at(-1)!}`);
      },
    });
    await w.nc.flush();
    const b = await w.coordinator({ id: "claim-B", leaseTtlMs: 2000 });
    const out = await b.handle.waitForOutcome("rc-claim", 20_000);
    expect(out.outcome).toBe("verified");
    await until(async () => seen.includes("verified"));
    kv.unsubscribe();
    evt.unsubscribe();

    const recovered = seen.indexOf("recovered");
    expect(recovered, seen.join(" ")).toBeGreaterThan(0);
    expect(seen.indexOf("claim"), seen.join(" ")).toBe(0);
    // Nothing the new owner did was said before it said it took the device over.
    expect(
      seen.slice(0, recovered).every((s) => s === "claim" || s.startsWith("A:")),
      seen.join(" "),
    ).toBe(true);
    expect(
      seen.slice(recovered).some((s) => s.startsWith("A:")),
      seen.join(" "),
    ).toBe(false);
    await b.stop();
  });
});
