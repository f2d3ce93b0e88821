// Child process: one cxlrc coordinator (startCoordinator, as `cxlrc serve coordinator` runs it) on its own
// NATS connection, alone in its process so that its CPU time and resident memory can be read.
//
// Environment: BENCH_NATS, BENCH_COORD_ID, BENCH_POLICY (JSON overrides), BENCH_LEASE_TTL_MS,
// BENCH_START_HOSTS (JSON list: hosts discovered during start, as a restart with `hosts` configured does),
// BENCH_HOLD_PHASE (a lifecycle phase whose step never starts: devices stop there, as at a crash),
// BENCH_LOG (a log level: the coordinator's log on stdout; silent otherwise), BENCH_COORD_FROM=dist (the
// coordinator's code from dist/, the JavaScript `npm run build` makes and `cxlrc serve` runs, instead of the
// TypeScript sources through tsx).
// Commands: discover, usage, status, held, stop.
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Policy } from "../../machines/policy/defaults.ts";
import type { CoordinatorHandle } from "../../services/coordinator/service.ts";
import type { LogLevel } from "../../shared/log.ts";
import { gc, sendFailed, sendReady, serveParent } from "./child.ts";

export interface CoordinatorReady {
  /** startCoordinator() until it resolved (store, streams, recovery pass, start hosts). */
  startMs: number;
  /** Connect + import time before that. */
  bootMs: number;
}

export interface Discovered {
  devices: number;
  ms: number;
  /** Inventory calls tried again. */
  retries: number;
  /** Hosts not discovered after 3 tries, with the last error. */
  failed: string[];
}

export interface Usage {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  cpuUserUs: number;
  cpuSystemUs: number;
}

