// Scale: resident memory of a coordinator supervising 1,000 and 10,000 devices (goal ≤ 200 MB at 10,000),
// and the time to restore 10,000 persisted actors after a restart (goal ≤ 5 s); then a crash in the middle
// of resets and the time the next process takes to continue them.
//
// World: a real nats-server; 1,000 simulated hosts × 10 devices (virtual clock: device waits cost nothing
// here), one agent per host, in one process; the coordinator alone in its process (tsx, as bin/cxlrc.js runs
// it), resident memory read after a full GC. "Supervising" = every device has a live actor (discovered:
// bound, probed, at rest in ready, snapshot stored).
// BENCH_SCALE_HOSTS (default 1000), BENCH_SCALE_INFLIGHT (mid-reset devices at the crash, default 500),
// BENCH_HEAP_PROF=<dir>: sampling heap profile of the first coordinator, written as it exits with every
// actor live (summarize with bench/support/profile.ts).
import type { BenchRow } from "./lib.ts";
import { processRssBytes } from "./support/child.ts";
import type { Discovered, Usage } from "./support/coordinator-proc.ts";
import { failedRow, loadRow } from "./support/machine.ts";
import { request, startWorld } from "./support/world.ts";

const PER_HOST = 10;
/** How long the coordinator is left quiet after discovery before its settled RSS is read. */
const SETTLE_MS = 15_000;
const MB = 1e6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function bench(): Promise<BenchRow[]> {
  const nHosts = Number(process.env.BENCH_SCALE_HOSTS ?? 1000);
  const inflight = Number(process.env.BENCH_SCALE_INFLIGHT ?? 500);
  const rows: BenchRow[] = [loadRow("scale: start")];
  const tw = performance.now();
  const w = await startWorld({ hosts: nHosts, perHost: PER_HOST, clock: "virtual", heartbeatMs: 60_000 });
  const hosts = Array.from(new Set(w.devices.map((d) => d.host)));
  rows.push({
    name: `scale world: ${nHosts} agents × ${PER_HOST} simulated devices started`,
    runs: 1,
    value: Math.round(performance.now() - tw),
    unit: "ms",
    ratio: `agents process ${((await w.agents.rssBytes()) / MB).toFixed(0)} MB RSS`,
  });
  try {
    // 1. Memory: idle, 1,000 devices, 10,000 devices.
    const heapProf = process.env.BENCH_HEAP_PROF;
    const a = await w.coordinator({ id: "scale", ...(heapProf ? { child: { heapProfDir: heapProf } } : {}) });
    const idle = await a.call<Usage>("usage");
    rows.push({
      name: "coordinator RSS, idle (no device)",
      runs: 1,
      value: Math.round(idle.rss / MB),
      unit: "MB",
      ratio: `heap ${(idle.heapUsed / MB).toFixed(1)} MB; startCoordinator ${a.ready.startMs.toFixed(0)} ms`,
    });
    let supervised = 0;
    for (const upTo of [...new Set([Math.min(100, nHosts), nHosts])]) {
      const todo = hosts.slice(supervised / PER_HOST, upTo);
      const d = await a.call<Discovered>("discover", { hosts: todo, width: 8 });
      supervised += d.devices;
      const st = await a.call<{ states: Record<string, number>; devices: number }>("status");
      const u = await a.call<Usage>("usage");
      const n = st.devices;
      rows.push({
        name: `coordinator RSS, supervising ${n} devices`,
        runs: 1,
        value: Math.round(u.rss / MB),
        unit: "MB",
        ratio: `heap ${(u.heapUsed / MB).toFixed(1)} of ${(u.heapTotal / MB).toFixed(0)} MB, external ${(u.external / MB).toFixed(1)} MB; +${Math.round((u.rss - idle.rss) / n / 100) / 10} kB RSS, +${Math.round((u.heapUsed - idle.heapUsed) / n / 100) / 10} kB heap per device`,
        ...(n >= 10_000 ? { goal: "≤ 200 MB at 10,000 (see the settled row)" } : {}),
      });
      if (n >= 10_000) {
        // Right after discovery V8 still holds the heap it grew to while building 9,000 actors; its memory
        // reducer gives it back once the process is quiet. What an operator's graph shows from then on:
        await new Promise((r) => setTimeout(r, SETTLE_MS));
        const s = await a.call<Usage>("usage");
        rows.push({
          name: `coordinator RSS, supervising ${n} devices, ${SETTLE_MS / 1000} s later (settled)`,
          runs: 1,
          value: Math.round(s.rss / MB),
          unit: "MB",
          ratio: `heap ${(s.heapUsed / MB).toFixed(1)} of ${(s.heapTotal / MB).toFixed(0)} MB, external ${(s.external / MB).toFixed(1)} MB; idle process ${Math.round(idle.rss / MB)} MB`,
          goal: "≤ 200 MB at 10,000",
        });
      }
      rows.push({
        name: `  discovery of ${d.devices} devices (bind, probe, snapshot stored, at rest)`,
        runs: d.devices,
        value: Math.round(d.ms),
        unit: "ms",
        ratio: `${Math.round((d.devices / d.ms) * 1000)} devices/s; states ${JSON.stringify(st.states)}${d.retries ? `; ${d.retries} inventory retries` : ""}${d.failed.length ? `; ${d.failed.length} hosts FAILED, first: ${d.failed[0]}` : ""}`,
      });
    }

    // 2. Restart: the process exits on the spot (nothing stopped or released, as in a crash; a heap profile
    //    is written when asked), then a new process with every host configured restores every actor.
    await a.call("exit").catch(() => undefined);
    await a.kill();
    const b = await w.coordinator({ id: "scale", startHosts: hosts });
    const bst = await b.call<{ states: Record<string, number>; devices: number; actors: number }>("status");
    const bu = await b.call<Usage>("usage");
    rows.push({
      name: `restart: ${bst.devices} persisted devices back in service (startCoordinator with hosts)`,
      runs: 1,
      value: Math.round(b.ready.startMs),
      unit: "ms",
      ratio: `${Math.round((bst.devices / b.ready.startMs) * 1000)} devices/s; ${bst.actors} actors built (at rest: on their first request); RSS after ${Math.round(bu.rss / MB)} MB; states ${JSON.stringify(bst.states)}`,
      goal: "≤ 5 s at 10,000",
    });
    await b.stop();

    // 3. Crash mid-reset: `inflight` resets stopped before their reset step (snapshot stored, lease held),
    //    the process killed; the next process (same id) takes them over in its recovery pass and finishes them.
    if (inflight > 0) {
      // Held steps must not reach their phase deadline meanwhile: the agent call budget (which the resetting
      // deadline is made of) is 10 min for this part, in both processes.
      const policy = { ...w.policy, agentCallTimeoutMs: 600_000 };
      const c = await w.coordinator({ id: "scale", holdPhase: "resetting", policy });
      const targets = w.devices.slice(0, inflight);
      const ids = targets.map((_, i) => `crash-${i}`);
      // Paced (16 outstanding) so that few lose the fleet-state compare-and-set (refused gate-unavailable).
      let next = 0;
      const sent: Promise<number>[] = [];
      while (next < targets.length) {
        const held = await c.call<number>("held");
        const gone = w.driver.settled(ids.slice(0, next));
        while (next < targets.length && next - held - gone < 16) {
          sent.push(w.driver.request(request(ids[next]!, targets[next]!, "full")));
          next++;
        }
        await sleep(20);
      }
      await Promise.all(sent);
      // Every request is now held before its reset, or already ended (refused).
      const tHold = performance.now();
      let held = 0;
      while (performance.now() - tHold < 120_000) {
        held = await c.call<number>("held");
        if (held + w.driver.settled(ids) >= inflight) break;
        await sleep(100);
      }
      const early: Record<string, number> = {};
      for (const id of ids) {
        const o = w.driver.get(id);
        if (o)
          early[`${o.kind} ${(o.detail ?? "").split(":")[0]}`] =
            (early[`${o.kind} ${(o.detail ?? "").split(":")[0]}`] ?? 0) + 1;
      }
      await c.kill();
      const tRestart = performance.now();
      // BENCH_PROF=<dir>: a CPU profile of the process that takes the devices over (written when it stops).
      const prof = process.env.BENCH_PROF;
      const d = await w.coordinator({
        id: "scale",
        policy,
        ...(prof ? { child: { cpuProfDir: prof } } : {}),
      });
      const startMs = d.ready.startMs;
      const heldIds = ids; // every request ends with an outcome: verified after the takeover, or refused earlier
      const outs = await w.driver.outcomes(heldIds, 600_000);
      const doneMs = performance.now() - tRestart;
      const kinds: Record<string, number> = {};
      for (const o of outs.values()) kinds[o.kind] = (kinds[o.kind] ?? 0) + 1;
      rows.push({
        name: `crash mid-reset: ${held} devices taken over by the next process (recovery pass)`,
        runs: held,
        value: Math.round(startMs),
        unit: "ms",
        ratio: `among ${bst.devices} stored actors; ended before the crash: ${JSON.stringify(early)}`,
      });
      rows.push({
        name: `  … until all ${held} resets finished (from the new process's start)`,
        runs: held,
        value: Math.round(doneMs),
        unit: "ms",
        ratio: `outcomes ${JSON.stringify(kinds)}; coordinator RSS ${Math.round((await processRssBytes(d.pid)) / MB)} MB`,
      });
      await d.stop();
    }
  } catch (e) {
    rows.push(failedRow("scale", e));
  } finally {
    await w.close();
  }
  rows.push(loadRow("scale: end"));
  return rows;
}
