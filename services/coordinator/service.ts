// The coordinator: wires the store, leases, fleet state, device actors, recovery, intake, events and metrics
// around one NATS connection. startCoordinator() is what `cxlrc serve coordinator` (main.ts) and the tests run.
import type { NatsConnection } from "@nats-io/transport-node";
import { DEFAULT_POLICY, type Policy } from "../../machines/policy/defaults.ts";
import { ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { BUCKETS, deviceKey, keyParts } from "../../shared/bus/subjects.ts";
import { describeError } from "../../shared/errors.ts";
import { type MetricsServer, serveMetrics } from "../../shared/http/metrics-server.ts";
import { createReadinessGate, type ReadinessGate } from "../../shared/http/readiness.ts";
import { type Logger, silentLogger } from "../../shared/log.ts";
import { waitAtMost } from "../../shared/wait.ts";
import { createAdmission, type InFlight } from "./admission.ts";
import { createAgentLink } from "./agent-link.ts";
import { startAgentPresence } from "./agent-presence.ts";
import { startBreakerFeed } from "./breaker-feed.ts";
import { createBudgets, storeBudgetIo } from "./budgets.ts";
import { createBusHealth } from "./bus-health.ts";
import { CONTROL_LIMITS_DEFAULT, type ControlLimits } from "./config.ts";
import { createDeviceActors, type DeviceStatus } from "./device-actors.ts";
import type { StepHook } from "./effects/agent-actors.ts";
import { createEventPublisher } from "./events.ts";
import { createFencing, type FencingView } from "./fencing.ts";
import { createFleetStore, type FleetState } from "./fleet-state.ts";
import { startFleetView } from "./fleet-view.ts";
import { startIntake } from "./intake.ts";
import { createInventoryCache } from "./inventory.ts";
import { type CoordinatorMetrics, createMetrics } from "./metrics.ts";
import { createOutcomes, type RequestOutcome } from "./outcomes.ts";
import { createPartitionLeases } from "./partition-leases.ts";
import { startRecovery } from "./recovery.ts";
import { openStore } from "./store.ts";

export interface CoordinatorOptions {
  nc: NatsConnection;
  /** Stable id (lease owner). Unique per live process; a restart with the same id takes its leases back at once. */
  id: string;
  policy?: Partial<Policy>;
  /** Partition (host) lease time (the leases bucket's max age). Default 15 s. */
  leaseTtlMs?: number;
  /**
   * How long a host's lease is kept after its last device driven here rests (partition-leases.ts): a host whose
   * devices are reset one after another is taken once (a fleet controller's next request comes well within it).
   * A peer's request for the host waits this long after the host rests here (its request is not refused: it
   * takes the host once it goes). Default 250 ms; 0 gives it back at once.
   */
  partitionLingerMs?: number;
  /** Prometheus and health endpoint port (/metrics, /healthz, /readyz; 0 = a free one); null or undefined = none. */
  metricsPort?: number | null;
  metricsHost?: string;
  log?: Logger;
  /** Wall clock in ms (deadlines, budgets, breaker). Default Date.now. */
  now?: () => number;
  /** JetStream replicas of streams and buckets. Default 1. */
  replicas?: number;
  /** Hosts whose devices get an actor at start (agent inventory); others appear with their first request. */
  hosts?: string[];
  /** Recovery scan interval. Default half the lease time. */
  recoveryIntervalMs?: number;
  /** Stream redelivery time of an unacknowledged request. Default 30 s. */
  ackWaitMs?: number;
  /** How long a host's inventory is reused before it is asked again (planning, device selectors). Default 2 s. */
  inventoryTtlMs?: number;
  /** Test hook: runs around every step's effect (stop a coordinator at an exact point). */
  stepHook?: StepHook;
  /** Steps run at once, the others queued (effects/step-budget.ts). Default 64; tests make it small. */
  maxRunningSteps?: number;
  /**
   * Control endpoints (cxlrc.ctl.*): largest message and per-requester / global rate limits. Defaults
   * (config.ts CONTROL_LIMITS_DEFAULT) are far above what operators, the CLI and fleet controllers send.
   */
  control?: Partial<ControlLimits>;
}

/** How long a host's lease is kept after its last device rests here (CoordinatorOptions.partitionLingerMs). */
export const PARTITION_LINGER_MS = 250;
/** Hosts discovered at once at start. */
const DISCOVER_WIDTH = 8;
/** How long a clean stop waits for its events to be acknowledged before giving the rest up. */
const STOP_FLUSH_MS = 10_000;
/** How long start waits for the fleet view to hold every stored key before recovering without it. */
const VIEW_SYNC_WAIT_MS = 10_000;

export interface CoordinatorStatus {
  id: string;
  /**
   * Every device of the fleet: this coordinator's actors (local: true), and the devices whose actors other
   * coordinators stored (local: false, state from the stored snapshot, owner = who stored it last).
   */
  devices: DeviceStatus[];
  /** Devices per lifecycle state (this coordinator's actors). */
  states: Record<string, number>;
  /** Devices driven here now (their keys `<host>.<bdf-token>`), each under its host's partition lease. */
  leasesHeld: string[];
  /** Hosts whose partition lease this coordinator holds (driving a device, or kept for partitionLingerMs). */
  partitionsHeld: string[];
  /** Hosts whose partition lease is being given back: no longer held, its delete not yet landed. */
  partitionsReleasing: string[];
  breaker: FleetState["breaker"];
  /** Requests holding host/switch slots, as the host keys this coordinator has read say (every owner's). */
  inFlight: Record<string, InFlight>;
  /** Requests running here, per host, and how many wait for a slot. */
  running: Record<string, string[]>;
  waiting: number;
}

export interface CoordinatorHandle {
  readonly id: string;
  /** http://host:port/metrics, or null without an endpoint. */
  readonly metricsUrl: string | null;
  /** The fleet as stored plus this coordinator's actors; `host` narrows the device list to one host. */
  status(opts?: { host?: string }): Promise<CoordinatorStatus>;
  /** Resolves with the request's one outcome (test helper; also how `submit` callers can wait). */
  waitForOutcome(requestId: string, timeoutMs?: number): Promise<RequestOutcome>;
  /** Give every CXL device of the host an actor now. */
  discover(host: string): Promise<string[]>;
  /** Run a recovery pass now (also runs periodically). */
  recover(): Promise<string[]>;
  /**
   * Stop: intake drained, actors stopped, leases released (mid-reset devices are then continued by whoever
   * takes them). `release: false` leaves the leases to expire, as a crash would.
   */
  stop(opts?: { release?: boolean }): Promise<void>;
}

export async function startCoordinator(opts: CoordinatorOptions): Promise<CoordinatorHandle> {
  // The endpoint comes first: /healthz answers and /readyz says "starting" during a long start (view sync,
  // discovery), and a port already taken fails the start before anything is touched.
  const metrics = createMetrics({ coordinator: opts.id });
  const readiness = createReadinessGate();
  readiness.follow(opts.nc);
  let metricsServer: MetricsServer | null = null;
  try {
    if (opts.metricsPort !== undefined && opts.metricsPort !== null) {
      metricsServer = await serveMetrics({
        registry: metrics.registry,
        port: opts.metricsPort,
        host: opts.metricsHost,
        readiness: readiness.check,
      });
    }
    return await startServing(opts, metrics, readiness, metricsServer);
  } catch (e) {
    readiness.close();
    await metricsServer?.close();
    throw e;
  }
}

async function startServing(
  opts: CoordinatorOptions,
  metrics: CoordinatorMetrics,
  readiness: ReadinessGate,
  metricsServer: MetricsServer | null,
): Promise<CoordinatorHandle> {
  const log = (opts.log ?? silentLogger).child({ coordinator: opts.id });
  const now = opts.now ?? Date.now;
  const policy: Policy = { ...DEFAULT_POLICY, ...opts.policy };
  const leaseTtlMs = opts.leaseTtlMs ?? 15_000;
  const { nc } = opts;

  const jsm = await getJsm(nc);
  await ensureStreams(jsm, { replicas: opts.replicas ?? 1 });
  const store = await openStore(nc, { leaseTtlMs, replicas: opts.replicas ?? 1 });
  if (store.leaseTtlMs !== leaseTtlMs) {
    log.warn({ asked: leaseTtlMs, bucket: store.leaseTtlMs }, "the leases bucket keeps its own lease time");
  }
  const outcomes = createOutcomes();
  // Late-bound: fencing reads the lease manager, created after the publisher and the link.
  let fencing: FencingView | null = null;
  const events = createEventPublisher({
    js: store.js,
    coordinator: opts.id,
    log,
    onEvent: (e) => metrics.observe(e),
    fence: {
      epoch: (host, bdf) => fencing?.epochOf(host, bdf),
      confirm: (host, bdf, epoch) => fencing?.confirmEvent(host, bdf, epoch) ?? false,
    },
  });
  // Late-bound: the link asks whether a device is driven here (its lease), the lease manager comes later.
  let drivenHere: (key: string) => boolean = () => false;
  const link = createAgentLink({
    nc,
    log,
    drivenHere: (host, bdf) => {
      if (bdf === null) return false;
      try {
        return drivenHere(deviceKey(host, bdf));
      } catch {
        return false;
      }
    },
    onDrop: (reason) => metrics.agentEventsDropped.inc({ reason }),
    onHeard: (host) => metrics.agentSeen(host, now()),
    fence: (key) => fencing?.grant(key) ?? null,
    onStaleEpoch: (key) => fencing?.forfeit(key),
  });
  const presence = startAgentPresence({ nc, log, now, onSeen: (host, at) => metrics.agentSeen(host, at) });
  await link.ready();
  const inventory = createInventoryCache(nc, {
    timeoutMs: policy.agentCallTimeoutMs,
    link,
    ...(opts.inventoryTtlMs !== undefined ? { ttlMs: opts.inventoryTtlMs } : {}),
  });
  // Admission: host/switch slots (one ledger, in memory: hosts are owned by partition leases), budgets (one key
  // per device), breaker (fed by the outcome events; one key for open/closed).
  const admission = createAdmission(policy, { owner: opts.id, now });
  const breaker = await startBreakerFeed({
    kv: store.admission,
    nc,
    replay: { js: store.js, jsm, nc, log },
    policy,
    log,
    now,
  });
  const fleet = createFleetStore({
    admission,
    budgets: createBudgets(storeBudgetIo(store), policy),
    breaker,
    policy,
  });
  metrics.breakerOpenWith(() => breaker.state().status === "open");
  // Late-bound: the lease manager reports losses to the actors, which need the lease manager.
  let onLost: (key: string) => void = () => undefined;
  let onPartitionGone: (host: string) => void = () => undefined;
  // Late-bound too: the recovery loop needs the actors, which report devices they gave up to it.
  let onGivenUp: (key: string) => void = () => undefined;
  const busHealth = createBusHealth(nc, log);
  const leases = createPartitionLeases({
    lingerMs: opts.partitionLingerMs ?? PARTITION_LINGER_MS,
    onPartitionGone: (host) => onPartitionGone(host),
    kv: store.leases,
    deletes: { js: store.js, bucket: BUCKETS.leases },
    owner: opts.id,
    ttlMs: store.leaseTtlMs,
    log,
    now,
    onError: (err) => busHealth.report(err),
    onLost: (key, reason) => {
      // Fenced: another coordinator drives the device; this one says nothing more about it.
      if (reason !== "fenced")
        void events.publish({ ...keyParts(key), kind: "lease.lost", data: { reason } });
      onLost(key);
    },
  });
  fencing = createFencing(leases, opts.id);
  metrics.countLeasesWith(() => leases.held().length);
  metrics.countPartitionsWith(() => leases.partitions().length);
  await leases.ready();
  const actors = createDeviceActors({
    nc,
    link,
    id: opts.id,
    store,
    leases,
    fleet,
    events,
    metrics,
    outcomes,
    admission,
    policy,
    log,
    now,
    inventory: (host, fresh) => inventory.get(host, fresh),
    agentFeatures: (host) => inventory.features(host),
    ...(opts.stepHook ? { hook: opts.stepHook } : {}),
    ...(opts.maxRunningSteps !== undefined ? { maxRunningSteps: opts.maxRunningSteps } : {}),
    onGivenUp: (key) => onGivenUp(key),
  });
  onLost = (key) => actors.leaseLost(key);
  onPartitionGone = (host) => actors.partitionGone(host);
  drivenHere = (key) => leases.get(key) !== undefined;

  // The stored fleet by headers first: recovery reads only what it names mid-operation, and a start-up
  // discovery builds no actor for a device already stored (built on its first request).
  const view = await startFleetView(store, log);
  metrics.countViewRestartsWith(() => view.restarts());
  const viewSynced = await Promise.race([
    view.synced.then(() => true),
    new Promise<false>((r) => setTimeout(r, VIEW_SYNC_WAIT_MS, false).unref()),
  ]);
  if (!viewSynced)
    log.warn("actors bucket not read within its wait: recovery reads every stored key this time");
  const recovery = startRecovery({
    store,
    leases,
    actors,
    admission,
    view,
    log,
    intervalMs: opts.recoveryIntervalMs ?? Math.max(250, Math.floor(store.leaseTtlMs / 2)),
  });
  onGivenUp = (key) => recovery.soon(key);
  const recovered = await recovery.runOnce();
  if (recovered.length > 0) log.info({ devices: recovered }, "continuing devices left mid-operation");

  const hosts = opts.hosts ?? [];
  let nextHost = 0;
  const discoverHosts = async () => {
    while (nextHost < hosts.length) {
      const host = hosts[nextHost++]!;
      await actors
        .discover(host, { skip: (key) => view.revision(key) !== undefined })
        .catch((err) => log.warn({ host, err: describeError(err) }, "host not discovered"));
    }
  };
  await Promise.all(Array.from({ length: Math.min(DISCOVER_WIDTH, hosts.length) }, discoverHosts));

  const status = async (o: { host?: string } = {}): Promise<CoordinatorStatus> => {
    const mine = actors.local();
    const states: Record<string, number> = {};
    for (const l of mine) states[l.status.state] = (states[l.status.state] ?? 0) + 1;
    const wanted = (key: string) => o.host === undefined || key.startsWith(`${o.host}.`);
    const devices: DeviceStatus[] = [];
    const toRead: string[] = [];
    const local = new Set<string>();
    for (const l of mine) {
      local.add(l.key);
      if (!wanted(l.key)) continue;
      // The actor here is current while this coordinator holds the lease or wrote (or read) the stored
      // record last; otherwise another coordinator has driven the device since: its stored state counts.
      const stored = view.revision(l.key);
      if (l.leaseHeld || stored === undefined || l.revision === stored) devices.push(l.status);
      else toRead.push(l.key);
    }
    for (const key of view.keys()) if (!local.has(key) && wanted(key)) toRead.push(key);
    for (const sd of await view.read(toRead)) {
      devices.push({
        host: sd.host,
        bdf: sd.bdf,
        state: sd.state,
        requestId: sd.requestId,
        leaseHeld: false,
        scopeViolations: sd.scopeViolations,
        quarantineReason: sd.quarantineReason,
        owner: sd.owner,
        local: false,
      });
    }
    devices.sort((a, b) => a.host.localeCompare(b.host) || a.bdf.localeCompare(b.bdf));
    return {
      id: opts.id,
      devices,
      states,
      leasesHeld: leases.held(),
      partitionsHeld: leases.partitions(),
      partitionsReleasing: leases.partitionsReleasing(),
      breaker: fleet.current().breaker,
      inFlight: admission.holders(),
      running: admission.running(),
      waiting: admission.waiting(),
    };
  };

  const intake = await startIntake({
    nc,
    js: store.js,
    jsm,
    actors,
    store,
    fleet,
    events,
    outcomes,
    inventory,
    log,
    now,
    status: (host) => status(host === undefined ? {} : { host }),
    metrics,
    control: { ...CONTROL_LIMITS_DEFAULT, ...opts.control },
    ...(opts.ackWaitMs !== undefined ? { ackWaitMs: opts.ackWaitMs } : {}),
  });

  // The server must have registered the control subscriptions before we say we are serving: a status
  // request right after start would otherwise meet "no responders".
  await nc.flush();
  readiness.enter("serving");
  log.info({ leaseTtlMs: store.leaseTtlMs, metrics: metricsServer?.url ?? null }, "coordinator started");

  let stopped = false;
  return {
    id: opts.id,
    metricsUrl: metricsServer?.url ?? null,
    status,
    waitForOutcome: (requestId, timeoutMs) => outcomes.wait(requestId, timeoutMs),
    discover: (host) => actors.discover(host),
    recover: async () => {
      const taken = await recovery.runOnce();
      await recovery.idle();
      return taken;
    },
    async stop(o = {}) {
      if (stopped) return;
      stopped = true;
      readiness.enter("stopping");
      const release = o.release !== false;
      await recovery.stop();
      view.stop();
      link.stop();
      presence.stop();
      if (release) await intake.stop();
      else void intake.stop().catch(() => undefined);
      await actors.stop({ release });
      await leases.stop({ release });
      admission.stop();
      breaker.stop();
      // A clean stop says what it decided, but does not wait forever on an event stream that is down.
      if (release) await waitAtMost(events.flush(), STOP_FLUSH_MS);
      events.close();
      await metricsServer?.close();
      readiness.close();
      outcomes.close(`coordinator ${opts.id} stopped`);
      log.info({ released: release }, "coordinator stopped");
    },
  };
}
