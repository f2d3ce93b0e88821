// The coordinator's test world: a real nats-server, one host agent per simulated host (virtual clock, so
// resets cost no wall time), a coordinator on its own connection, and small helpers to send requests and
// read the event stream back.
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { jetstream } from "@nats-io/jetstream";
import { type NatsConnection, nuid } from "@nats-io/transport-node";
import type { Policy } from "../../machines/policy/defaults.ts";
import { type AgentHandle, startAgent } from "../../services/agent/service.ts";
import type { ControlLimits } from "../../services/coordinator/config.ts";
import type { StepHook } from "../../services/coordinator/effects/agent-actors.ts";
import { type CoordinatorHandle, startCoordinator } from "../../services/coordinator/service.ts";
import type { AgentFeature, ProbeResult } from "../../shared/bus/agent-contract.ts";
import type { ErrorBody } from "../../shared/bus/agent-messages.ts";
import { callAgent, connectBus, ensureStreams, getJsm, isNoResponders } from "../../shared/bus/client.ts";
import { EventEnvelope, encodeJson } from "../../shared/bus/codec.ts";
import type { ResetRequestInput } from "../../shared/bus/requests.ts";
import { deviceKey, STREAMS, subjects } from "../../shared/bus/subjects.ts";
import { realClock } from "../../shared/hw/backend.ts";
import { type Logger, silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, type StartNatsOptions, startNats } from "../../shared/natsd/server.ts";
import {
  createSimHost,
  type HostSpec,
  type HostSpecInput,
  type SimHost,
  VirtualClock,
} from "../../shared/sim/index.ts";

/** Generous guards so a test meets only the limit it is about. */
export const TEST_POLICY: Partial<Policy> = {
  maxAttemptsPerWindow: 1000,
  cooldownMs: 1000,
  breakerMinSamples: 1000,
  maxConcurrentPerHost: 2,
  maxConcurrentPerSwitch: 1,
};

export const LEASE_TTL_MS = 2000;

export interface World {
  server: NatsServerHandle;
  /** The test's own connection (fleet controller, operator, SRE tool). */
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  sims: Map<string, SimHost>;
  agents: AgentHandle[];
  agentNc: NatsConnection;
  /** Start a coordinator on a connection of its own (closed by crash() or close()). */
  coordinator(opts?: Partial<CoordinatorStart>): Promise<RunningCoordinator>;
  close(): Promise<void>;
}

export interface CoordinatorStart {
  id: string;
  policy: Partial<Policy>;
  leaseTtlMs: number;
  metricsPort: number | null;
  stepHook: StepHook;
  maxRunningSteps: number;
  hosts: string[];
  control: Partial<ControlLimits>;
  log: Logger;
  /** Redelivery time of an unacknowledged request. */
  ackWaitMs: number;
  inventoryTtlMs: number;
  partitionLingerMs: number;
  /** Time between periodic recovery passes (default: half the lease time). */
  recoveryIntervalMs: number;
}

export interface WorldOptions {
  /** nats-server options (e.g. a config with accounts). */
  nats?: StartNatsOptions;
  /** User and password of every connection the world makes (coordinators, agents, the test's own). */
  user?: string;
  pass?: string;
  /** Per host: the features its agent offers (default all), to stand for an older agent. */
  agentFeatures?: Record<string, AgentFeature[]>;
  /** Hosts whose simulator runs on the wall clock (a reset that takes its time), not a virtual one. */
  realTime?: string[];
}

export interface RunningCoordinator {
  handle: CoordinatorHandle;
  nc: NatsConnection;
  /** Hard crash: the connection dies first (nothing more reaches NATS), then timers and actors are dropped. */
  crash(): Promise<void>;
  stop(): Promise<void>;
}

