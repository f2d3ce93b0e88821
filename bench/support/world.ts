// The fleet benchmarks' world: a nats-server, the agents process, the coordinator process, and a driver
// connection that plays the fleet controller (publishes reset requests into the stream) and watches the
// outcome events the way an SRE tool would.
import { type JetStreamClient, type JetStreamManager, jetstream } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Policy } from "../../machines/policy/defaults.ts";
import { connectBus, ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { encodeJson } from "../../shared/bus/codec.ts";
import type { ResetRequestInput } from "../../shared/bus/requests.ts";
import { PREFIX, subjects } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import type { AgentsReady } from "./agents-proc.ts";
import { type Child, type ChildOptions, startChild } from "./child.ts";
import type { CoordinatorReady } from "./coordinator-proc.ts";
import { benchBdf, hostName } from "./fleet.ts";

/**
 * Guards wide enough that only the measured path runs: no budget, breaker or host-slot refusals. The attempt
 * window is 1 ms so each device's budget keeps one timestamp, as a real budget keeps at most a few.
 */
export function benchPolicy(perHost: number): Partial<Policy> {
  return {
    maxAttemptsPerWindow: 1_000_000,
    attemptWindowMs: 1,
    cooldownMs: 1,
    breakerMinSamples: 1_000_000,
    maxConcurrentPerHost: Math.max(2, perHost),
    maxConcurrentPerSwitch: Math.max(1, perHost),
  };
}

export interface Device {
  host: string;
  bdf: string;
}

export interface Outcome {
  requestId: string;
  kind: string;
  atMs: number;
  /** From the outcome event (failed: the error message). */
  detail?: string;
}

export interface Driver {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /**
   * Publish one reset request into the stream (Nats-Msg-Id = requestId), on `subject` (default: the host's
   * request subject); resolves with the publish time.
   */
  request(req: ResetRequestInput, subject?: string): Promise<number>;
  /** Resolves with each request's outcome event (verified, failed, quarantined, refused), or rejects on timeout. */
  outcomes(ids: string[], timeoutMs: number): Promise<Map<string, Outcome>>;
  /** The outcome of a request, if it arrived. */
  get(id: string): Outcome | undefined;
  /** How many of these requests have an outcome so far. */
  settled(ids: string[]): number;
  /** The plan method seen for a request id, if its plan event arrived. */
  method(requestId: string): string | undefined;
  /**
   * Events seen on cxlrc.evt.> (coordinators) and cxlrc.agt.> (agents) since the last call (heartbeats left
   * out), split by source (by subject space), and their bytes.
   */
  takeEventCounts(): { coordinator: number; agent: number; other: number; bytes: number };
  close(): Promise<void>;
}

const OUTCOME_KINDS = ["verified", "failed", "quarantined", "refused"] as const;

export async function startDriver(server: NatsServerHandle): Promise<Driver> {
  const nc = await connectBus({ servers: server.url, name: "bench driver", log: silentLogger });
  const js = jetstream(nc);
  const jsm = await getJsm(nc);
  await ensureStreams(jsm);
  const seen = new Map<string, Outcome>();
  const methods = new Map<string, string>();
  const waiters = new Set<() => void>();
  const dec = new TextDecoder();
  const subs: Subscription[] = [];
  for (const kind of [...OUTCOME_KINDS, "plan"]) {
    subs.push(
      // Outcomes are believed from the coordinators' subject space only.
      nc.subscribe(`${PREFIX}.evt.*.*.${kind}`, {
        callback: (_e, m) => {
          const at = performance.now();
          const env = JSON.parse(dec.decode(m.data)) as {
            source?: string;
            requestId?: string;
            kind: string;
            data?: {
              plan?: { method?: string };
              error?: { message?: string };
              reason?: string;
              refusal?: { reason?: string; message?: string };
            };
          };
          if (env.source !== "coordinator" || !env.requestId) return;
          if (kind === "plan") {
            if (env.data?.plan?.method) methods.set(env.requestId, env.data.plan.method);
            return;
          }
          if (seen.has(env.requestId)) return;
          const r = env.data?.refusal;
          const detail = r ? `${r.reason}: ${r.message}` : (env.data?.error?.message ?? env.data?.reason);
          seen.set(env.requestId, {
            requestId: env.requestId,
            kind: env.kind,
            atMs: at,
            ...(detail ? { detail: String(detail) } : {}),
          });
          for (const w of waiters) w();
        },
      }),
    );
  }
  let counts = { coordinator: 0, agent: 0, other: 0, bytes: 0 };
  for (const [space, source] of [
    [subjects.eventsAll, "coordinator"],
    [subjects.agentEventsAll, "agent"],
  ] as const) {
    subs.push(
      nc.subscribe(space, {
        callback: (_e, m) => {
          if (m.subject.endsWith(".agent.heartbeat")) return; // host heartbeats are not per request
          counts.bytes += m.data.length;
          // The envelope's "source" sits in its first ~120 bytes; it must agree with the subject space.
          const head = dec.decode(m.data.subarray(0, 160));
          if (head.includes(`"source":"${source}"`)) counts[source]++;
          else counts.other++;
        },
      }),
    );
  }
  await nc.flush();

  return {
    nc,
    js,
    jsm,
    async request(req, subject = subjects.request(req.host)) {
      const t = performance.now();
      await js.publish(subject, encodeJson(req), { msgID: req.requestId });
      return t;
    },
    outcomes(ids, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (ids.every((id) => seen.has(id))) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(new Map(ids.map((id) => [id, seen.get(id)!])));
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          const missing = ids.filter((id) => !seen.has(id));
          reject(
            new Error(`${missing.length} of ${ids.length} requests without an outcome after ${timeoutMs} ms`),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    get: (id) => seen.get(id),
    settled: (ids) => ids.filter((id) => seen.has(id)).length,
    method: (id) => methods.get(id),
    takeEventCounts() {
      const c = counts;
      counts = { coordinator: 0, agent: 0, other: 0, bytes: 0 };
      return c;
    },
    async close() {
      for (const s of subs) s.unsubscribe();
      await nc.close();
    },
  };
}

export interface WorldOptions {
  hosts: number;
  perHost: number;
  /** "virtual" for runs that measure memory only (no device waits). Default "real". */
  clock?: "real" | "virtual";
  heartbeatMs?: number;
}

export interface World {
  server: NatsServerHandle;
  driver: Driver;
  agents: Child<AgentsReady>;
  devices: Device[];
  policy: Partial<Policy>;
  /** Start a coordinator process (stop it with child.stop(), crash it with child.kill()). */
  coordinator(opts?: CoordinatorStartOptions): Promise<Child<CoordinatorReady>>;
  close(): Promise<void>;
}

export interface CoordinatorStartOptions {
  id?: string;
  startHosts?: string[];
  holdPhase?: string;
  policy?: Partial<Policy>;
  child?: ChildOptions;
}

export async function startWorld(o: WorldOptions): Promise<World> {
  // BENCH_NATS_PROF=<port>: the server serves Go pprof there (go tool pprof http://127.0.0.1:<port>/debug/pprof/profile).
  const prof = process.env.BENCH_NATS_PROF;
  const server = await startNats(prof ? { config: `prof_port: ${prof}\n` } : {});
  const children: Child[] = [];
  try {
    const driver = await startDriver(server);
    const agents = await startChild<AgentsReady>("agents-proc.ts", {
      env: {
        BENCH_NATS: server.url,
        BENCH_HOSTS: String(o.hosts),
        BENCH_PER_HOST: String(o.perHost),
        BENCH_CLOCK: o.clock ?? "real",
        BENCH_HEARTBEAT_MS: String(o.heartbeatMs ?? 5000),
      },
      // BENCH_AGENTS_PROF=<dir>: a CPU profile of the agents' process over its whole life (node --cpu-prof).
      ...(process.env.BENCH_AGENTS_PROF ? { cpuProfDir: process.env.BENCH_AGENTS_PROF } : {}),
      readyTimeoutMs: 600_000,
    });
    children.push(agents);
    const devices: Device[] = [];
    // Device i: host i mod hosts, device i div hosts, so the first n devices spread over the hosts.
    for (let k = 0; k < o.perHost; k++) {
      for (let h = 0; h < o.hosts; h++) devices.push({ host: hostName(h), bdf: benchBdf(k) });
    }
    const policy = benchPolicy(o.perHost);
    return {
      server,
      driver,
      agents,
      devices,
      policy,
      async coordinator(c = {}) {
        const child = await startChild<CoordinatorReady>("coordinator-proc.ts", {
          ...c.child,
          env: {
            BENCH_NATS: server.url,
            BENCH_COORD_ID: c.id ?? "bench",
            BENCH_POLICY: JSON.stringify(c.policy ?? policy),
            BENCH_START_HOSTS: JSON.stringify(c.startHosts ?? []),
            ...(c.holdPhase ? { BENCH_HOLD_PHASE: c.holdPhase } : {}),
            ...c.child?.env,
          },
          readyTimeoutMs: 900_000,
        });
        children.push(child);
        return child;
      },
      async close() {
        for (const c of children.reverse()) await c.stop(30_000).catch(() => c.kill());
        await driver.close().catch(() => undefined);
        await server.stop();
      },
    };
  } catch (e) {
    for (const c of children) await c.kill().catch(() => undefined);
    await server.stop();
    throw e;
  }
}

/** The contract floor's requests (floor-proc.ts): in the request stream, outside the coordinator's subjects. */
export const FLOOR_REQUESTS = `${PREFIX}.req.floor`;

export function request(id: string, d: Device, scope: "io" | "full"): ResetRequestInput {
  return { requestId: id, host: d.host, bdf: d.bdf, scope, reason: "bench" };
}
