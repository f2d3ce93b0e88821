// What the coordinator costs per reset, against the time the device itself must take, and against a plain
// script calling the agent's operations directly (the baseline, same devices, same run).
//
// World: a real nats-server; 100 simulated hosts × 10 CXL Type-2 devices (cache enabled, decoders 0 and 1
// committed) on the real clock, one agent per host, all in one process; the coordinator in a process of its
// own. A request goes into the stream (as a fleet controller sends it) and its wall time ends when the
// coordinator's outcome event arrives. Device time is every wait the agent's operations asked of the device
// (post-reset 100 ms, CXL Reset and commit polls), booked per device by the simulator's clock, so
//   overhead = wall − device waits,   ratio = overhead / device waits (goal ≤ 1 %, p99 ≤ 2 ms at 1,000).
// The baseline script runs probe, save, quiesce, reset, restore, verify on the same device views.
// The contract floor (support/floor-proc.ts, after the coordinator has stopped, full scope only) does on the
// same bus and agents only what issue #16's design cannot do without: the request from the stream, probe,
// save, image and decision stored, one fenced reset-restore-verify operation, the outcome event. What the
// floor costs above the script, no coordinator can save; what the coordinator costs above the floor is its own.
// It runs twice: the bus work alone, then with the 22 events per reset the bus contract has a coordinator publish.
// At the largest level the design floor follows: the floor with its events plus the lifecycle machine alone
// (machine.bench.ts, effects in-process) at as many resets at once, the least CPU per reset a coordinator built
// as issue #16 asks (the bus contract, one XState actor per device) can use on this machine, beside the goal.
//
// BENCH_LEVELS (default "1,100,1000"), BENCH_SCOPES (default "full,io"; io runs at levels ≤ 100),
// BENCH_HEAP_PROF=<dir>: a sampling heap profile of the coordinator (what is live when it stops).
// BENCH_FLOOR=0: no contract floor rows.
// BENCH_COORD_FLAGS: node flags for the coordinator's process (support/child.ts), e.g. "--single-threaded-gc":
// a slower coordinator, overloaded sooner.
// BENCH_PROF=<dir>: a CPU profile of the coordinator process per level, coordinator-<scope>-<n>.cpuprofile
// (after discovery and warm-up; summarize with `npx tsx bench/support/profile.ts <dir>`).
// BENCH_ALLOC_PROF=<dir>: what the coordinator allocates per level (sampled, collected objects included),
// coordinator-<scope>-<n>.heapprofile (summarized by the same script).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type BenchRow, percentile, summarize } from "./lib.ts";
import { machineRound } from "./machine.bench.ts";
import type { BaselineResult } from "./support/agents-proc.ts";
import { type Child, type LoopDelay, processCpuMs, startChild } from "./support/child.ts";
import type { Discovered } from "./support/coordinator-proc.ts";
import type { DeviceAccount } from "./support/fleet.ts";
import { accountKey } from "./support/fleet.ts";
import { failedRow, loadRow } from "./support/machine.ts";
import { type Device, FLOOR_REQUESTS, request, startWorld, type World } from "./support/world.ts";

const HOSTS = 100;
const PER_HOST = 10;
const ROUNDS: Record<number, number> = { 1: 30, 100: 3, 1000: 1 };
const OUTCOME_TIMEOUT_MS = 300_000;
/**
 * After the 1,000 level's last outcome, how long what the resets left behind is counted: longer than one
 * recovery pass's interval (half the bench coordinator's 15 s lease), so the pass after the level is in it.
 */
const TAIL_MS = 8_000;
/** How long each process's idle CPU rate is sampled before a round whose tail is counted. */
const IDLE_SAMPLE_MS = 2_000;

interface Sample {
  wallMs: number;
  waitMs: number;
  opMs: number;
}

