// `cxlrc serve agent`: validate the agent config, connect to NATS, pick the backend (sysfs on a real host,
// the simulator for one host of a fleet file), ensure the streams, start the agent, and stop cleanly on
// SIGINT/SIGTERM.
import { readFileSync } from "node:fs";
import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import { connectBus, ensureStreams, getJsm } from "../../shared/bus/client.ts";
import { formatZodIssues } from "../../shared/bus/codec.ts";
import { HOST_RE } from "../../shared/bus/subjects.ts";
import { CxlrcError, describeError } from "../../shared/errors.ts";
import { type MetricsServer, serveMetrics } from "../../shared/http/metrics-server.ts";
import { createReadinessGate } from "../../shared/http/readiness.ts";
import { type HardwareBackend, realClock } from "../../shared/hw/backend.ts";
import { createLogger, LOG_LEVELS, type Logger } from "../../shared/log.ts";
import { createSimHost, defaultFleet, loadFleet, VirtualClock } from "../../shared/sim/index.ts";
import { createSysfsBackend } from "./backends/sysfs/sysfs-backend.ts";
import { defaultStateDir } from "./fence-table.ts";
import { createAgentMetrics } from "./metrics.ts";
import { DEFAULT_AGENT_TIMEOUTS } from "./ops/timeouts.ts";
import { type AgentHandle, startAgent } from "./service.ts";

const TimeoutsSchema = z.strictObject(
  Object.fromEntries(
    Object.keys(DEFAULT_AGENT_TIMEOUTS).map((k) => [k, z.number().nonnegative().optional()]),
  ) as Record<keyof typeof DEFAULT_AGENT_TIMEOUTS, z.ZodOptional<z.ZodNumber>>,
);

/** The endpoint `cxlrc serve agent` opens when its config has no metrics section (the coordinator's is 9464). */
export const AGENT_METRICS_DEFAULT = { port: 9465, host: "127.0.0.1" } as const;

export const AgentConfig = z
  .strictObject({
    /** This host's name: one subject token (letters, digits, '-', '_'). */
    host: z.string().regex(HOST_RE, "1-64 letters, digits, '-' or '_'"),
    /** NATS server URL(s). */
    servers: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).default("nats://127.0.0.1:4222"),
    /** NATS credentials (.creds) file. */
    credsFile: z.string().min(1).optional(),
    backend: z.enum(["sysfs", "sim"]).default("sysfs"),
    /** sysfs backend: where sysfs is mounted (tests and containers point elsewhere). */
    sysfsRoot: z.string().min(1).default("/sys"),
    /** sim backend: the fleet file (default: the bundled demo fleet). */
    fleetFile: z.string().min(1).optional(),
    /** sim backend: which host of the fleet (default: `host`). */
    simHost: z.string().min(1).optional(),
    /** sim backend: "real" time (a live demo) or "virtual" (resets take no wall time). */
    simClock: z.enum(["real", "virtual"]).default("real"),
    heartbeatMs: z.number().int().min(100).max(600_000).default(5000),
    /**
     * Where the agent keeps state across restarts (the fencing table, fence-table.ts). Default: systemd's
     * $STATE_DIRECTORY, else /var/lib/cxlrc-agent.
     */
    stateDir: z.string().min(1).optional(),
    logLevel: z.enum(LOG_LEVELS).default("info"),
    dedupCapacity: z.number().int().min(1).max(1_000_000).optional(),
    maxPayloadBytes: z
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .optional(),
    maxQueuePerDevice: z.number().int().min(0).max(10_000).optional(),
    /** Operation timeouts (services/agent/ops/timeouts.ts), in ms. */
    timeouts: TimeoutsSchema.default({}),
    /** Create / update CXLRC_EVENTS and CXLRC_REQUESTS at start. */
    ensureStreams: z.boolean().default(true),
    streamReplicas: z.number().int().min(1).max(5).default(1),
    /**
     * Prometheus and health endpoint (/metrics, /healthz, /readyz): port (0 = any free port), null = off.
     * Absent: off here; `cxlrc serve agent` fills in AGENT_METRICS_DEFAULT.
     */
    metrics: z
      .strictObject({
        port: z.number().int().min(0).max(65535).nullable().default(AGENT_METRICS_DEFAULT.port),
        host: z.string().min(1).default(AGENT_METRICS_DEFAULT.host),
      })
      .optional(),
  })
  .superRefine((c, ctx) => {
    if (c.backend !== "sim") {
      for (const k of ["fleetFile", "simHost"] as const) {
        if (c[k] !== undefined) {
          ctx.addIssue({ code: "custom", path: [k], message: `only used with backend "sim"` });
        }
      }
    }
  });
export type AgentConfig = z.output<typeof AgentConfig>;
export type AgentConfigInput = z.input<typeof AgentConfig>;

/** Validate a config object; CxlrcError "bad-input" naming every bad or unknown key. */
export function parseAgentConfig(input: unknown): AgentConfig {
  const r = AgentConfig.safeParse(input);
  if (!r.success) {
    throw new CxlrcError("bad-input", `agent config: ${formatZodIssues(r.error)}`, {
      fields: r.error.issues.map((i) => i.path.map(String).join(".")),
    });
  }
  return r.data;
}

