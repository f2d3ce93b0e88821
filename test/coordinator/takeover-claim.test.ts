// A takeover is said only once it is claimed: the new owner's `recovered` event goes out after its claim write
// of the device's record lands, never before (a coordinator whose claim loses to another's must not appear on
// the stream as a second driver: chaos single-driver). Observed on one subscriber connection, which sees one
// publisher's messages in the order the server took them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent } from "../../services/agent/service.ts";
import { openStore } from "../../services/coordinator/store.ts";
import { BUCKETS, deviceKey, subjects } from "../../shared/bus/subjects.ts";
import { createSimHost, simpleHost, VirtualClock } from "../../shared/sim/index.ts";
import { publishRequest, readEvents, startWorld, stopAt, until, type World } from "./helpers.ts";

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
    // Stopped before restoring and never let go: A crashes there.
    const stop = stopAt("restoring");
    const a = await w.coordinator({ id: "claim-A", stepHook: stop.hook });
    await publishRequest(w.js, { requestId: "rc-claim", host: HOST, bdf: BDF, scope: "full", reason: "t" });
    await stop.atPoint;
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

  it("a coordinator whose record was claimed meanwhile says nothing more about the device", async () => {
    const host = "claimed";
    const sim = createSimHost(simpleHost({ name: host }), { clock: new VirtualClock() });
    const agent = await startAgent({ nc: w.agentNc, host, backend: sim, heartbeatMs: 60_000 });
    // Regating reads the device and does not write ahead: its events wait for the next write.
    const stop = stopAt("regating");
    const a = await w.coordinator({ id: "claimed-A", stepHook: stop.hook });
    await publishRequest(w.js, { requestId: "rc-claimed", host, bdf: BDF, scope: "full", reason: "t" });
    await stop.atPoint;
    // Another coordinator's claim lands on the device's record (what a bus that lost a lease entry allows).
    const store = await openStore(w.nc, { leaseTtlMs: 2000 });
    const key = deviceKey(host, BDF);
    const rec = await store.loadActor(key);
    expect(rec?.value.owner).toBe("claimed-A");
    await store.saveActor(key, { ...rec!.value, owner: "intruder" }, rec!.revision);
    const after = (await readEvents(w.jsm, { host })).at(-1)?.seq ?? 0;
    stop.release();

    // A's next write fails against the claim: it gives the device up, and nothing it held is said.
    expect(await until(async () => !(await a.handle.status()).leasesHeld.includes(key))).toBe(true);
    await new Promise((r) => setTimeout(r, 700));
    const mine = (await readEvents(w.jsm, { host, source: "coordinator" })).filter(
      (e) => e.seq > after && e.event.data.coordinator === "claimed-A",
    );
    // If anything, a later takeover of the record (a new stint), never the old one going on.
    expect(mine[0]?.event.kind ?? "recovered", mine.map((e) => e.event.kind).join(" ")).toBe("recovered");
    const quiesced = (await readEvents(w.jsm, { host, source: "agent" })).filter(
      (e) => e.seq > after && e.event.kind === "op.started" && e.event.data.op === "quiesce",
    );
    expect(quiesced).toEqual([]);
    await a.stop();
    await agent.stop();
  });
});