export async function startWorld(
  hosts: Array<HostSpec | HostSpecInput>,
  wo: WorldOptions = {},
): Promise<World> {
  const server = await startNats(wo.nats);
  const connect = (name: string, coalesceWrites = false) =>
    connectBus({
      servers: server.url,
      name,
      coalesceWrites,
      ...(wo.user !== undefined ? { user: wo.user, pass: wo.pass ?? "" } : {}),
      log: silentLogger,
      reconnectWaitMs: 50,
      reconnectMaxWaitMs: 250,
    });
  const nc = await connect("test");
  const agentNc = await connect("agents");
  const jsm = await getJsm(nc);
  await ensureStreams(jsm);
  const sims = new Map<string, SimHost>();
  const agents: AgentHandle[] = [];
  for (const spec of hosts) {
    const sim = createSimHost(spec, {
      clock: wo.realTime?.includes(spec.name) ? realClock : new VirtualClock(),
    });
    sims.set(spec.name, sim);
    const features = wo.agentFeatures?.[spec.name];
    agents.push(
      await startAgent({
        nc: agentNc,
        host: spec.name,
        backend: sim,
        heartbeatMs: 60_000,
        ...(features ? { features } : {}),
      }),
    );
  }
  const coordinators: RunningCoordinator[] = [];
  return {
    server,
    nc,
    js: jetstream(nc),
    jsm,
    sims,
    agents,
    agentNc,
    async coordinator(o = {}) {
      // As `cxlrc serve coordinator` connects: its socket writes of one event-loop turn go out together.
      const cnc = await connect(`coordinator ${o.id ?? "c1"}`, true);
      const handle = await startCoordinator({
        nc: cnc,
        id: o.id ?? "c1",
        policy: o.policy ?? TEST_POLICY,
        leaseTtlMs: o.leaseTtlMs ?? LEASE_TTL_MS,
        metricsPort: o.metricsPort ?? null,
        ...(o.stepHook ? { stepHook: o.stepHook } : {}),
        ...(o.maxRunningSteps !== undefined ? { maxRunningSteps: o.maxRunningSteps } : {}),
        ...(o.hosts ? { hosts: o.hosts } : {}),
        ...(o.control ? { control: o.control } : {}),
        ...(o.log ? { log: o.log } : {}),
        ...(o.ackWaitMs !== undefined ? { ackWaitMs: o.ackWaitMs } : {}),
        ...(o.inventoryTtlMs !== undefined ? { inventoryTtlMs: o.inventoryTtlMs } : {}),
        ...(o.partitionLingerMs !== undefined ? { partitionLingerMs: o.partitionLingerMs } : {}),
        ...(o.recoveryIntervalMs !== undefined ? { recoveryIntervalMs: o.recoveryIntervalMs } : {}),
      });
      const running: RunningCoordinator = {
        handle,
        nc: cnc,
        async crash() {
          await cnc.close().catch(() => undefined);
          await handle.stop({ release: false }).catch(() => undefined);
        },
        async stop() {
          await handle.stop().catch(() => undefined);
          await cnc.close().catch(() => undefined);
        },
      };
      coordinators.push(running);
      return running;
    },
    async close() {
      for (const c of coordinators) await c.stop();
      for (const a of agents) await a.stop().catch(() => undefined);
      await agentNc.close().catch(() => undefined);
      await nc.close().catch(() => undefined);
      await server.stop();
    },
  };
}

/** Publish a request the way a fleet controller does: into the stream, Nats-Msg-Id = requestId. */
export async function publishRequest(
  js: JetStreamClient,
  req: ResetRequestInput,
): Promise<{ duplicate: boolean }> {
  const ack = await js.publish(subjects.request(req.host), encodeJson(req), { msgID: req.requestId });
  return { duplicate: ack.duplicate };
}

export type Reply<T = unknown> = { ok: true; result: T } | { ok: false; error: ErrorBody };

/** Request/reply on a control subject; the reply as sent (ok/result, or ok:false with the error body). */
export async function control<T = unknown>(
  nc: NatsConnection,
  subject: string,
  body: unknown,
): Promise<Reply<T>> {
  const data = typeof body === "string" ? new TextEncoder().encode(body) : encodeJson(body);
  const msg = await nc.request(subject, data, { timeout: 10_000 });
  return JSON.parse(new TextDecoder().decode(msg.data)) as Reply<T>;
}

export interface StoredEvent {
  seq: number;
  subject: string;
  event: EventEnvelope;
}