/** Read and validate a JSON agent config file. */
export function loadAgentConfig(path: string): AgentConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CxlrcError("bad-input", `cannot read agent config ${path}: ${describeError(e)}`, { path });
  }
  return parseAgentConfig(raw);
}

/** The backend a config asks for. */
export function backendFromConfig(config: AgentConfig, log: Logger): HardwareBackend {
  if (config.backend === "sysfs") return createSysfsBackend({ sysfsRoot: config.sysfsRoot, log });
  const fleet = config.fleetFile ? loadFleet(config.fleetFile) : defaultFleet();
  const name = config.simHost ?? config.host;
  const spec = fleet.hosts.find((h) => h.name === name);
  if (!spec) {
    throw new CxlrcError(
      "bad-input",
      `agent config: host ${JSON.stringify(name)} is not in the fleet ${config.fleetFile ?? "(bundled default)"}; ` +
        `it has ${fleet.hosts.map((h) => h.name).join(", ")}`,
      { field: config.simHost ? "simHost" : "host" },
    );
  }
  return createSimHost(spec, { clock: config.simClock === "virtual" ? new VirtualClock() : realClock });
}

export interface RunningAgent {
  config: AgentConfig;
  agent: AgentHandle;
  nc: NatsConnection;
  backend: HardwareBackend;
  /** http://host:port/metrics (with /healthz and /readyz beside it), or null without an endpoint. */
  metricsUrl: string | null;
  /** Stop the agent, drain the connection, close the backend. Idempotent. */
  stop(): Promise<void>;
  /** Resolves once stopped (by stop() or a signal). */
  done: Promise<void>;
}

export interface RunAgentOptions {
  log?: Logger;
  /** Stop on SIGINT/SIGTERM (default true). */
  handleSignals?: boolean;
  /** Use this backend instead of the configured one (tests, embedding). */
  backend?: HardwareBackend;
}

/** Start an agent from a config object (validated here). */
export async function runAgentFromConfig(input: unknown, opts: RunAgentOptions = {}): Promise<RunningAgent> {
  const config = parseAgentConfig(input);
  const log = opts.log ?? createLogger("cxlrc-agent", { level: config.logLevel });
  const backend = opts.backend ?? backendFromConfig(config, log);
  // The endpoint first: /healthz answers and /readyz says "starting" while the bus is still being reached.
  const readiness = createReadinessGate();
  const port = config.metrics?.port ?? null;
  const metrics = port !== null ? createAgentMetrics() : null;
  let endpoint: MetricsServer | null = null;
  if (metrics && port !== null) {
    const host = config.metrics?.host ?? AGENT_METRICS_DEFAULT.host;
    try {
      endpoint = await serveMetrics({ registry: metrics.registry, port, host, readiness: readiness.check });
    } catch (e) {
      await backend.close();
      throw new CxlrcError(
        "backend",
        `cannot serve metrics on ${host}:${port}: ${describeError(e)}`,
        {},
        { cause: e },
      );
    }
  }
  const closeEndpoint = async () => {
    readiness.close();
    await endpoint?.close();
  };
  let nc: NatsConnection;
  try {
    nc = await connectBus({
      servers: config.servers,
      name: `cxlrc-agent ${config.host}`,
      ...(config.credsFile ? { credsFile: config.credsFile } : {}),
      log,
    });
  } catch (e) {
    await backend.close();
    await closeEndpoint();
    throw new CxlrcError("backend", `cannot connect to NATS at ${String(config.servers)}`, {}, { cause: e });
  }
  readiness.follow(nc);
  if (config.ensureStreams) {
    try {
      await ensureStreams(await getJsm(nc), { replicas: config.streamReplicas });
    } catch (e) {
      // Without the stream the agent still serves; its events go out as core NATS.
      log.warn({ err: describeError(e) }, "could not ensure JetStream streams");
    }
  }
  let agent: AgentHandle;
  try {
    agent = await startAgent({
      nc,
      host: config.host,
      backend,
      log,
      timeouts: config.timeouts,
      heartbeatMs: config.heartbeatMs,
      stateDir: config.stateDir ?? defaultStateDir(),
      ...(config.dedupCapacity !== undefined ? { dedupCapacity: config.dedupCapacity } : {}),
      ...(config.maxPayloadBytes !== undefined ? { maxPayloadBytes: config.maxPayloadBytes } : {}),
      ...(config.maxQueuePerDevice !== undefined ? { maxQueuePerDevice: config.maxQueuePerDevice } : {}),
      ...(metrics ? { metrics } : {}),
    });
  } catch (e) {
    await nc.close();
    await backend.close();
    await closeEndpoint();
    throw e;
  }
  readiness.enter("serving");

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => {
    resolveDone = r;
  });
  let stopping: Promise<void> | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    log.info({ signal: sig }, "signal: stopping the agent");
    void stop();
  };
  const stop = () => {
    stopping ??= (async () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      readiness.enter("stopping");
      try {
        await agent.stop();
      } finally {
        await nc.drain().catch(() => undefined);
        await backend.close().catch(() => undefined);
        await closeEndpoint();
        resolveDone();
      }
    })();
    return stopping;
  };
  if (opts.handleSignals ?? true) {
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  }
  return { config, agent, nc, backend, metricsUrl: endpoint?.url ?? null, stop, done };
}
