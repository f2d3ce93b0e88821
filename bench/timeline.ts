// One reset on a quiet bus, its events in order with the time since the request: where the wall goes.
// `npx tsx bench/timeline.ts [hosts] [perHost] [scope] [warm]`
import { jetstream } from "@nats-io/jetstream";
import { STREAMS } from "../shared/bus/subjects.ts";
import { request, startWorld } from "./support/world.ts";

const hosts = Number(process.argv[2] ?? 10);
const perHost = Number(process.argv[3] ?? 10);
const scope = (process.argv[4] ?? "full") as "io" | "full";
/** `warm`: every round on the first device (its actor built by the first), as the benches measure it. */
const warm = process.argv[5] === "warm";
const w = await startWorld({ hosts, perHost });
try {
  const coord = await w.coordinator();
  for (let round = 0; round < 4; round++) {
    const d = w.devices[warm ? 0 : round]!;
    const id = `tl-${round}-${Date.now()}`;
    const tw = Date.now();
    const t0 = await w.driver.request(request(id, d, scope));
    const out = await w.driver.outcomes([id], 60_000);
    const o = out.get(id);
    // As the coordinator bench does between rounds: the tail (release, rest state) lands before the next.
    await new Promise((r) => setTimeout(r, 100));
    if (round < 3) continue;
    console.log(
      `outcome ${o?.kind} wall ${(o!.atMs - t0).toFixed(1)} ms, request published at ${tw} (ms since epoch)`,
    );
    const jsm = w.driver.jsm;
    const si = await jsm.streams.info(STREAMS.events.name);
    const js = jetstream(w.driver.nc);
    const c = await js.consumers.get(STREAMS.events.name, {
      opt_start_time: new Date(tw - 50).toISOString(),
    } as never);
    const end = si.state.last_seq;
    const dec = new TextDecoder();
    for (;;) {
      const m = await c.next({ expires: 1000 });
      if (!m) break;
      const e = JSON.parse(dec.decode(m.data));
      if (e.kind === "heartbeat" || e.bdf !== d.bdf || e.host !== d.host) {
        if (m.seq >= end) break;
        continue;
      }
      const src = m.subject.startsWith("cxlrc.agt.") ? "agent" : "coord";
      const extra =
        e.kind === "state.entered"
          ? e.data?.state
          : e.kind.startsWith("op.")
            ? `${e.data?.op} ${e.data?.durationMs !== undefined ? `${e.data.durationMs.toFixed(2)} ms` : ""}`
            : "";
      console.log(
        `${(Date.parse(e.time) - tw).toFixed(0).padStart(5)}  ${src.padEnd(5)} ${e.kind} ${extra ?? ""}`,
      );
      if (m.seq >= end) break;
    }
  }
  await coord.stop(30_000);
} finally {
  await w.close();
}