/** Every event in CXLRC_EVENTS (optionally only the coordinator's, or one request's). */
export async function readEvents(
  jsm: JetStreamManager,
  filter: { requestId?: string; source?: string; host?: string } = {},
): Promise<StoredEvent[]> {
  const info = await jsm.streams.info(STREAMS.events.name);
  const out: StoredEvent[] = [];
  if (info.state.messages === 0) return out;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(STREAMS.events.name, { seq }).catch(() => null);
    if (!m) continue;
    const event = EventEnvelope.parse(m.json());
    if (filter.requestId !== undefined && event.requestId !== filter.requestId) continue;
    if (filter.source !== undefined && event.source !== filter.source) continue;
    if (filter.host !== undefined && event.host !== filter.host) continue;
    out.push({ seq, subject: m.subject, event });
  }
  return out;
}

/** Kinds of the coordinator's events of one request, in stream order. */
export async function kindsOf(jsm: JetStreamManager, requestId: string): Promise<string[]> {
  return (await readEvents(jsm, { requestId, source: "coordinator" })).map((e) => e.event.kind);
}

/** Read the device back through its agent (the simulated registers as they are now). */
export function probe(nc: NatsConnection, host: string, bdf: string): Promise<ProbeResult> {
  return callAgent(nc, host, "probe", `test-probe/${nuid.next()}`, { bdf }, { timeoutMs: 5000 });
}

/** A host with `n` CXL root ports (buses 1..n), one Type-2 device below each, decoders at distinct bases. */
export function rootPortHost(name: string, n: number): HostSpecInput {
  return {
    name,
    bridges: Array.from({ length: n }, (_, i) => ({
      bdf: `0000:00:${(i + 1).toString(16).padStart(2, "0")}.0`,
      kind: "root-port" as const,
      secondaryBus: i + 1,
    })),
    devices: Array.from({ length: n }, (_, i) => ({
      bdf: `0000:${(i + 1).toString(16).padStart(2, "0")}:00.0`,
      parent: `0000:00:${(i + 1).toString(16).padStart(2, "0")}.0`,
      firmware: { decoders: [{ base: `0x${(i + 1).toString(16)}00000000`, size: "0x10000000" }] },
    })),
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll a condition (state settles asynchronously after an outcome); false after ~10 s. */
export async function until(cond: () => Promise<boolean> | boolean): Promise<boolean> {
  for (let i = 0; i < 500; i++) {
    if (await cond()) return true;
    await sleep(20);
  }
  return false;
}

/**
 * The server drops a closed connection's subscriptions when it reads the socket's end, on its own time: a
 * request sent right after a crash can still be routed to the dead coordinator (and time out). Resolves once
 * `subject` has no responder left; false after ~10 s.
 */
export function noResponders(nc: NatsConnection, subject: string): Promise<boolean> {
  return until(() =>
    nc.request(subject, new Uint8Array(0), { timeout: 200 }).then(() => false, isNoResponders),
  );
}

/**
 * The outcome is announced with the rest state's write (ready / quarantined); the request's slots and then the
 * device's lease go back once it is on the stream. Resolves with the resting state.
 */
export async function rested(c: CoordinatorHandle, host: string, bdf: string): Promise<string | undefined> {
  const key = deviceKey(host, bdf);
  let state: string | undefined;
  await until(async () => {
    const s = await c.status();
    state = s.devices.find((d) => d.host === host && d.bdf === bdf)?.state;
    return (state === "ready" || state === "quarantined") && !s.leasesHeld.includes(key);
  });
  return state;
}

/**
 * A step hook that stops the coordinator at one exact point of one phase (`before` its work, by default, or
 * `after` it), and reports when it got there; `release` lets it go on.
 */
export function stopAt(phase: string, point: "before" | "after" = "before") {
  let reached: () => void = () => undefined;
  const atPoint = new Promise<void>((r) => {
    reached = r;
  });
  let release: () => void = () => undefined;
  const held = new Promise<void>((r) => {
    release = r;
  });
  const hook: StepHook = async (p, pt) => {
    if (p === phase && pt === point) {
      reached();
      await held;
    }
  };
  return { hook, atPoint, release: () => release() };
}