interface LevelResult {
  samples: Sample[];
  outcomes: Record<string, number>;
  refusals: Record<string, number>;
  /** The first message seen per outcome kind other than verified. */
  details: Record<string, string>;
  /** CPU ms used during the rounds, per process. */
  cpu: { coordinator: number; nats: number; agents: number };
  /**
   * With `tailMs`: CPU ms used in the `tailMs` after each round's last outcome, above each process's idle rate
   * (measured just before the round): the work the resets left for after their outcomes (lease releases, the
   * last known good images, the next recovery pass), which the rows above do not count.
   */
  tail: { coordinator: number; nats: number; agents: number; ms: number } | null;
  /**
   * Event-loop delay during the rounds (the worst round): how far behind the coordinator (or floor) and the
   * agents' process (every simulated host's agent in one process) ran.
   */
  loop: { coordinator: LoopDelay; agents: LoopDelay };
  /** Wall time of all rounds, ms. */
  elapsedMs: number;
  events: { coordinator: number; agent: number; bytes: number };
  method: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `rounds` rounds of `n` requests at once (one per device); per verified request its wall, wait and op time. */
async function coordinatorLevel(
  w: World,
  proc: Pick<Child, "cpuMs" | "call">,
  scope: "io" | "full",
  n: number,
  rounds: number,
  tag: string,
  /** Where requests go: the coordinator's subject by default, or the contract floor's (floor-proc.ts). */
  subjectOf?: (d: Device) => string,
  opts: { tailMs?: number } = {},
): Promise<LevelResult> {
  const devices = w.devices.slice(0, n);
  const res: LevelResult = {
    samples: [],
    outcomes: {},
    refusals: {},
    details: {},
    cpu: { coordinator: 0, nats: 0, agents: 0 },
    tail: opts.tailMs ? { coordinator: 0, nats: 0, agents: 0, ms: opts.tailMs } : null,
    loop: { coordinator: { p99Ms: 0, maxMs: 0 }, agents: { p99Ms: 0, maxMs: 0 } },
    elapsedMs: 0,
    events: { coordinator: 0, agent: 0, bytes: 0 },
    method: "",
  };
  for (let r = 0; r < rounds; r++) {
    await w.agents.call("take");
    // Each process's idle rate (CPU ms per ms), for what the round leaves behind after its outcomes.
    let idleRate: { coordinator: number; nats: number; agents: number } | null = null;
    if (opts.tailMs) {
      const a = await cpuNow(w, proc);
      const ta = performance.now();
      await sleep(IDLE_SAMPLE_MS);
      const b = await cpuNow(w, proc);
      const dt = performance.now() - ta;
      idleRate = {
        coordinator: (b.coordinator - a.coordinator) / dt,
        nats: (b.nats - a.nats) / dt,
        agents: (b.agents - a.agents) / dt,
      };
    }
    w.driver.takeEventCounts();
    const cpu0 = await cpuNow(w, proc);
    await Promise.all([proc.call("loopDelay"), w.agents.call("loopDelay")]);
    const t0 = performance.now();
    const ids = devices.map((_, i) => `${tag}-${scope}-${n}-${r}-${i}`);
    const sent = await Promise.all(
      devices.map((d, i) => w.driver.request(request(ids[i]!, d, scope), subjectOf?.(d))),
    );
    const outs = await w.driver.outcomes(ids, OUTCOME_TIMEOUT_MS);
    res.elapsedMs += performance.now() - t0;
    const [dc, da] = await Promise.all([
      proc.call<LoopDelay>("loopDelay"),
      w.agents.call<LoopDelay>("loopDelay"),
    ]);
    const worst = (a: LoopDelay, b: LoopDelay) => ({
      p99Ms: Math.max(a.p99Ms, b.p99Ms),
      maxMs: Math.max(a.maxMs, b.maxMs),
    });
    res.loop.coordinator = worst(res.loop.coordinator, dc);
    res.loop.agents = worst(res.loop.agents, da);
    const cpu1 = await cpuNow(w, proc);
    res.cpu.coordinator += cpu1.coordinator - cpu0.coordinator;
    res.cpu.nats += cpu1.nats - cpu0.nats;
    res.cpu.agents += cpu1.agents - cpu0.agents;
    if (opts.tailMs && idleRate && res.tail) {
      const t1 = performance.now();
      await sleep(opts.tailMs);
      const cpu2 = await cpuNow(w, proc);
      const dt = performance.now() - t1;
      const above = (k: "coordinator" | "nats" | "agents") =>
        Math.max(0, cpu2[k] - cpu1[k] - idleRate[k] * dt);
      res.tail.coordinator += above("coordinator");
      res.tail.nats += above("nats");
      res.tail.agents += above("agents");
    }
    // Let the tail (state.entered ready, lease release) land before the accounts and event counts are read.
    await sleep(n >= 100 ? 1000 : 50);
    const acc = await w.agents.call<Record<string, DeviceAccount>>("take");
    const ev = w.driver.takeEventCounts();
    res.events.coordinator += ev.coordinator;
    res.events.agent += ev.agent;
    res.events.bytes += ev.bytes;
    devices.forEach((d, i) => {
      const o = outs.get(ids[i]!)!;
      res.outcomes[o.kind] = (res.outcomes[o.kind] ?? 0) + 1;
      if (o.kind !== "verified" && o.detail) res.details[o.kind] ??= o.detail.slice(0, 160);
      if (o.kind === "refused") {
        const reason = (o.detail ?? "?").split(":")[0]!;
        res.refusals[reason] = (res.refusals[reason] ?? 0) + 1;
      }
      if (o.kind !== "verified") return;
      res.method ||= w.driver.method(ids[i]!) ?? "";
      const a = acc[accountKey(d.host, d.bdf)];
      res.samples.push({ wallMs: o.atMs - sent[i]!, waitMs: a?.waitMs ?? 0, opMs: a?.opMs ?? 0 });
    });
    if (n >= 100) await sleep(500);
  }
  return res;
}

/** Until the coordinator uses < 5 % of a core over a second (at most a minute). */
async function idle(cpuMs: () => Promise<number>): Promise<void> {
  const end = performance.now() + 60_000;
  while (performance.now() < end) {
    const c0 = await cpuMs();
    await sleep(1000);
    if ((await cpuMs()) - c0 < 50) return;
  }
}

/** CPU used so far by the coordinator's process, nats-server and the agents' process. */
async function cpuNow(w: World, coordinator: Pick<Child, "cpuMs">) {
  return {
    coordinator: await coordinator.cpuMs(),
    nats: w.server.pid ? await processCpuMs(w.server.pid) : 0,
    agents: await w.agents.cpuMs(),
  };
}

interface BaselineLevel {
  samples: Sample[];
  /** Runs that did not end verified, and the first error. */
  failed: number;
  firstError: string;
}

async function baselineLevel(
  w: World,
  scope: "io" | "full",
  method: string,
  n: number,
  rounds: number,
): Promise<BaselineLevel> {
  const devices: Device[] = w.devices.slice(0, n);
  const out: BaselineLevel = { samples: [], failed: 0, firstError: "" };
  for (let r = 0; r < rounds; r++) {
    const b = await w.agents.call<BaselineResult>("baseline", { devices, scope, method }, OUTCOME_TIMEOUT_MS);
    for (const x of b.runs) {
      if (!x.passed) {
        out.failed++;
        out.firstError ||= (x.error ?? "").slice(0, 200);
        continue;
      }
      out.samples.push({ wallMs: x.wallMs, waitMs: x.waitMs, opMs: x.opMs });
    }
  }
  return out;
}

const r3 = (v: number) => Math.round(v * 1000) / 1000;
/** Requests of a level that got an outcome, whatever it was. */
const requests = (l: LevelResult) => Object.values(l.outcomes).reduce((a, b) => a + b, 0);
const pct = (v: number) => `${(v * 100).toFixed(v < 0.1 ? 2 : 1)}%`;

function rows(scope: string, n: number, c: LevelResult, bl: BaselineLevel): BenchRow[] {
  const base = bl.samples;
  const label = `${scope}/${c.method || "?"}, ${n} concurrent`;
  const out: BenchRow[] = [];
  const total = requests(c);
  const notVerified = Object.entries(c.outcomes)
    .filter(([k]) => k !== "verified")
    .map(([k, v]) => `${v} ${k}`);
  const firstDetails = Object.entries(c.details)
    .map(([k, v]) => `${k}: "${v}"`)
    .join("; ");
  if (c.samples.length === 0) {
    out.push({
      name: `coordinator reset ${label}: NO reset verified`,
      runs: total,
      value: 0,
      unit: "verified",
      ratio: `${notVerified.join(", ")}; ${Object.entries(c.refusals)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")}`,
    });
    return out;
  }
  const wall = summarize(c.samples.map((s) => s.wallMs));
  const wait = summarize(c.samples.map((s) => s.waitMs));
  const over = c.samples.map((s) => s.wallMs - s.waitMs).sort((a, b) => a - b);
  const overRatio = c.samples.map((s) => (s.wallMs - s.waitMs) / s.waitMs).sort((a, b) => a - b);
  const outside = summarize(c.samples.map((s) => s.wallMs - s.opMs));
  const bWall = summarize(base.map((s) => s.wallMs));
  const bOver = summarize(base.map((s) => s.wallMs - s.waitMs));
  out.push({
    name: `coordinator reset ${label}: wall (request → outcome event)`,
    runs: c.samples.length,
    value: r3(wall.mean),
    unit: "ms",
    p50: r3(wall.p50),
    p99: r3(wall.p99),
    ratio: `${(wall.p50 / bWall.p50).toFixed(2)}× baseline p50, ${(wall.p99 / bWall.p99).toFixed(2)}× p99`,
  });
  out.push({
    name: `  overhead = wall − device waits (${r3(wait.p50)} ms)`,
    runs: c.samples.length,
    value: r3(over.reduce((a, b) => a + b, 0) / over.length),
    unit: "ms",
    p50: r3(percentile(over, 50)),
    p99: r3(percentile(over, 99)),
    ratio: `${pct(percentile(overRatio, 50))} p50, ${pct(percentile(overRatio, 99))} p99 of device time`,
    goal: n >= 1000 ? "≤ 1%, p99 ≤ 2 ms" : "≤ 1%",
  });
  out.push({
    name: "  of which outside agent operations (wall − time in ops)",
    runs: c.samples.length,
    value: r3(outside.mean),
    unit: "ms",
    p50: r3(outside.p50),
    p99: r3(outside.p99),
  });
  out.push({
    name: `baseline script ${label}: wall (probe…verify in-process)`,
    runs: base.length,
    value: r3(bWall.mean),
    unit: "ms",
    p50: r3(bWall.p50),
    p99: r3(bWall.p99),
    ratio: `overhead p50 ${r3(bOver.p50)} ms, p99 ${r3(bOver.p99)} ms${bl.failed ? `; ${bl.failed} FAILED, first: ${bl.firstError}` : ""}`,
  });
  const perReset = (ms: number) => (ms / total).toFixed(1);
  out.push({
    name: `  CPU per request ${label}: coordinator`,
    runs: total,
    value: Number(perReset(c.cpu.coordinator)),
    unit: "ms CPU",
    ratio: `nats-server ${perReset(c.cpu.nats)}, agents ${perReset(c.cpu.agents)} ms; ${((total / c.elapsedMs) * 1000).toFixed(0)} req/s`,
    ...(n >= 1000 ? { goal: "≤ 2 ms (nats-server ≤ 2 ms)" } : {}),
  });
  if (c.tail) {
    const t = c.tail;
    out.push({
      name: `  CPU per request ${label}, with what follows the outcomes: coordinator`,
      runs: total,
      value: Number(perReset(c.cpu.coordinator + t.coordinator)),
      unit: "ms CPU",
      ratio: `nats-server ${perReset(c.cpu.nats + t.nats)}, agents ${perReset(c.cpu.agents + t.agents)} ms; of it in the ${t.ms / 1000} s after the last outcome, above the idle rate: ${(t.coordinator / total).toFixed(2)}, ${(t.nats / total).toFixed(2)}, ${(t.agents / total).toFixed(2)} ms`,
    });
  }
  out.push({
    name: `  event-loop delay ${label}: coordinator`,
    runs: total,
    value: Math.round(c.loop.coordinator.maxMs),
    unit: "ms max",
    p99: Math.round(c.loop.coordinator.p99Ms),
    ratio: `agents' process max ${Math.round(c.loop.agents.maxMs)} ms, p99 ${Math.round(c.loop.agents.p99Ms)} ms`,
  });
  out.push({
    name: `  events per request ${label} (coordinator + agent)`,
    runs: total,
    value: Math.round(((c.events.coordinator + c.events.agent) / total) * 10) / 10,
    unit: "events",
    ratio: `${(c.events.coordinator / total).toFixed(1)} + ${(c.events.agent / total).toFixed(1)}, ${Math.round(c.events.bytes / total)} B; ${Math.round(((c.events.coordinator + c.events.agent) / c.elapsedMs) * 1000)} events/s`,
  });
  if (notVerified.length > 0) {
    out.push({
      name: `  NOT verified ${label}`,
      runs: total,
      value: total - c.samples.length,
      unit: "requests",
      ratio: `${notVerified.join(", ")}; ${Object.entries(c.refusals)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")}; first: ${firstDetails}`,
    });
  }
  return out;
}

/**
 * The design floor at one level: the contract floor's CPU per reset with its events (`floorMs`) plus the
 * lifecycle machine alone at as many resets at once (median of 3 rounds after one of warm-up), against the
 * coordinator's CPU per reset (`coordinatorMs`) of the same run.
 */
async function designFloorRow(n: number, floorMs: number, coordinatorMs: number): Promise<BenchRow> {
  const cpu: number[] = [];
  for (let r = 0; r <= 3; r++) {
    const round = await machineRound(n);
    if (r > 0) cpu.push(round.cpuMs);
  }
  const machineMs = summarize(cpu).p50;
  const sum = floorMs + machineMs;
  return {
    name: `design floor full/cxl, ${n} concurrent: CPU per request (contract floor with its events + the machine alone)`,
    runs: n,
    value: r3(sum),
    unit: "ms CPU",
    ratio: `floor ${floorMs.toFixed(2)} + machine ${machineMs.toFixed(2)} ms; coordinator ${coordinatorMs.toFixed(2)} ms = ${(coordinatorMs / sum).toFixed(2)}× it, ${(coordinatorMs - sum).toFixed(2)} ms above`,
    goal: "coordinator ≤ 2 ms",
  };
}

/**
 * The contract floor beside the coordinator at one level (floor-proc.ts: the bus work issue #16's design cannot
 * do without, no coordinator logic), against the same level's script and coordinator.
 */
function floorRows(
  n: number,
  f: LevelResult,
  c: LevelResult,
  bl: BaselineLevel,
  events: boolean,
): BenchRow[] {
  const label = `${events ? "with its 22 events, " : ""}full/cxl, ${n} concurrent`;
  const total = requests(f);
  if (f.samples.length === 0) {
    const first = Object.entries(f.details).map(([k, v]) => `${k}: "${v}"`);
    return [
      {
        name: `contract floor ${label}: NO reset verified`,
        runs: total,
        value: 0,
        unit: "verified",
        ratio: first.join("; "),
      },
    ];
  }
  const wall = summarize(f.samples.map((s) => s.wallMs));
  const bWall = summarize(bl.samples.map((s) => s.wallMs));
  const cWall = c.samples.length > 0 ? summarize(c.samples.map((s) => s.wallMs)) : null;
  const plus = (v: number) => `${v >= 0 ? "+" : ""}${v.toFixed(1)}`;
  const perReset = (ms: number) => (ms / total).toFixed(1);
  return [
    {
      name: `contract floor ${label}: wall (request → outcome event)`,
      runs: f.samples.length,
      value: r3(wall.mean),
      unit: "ms",
      p50: r3(wall.p50),
      p99: r3(wall.p99),
      ratio:
        `script ${plus(wall.p50 - bWall.p50)} ms p50, ${plus(wall.p99 - bWall.p99)} ms p99 (${(wall.p99 / bWall.p99).toFixed(2)}× p99)` +
        (cWall
          ? `; coordinator ${plus(cWall.p50 - wall.p50)} ms p50, ${plus(cWall.p99 - wall.p99)} ms p99 above it`
          : "") +
        (total > f.samples.length ? `; ${total - f.samples.length} not verified` : ""),
    },
    {
      name: `  CPU per request ${label}: contract floor`,
      runs: total,
      value: Number(perReset(f.cpu.coordinator)),
      unit: "ms CPU",
      ratio: `nats-server ${perReset(f.cpu.nats)}, agents ${perReset(f.cpu.agents)} ms; ${((total / f.elapsedMs) * 1000).toFixed(0)} req/s`,
    },
  ];
}

export async function bench(): Promise<BenchRow[]> {
  const levels = (process.env.BENCH_LEVELS ?? "1,100,1000").split(",").map(Number);
  const scopes = (process.env.BENCH_SCOPES ?? "full,io").split(",") as Array<"io" | "full">;
  const prof = process.env.BENCH_PROF;
  if (prof) mkdirSync(prof, { recursive: true });
  const alloc = process.env.BENCH_ALLOC_PROF;
  if (alloc) mkdirSync(alloc, { recursive: true });
  const w = await startWorld({ hosts: HOSTS, perHost: PER_HOST });
  const out: BenchRow[] = [loadRow("coordinator: start")];
  try {
    const heapProf = process.env.BENCH_HEAP_PROF;
    const coord = await w.coordinator(heapProf ? { child: { heapProfDir: heapProf } } : {});
    const hosts = [...new Set(w.devices.map((d) => d.host))];
    const disc = await coord.call<Discovered>("discover", { hosts });
    if (disc.devices !== HOSTS * PER_HOST || disc.failed.length > 0) {
      out.push({
        name: "coordinator: discovery incomplete",
        runs: HOSTS * PER_HOST,
        value: disc.devices,
        unit: "devices",
        ratio: disc.failed.slice(0, 2).join("; "),
      });
    }
    // Warm-up: JIT, connections, the fleet state, every device's actor at rest.
    // At least 30 resets each, so that a level-1-only run compares warm code with warm code.
    const warm = Math.min(100, Math.max(...levels));
    const warmRounds = Math.ceil(30 / warm);
    await coordinatorLevel(w, coord, "full", warm, warmRounds, "warm");
    await baselineLevel(w, "full", "cxl", warm, warmRounds);
    // Largest level last: an overloaded coordinator keeps working after the outcomes are out.
    const plan = scopes.flatMap((scope) =>
      levels.filter((n) => scope === "full" || n <= 100).map((n) => ({ scope, n })),
    );
    plan.sort((a, b) => Number(a.n >= 1000) - Number(b.n >= 1000));
    /** The full-scope levels as measured, for the contract floor's rows. */
    const measured = new Map<number, { c: LevelResult; base: BaselineLevel }>();
    for (const { scope, n } of plan) {
      await idle(() => coord.cpuMs());
      if (prof) await coord.call("profStart");
      if (alloc) await coord.call("allocStart");
      const c = await coordinatorLevel(w, coord, scope, n, ROUNDS[n] ?? 1, "run", undefined, {
        ...(n >= 1000 ? { tailMs: TAIL_MS } : {}),
      });
      if (prof) await coord.call("profStop", { path: join(prof, `coordinator-${scope}-${n}.cpuprofile`) });
      if (alloc)
        await coord.call("allocStop", { path: join(alloc, `coordinator-${scope}-${n}.heapprofile`) });
      const method = c.method || (scope === "io" ? "flr" : "cxl");
      const base = await baselineLevel(w, scope, method, n, ROUNDS[n] ?? 1);
      out.push(...rows(scope, n, c, base));
      if (scope === "full") measured.set(n, { c, base });
    }
    await coord.stop();
    // The floor after the coordinator has stopped (nothing else consumes, writes or publishes meanwhile).
    // Twice: the bus work alone, then with the 22 events the contract has a coordinator say of each reset.
    /** Per level, the floor's coordinator CPU per reset with its events. */
    const floorWithEvents = new Map<number, number>();
    for (const events of process.env.BENCH_FLOOR === "0" || measured.size === 0 ? [] : [false, true]) {
      const floor = await startChild("floor-proc.ts", {
        env: { BENCH_NATS: w.server.url, BENCH_FLOOR_EVENTS: events ? "1" : "0" },
      });
      try {
        const floorSubject = (d: Device) => `${FLOOR_REQUESTS}.${d.host}`;
        const tag = events ? "floor-ev" : "floor";
        await coordinatorLevel(w, floor, "full", warm, warmRounds, `${tag}-warm`, floorSubject);
        for (const [n, { c, base }] of measured) {
          await idle(() => floor.cpuMs());
          const f = await coordinatorLevel(w, floor, "full", n, ROUNDS[n] ?? 1, tag, floorSubject);
          out.push(...floorRows(n, f, c, base, events));
          if (events && f.samples.length > 0) floorWithEvents.set(n, f.cpu.coordinator / requests(f));
        }
      } finally {
        await floor.stop(30_000).catch(() => floor.kill());
      }
    }
    const top = Math.max(...floorWithEvents.keys());
    const atTop = measured.get(top);
    if (top >= 1000 && atTop) {
      out.push(
        await designFloorRow(top, floorWithEvents.get(top)!, atTop.c.cpu.coordinator / requests(atTop.c)),
      );
    }
  } catch (e) {
    out.push(failedRow("coordinator", e));
  } finally {
    await w.close();
  }
  out.push(loadRow("coordinator: end"));
  return out;
}