async function pool<T>(items: T[], width: number, fn: (t: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** The coordinator's modules: the sources (through tsx), or dist/ as built (BENCH_COORD_FROM=dist). */
async function modules() {
  if (process.env.BENCH_COORD_FROM === "dist") {
    const dist = new URL("../../dist/", import.meta.url).href;
    return {
      service: (await import(
        `${dist}services/coordinator/service.js`
      )) as typeof import("../../services/coordinator/service.ts"),
      client: (await import(`${dist}shared/bus/client.js`)) as typeof import("../../shared/bus/client.ts"),
      log: (await import(`${dist}shared/log.js`)) as typeof import("../../shared/log.ts"),
    };
  }
  return {
    service: await import("../../services/coordinator/service.ts"),
    client: await import("../../shared/bus/client.ts"),
    log: await import("../../shared/log.ts"),
  };
}

async function main(): Promise<void> {
  const boot = performance.now();
  const env = process.env;
  const {
    service: { startCoordinator },
    client: { connectBus },
    log: { createLogger, silentLogger },
  } = await modules();
  const nc: NatsConnection = await connectBus({
    servers: env.BENCH_NATS ?? "",
    name: `bench coordinator ${env.BENCH_COORD_ID ?? "c1"}`,
    log: silentLogger,
    coalesceWrites: true,
  });
  const policy = JSON.parse(env.BENCH_POLICY ?? "{}") as Partial<Policy>;
  const startHosts = JSON.parse(env.BENCH_START_HOSTS ?? "[]") as string[];
  const holdPhase = env.BENCH_HOLD_PHASE;
  let held = 0;
  const t0 = performance.now();
  const handle: CoordinatorHandle = await startCoordinator({
    nc,
    id: env.BENCH_COORD_ID ?? "c1",
    policy,
    leaseTtlMs: Number(env.BENCH_LEASE_TTL_MS ?? 15_000),
    metricsPort: null,
    // BENCH_LOG=debug: the coordinator's log on stdout (its `step done` lines say where a step's time went).
    log: env.BENCH_LOG ? createLogger("coordinator", { level: env.BENCH_LOG as LogLevel }) : silentLogger,
    ...(startHosts.length > 0 ? { hosts: startHosts } : {}),
    ...(holdPhase
      ? {
          stepHook: (phase: string, point: "before" | "after") => {
            if (phase !== holdPhase || point !== "before") return;
            held++;
            return new Promise<void>(() => undefined);
          },
        }
      : {}),
  });
  const startMs = performance.now() - t0;
  /** Inspector sessions by profile kind (a CPU profile and an allocation sampling can run together). */
  const sessions = new Map<"cpu" | "alloc", Session>();
  const open = (kind: "cpu" | "alloc") => {
    const s = new Session();
    s.connect();
    sessions.set(kind, s);
    return s;
  };
  /** Stop a kind's profile, write it to `path` as JSON, close its session. */
  const finish = async (
    kind: "cpu" | "alloc",
    stop: (s: Session) => Promise<{ profile: unknown }>,
    path: string,
  ): Promise<string | null> => {
    const s = sessions.get(kind);
    if (!s) return null;
    sessions.delete(kind);
    const { profile } = await stop(s);
    s.disconnect();
    writeFileSync(path, JSON.stringify(profile));
    return path;
  };

  serveParent({
    /** Discover hosts, `width` at a time; a host whose inventory call fails is tried up to 3 times. */
    discover: async (a) => {
      const { hosts, width } = a as { hosts: string[]; width?: number };
      const t = performance.now();
      let devices = 0;
      let retries = 0;
      const failed: string[] = [];
      await pool(hosts, width ?? 8, async (h) => {
        for (let attempt = 1; ; attempt++) {
          try {
            const found = await handle.discover(h);
            devices += found.length;
            return;
          } catch (e) {
            if (attempt >= 3) {
              failed.push(`${h}: ${(e as Error).message}`);
              return;
            }
            retries++;
          }
        }
      });
      return { devices, ms: performance.now() - t, retries, failed } satisfies Discovered;
    },
    usage: (): Usage => {
      gc();
      gc();
      const m = process.memoryUsage();
      const c = process.cpuUsage();
      return {
        rss: m.rss,
        heapUsed: m.heapUsed,
        heapTotal: m.heapTotal,
        external: m.external,
        arrayBuffers: m.arrayBuffers,
        cpuUserUs: c.user,
        cpuSystemUs: c.system,
      };
    },
    status: async () => {
      const s = await handle.status();
      // Every device's state (built here or known from the stored headers), and how many have an actor here.
      const states: Record<string, number> = {};
      for (const d of s.devices) states[d.state] = (states[d.state] ?? 0) + 1;
      const actors = Object.values(s.states).reduce((a, b) => a + b, 0);
      return { states, actors, leases: s.leasesHeld.length, waiting: s.waiting, devices: s.devices.length };
    },
    held: () => held,
    /** CPU profile of what runs between profStart and profStop (written as a .cpuprofile to `path`). */
    profStart: async () => {
      const s = open("cpu");
      await s.post("Profiler.enable");
      await s.post("Profiler.start");
    },
    profStop: (a) => finish("cpu", (s) => s.post("Profiler.stop"), (a as { path: string }).path),
    /**
     * Sampling of every allocation (collected ones too: what the garbage collector works for); with
     * BENCH_ALLOC_SURVIVED=1 only what outlived a scavenge (promoted to the old generation: what makes the
     * young generation's collections slow and the old one's necessary).
     */
    allocStart: async () => {
      const s = open("alloc");
      await s.post("HeapProfiler.enable");
      await s.post("HeapProfiler.startSampling", {
        samplingInterval: 16_384,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: process.env.BENCH_ALLOC_SURVIVED !== "1",
      });
    },
    allocStop: (a) =>
      finish("alloc", (s) => s.post("HeapProfiler.stopSampling"), (a as { path: string }).path),
    /** Exit at once, actors still live (a heap profile written at exit then shows what they hold). */
    exit: () => process.exit(0),
    stop: async () => {
      await handle.stop();
      await nc.close();
    },
  });
  sendReady({ startMs, bootMs: t0 - boot } satisfies CoordinatorReady);
}

main().catch((e) => {
  sendFailed(e);
  process.exit(1);
});
