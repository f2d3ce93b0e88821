// `cxlrc serve coordinator|agent [--config FILE] [flags]`: run a service in the foreground. The config comes
// from a JSON file, then CXLRC_* environment variables, then flags (each layer overrides the one before),
// and is validated by the service's own zod schema: a bad or unknown key is named, exit 2, before anything
// connects. SIGINT/SIGTERM stop the service cleanly (exit 0).
import { CxlrcError, describeError } from "../../../shared/errors.ts";
import { createLogger } from "../../../shared/log.ts";
import { checkLogLevel, parseFlags, parseMsFlag, takePositionals, takeTarget } from "../args.ts";
import { COMMANDS, optionsOf } from "../command-table.ts";
import { EXIT, UsageError } from "../exit.ts";
import { checkReadable, readJsonFile } from "../files.ts";

export const usage = `Usage: cxlrc serve coordinator [--config FILE] [options]
       cxlrc serve agent [--config FILE] [options]
       cxlrc serve ui [--config FILE] [--listen HOST:PORT] [options]

Run the coordinator (one or more per fleet: reset lifecycles, leases, policy, events) or the agent (one per
host: register access through sysfs/VFIO, or the simulator) in the foreground, logging JSON to stdout.

Configuration, later layers winning: the JSON file of --config, then CXLRC_* environment variables, then
flags. The file is checked against the service's schema: an unknown or bad key is named and nothing starts.

Common options:
  --config FILE          JSON config file
  --server URL           NATS server(s), comma-separated        env CXLRC_NATS_URL, then NATS_URL
  --creds FILE           NATS .creds file (else the CXLRC_NATS_* credentials: see cxlrc --help)
  --log-level LEVEL      fatal|error|warn|info|debug|trace|silent  env CXLRC_LOG_LEVEL
  -h, --help             this text

coordinator:
  --id ID                coordinator id (unique per process)     env CXLRC_COORDINATOR_ID
  --metrics-port N       Prometheus port (0 any, "off" none)      env CXLRC_METRICS_PORT
  --lease-ttl-ms N       device lease time (ms, or a duration: 15s)
  --host NAME            discover this host's devices at start (repeat)

agent:
  --host NAME            this host's name                         env CXLRC_HOST
  --backend sysfs|sim    real hardware (default) or the simulator env CXLRC_BACKEND
  --fleet FILE           sim: fleet file (default: the bundled demo fleet)  env CXLRC_FLEET_FILE
  --sim-host NAME        sim: which host of the fleet (default: --host)
  --sysfs-root DIR       sysfs: where sysfs is mounted (default /sys)
  --heartbeat-ms N       heartbeat interval (ms, or a duration: 5s)
  --metrics-port N       /metrics, /healthz, /readyz port (default 9465, "off" none)  env CXLRC_METRICS_PORT

ui (the live fleet page, for SREs: connect it with the SRE principal's credentials; the browser never
sees them):
  --listen HOST:PORT     where the page listens (default 127.0.0.1:9480)  env CXLRC_UI_LISTEN

Exit codes: 0 stopped by a signal, 1 the service failed, 2 bad flags or config, 3 bus unavailable.`;

type Json = Record<string, unknown>;

/** The JSON object in FILE; a missing, unreadable or non-JSON file is bad input naming the file. */
export function readConfigFile(path: string): Json {
  const raw = readJsonFile(path);
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new CxlrcError("bad-input", `${path}: expected a JSON object`, { path });
  }
  return raw as Json;
}

function int(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`bad ${flag} ${JSON.stringify(v)}: expected a whole number`);
  return Number(v);
}

/** --creds: the file must be readable now, not at the first connect. */
function credsFlag(path: string | undefined): string | undefined {
  if (path !== undefined) checkReadable(path);
  return path;
}

function servers(v: string | undefined): string | string[] | undefined {
  if (v === undefined || v === "") return undefined;
  const list = v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  return list.length === 1 ? list[0] : list;
}

/** Set `key` on `obj` only when the value is defined (so an absent flag never hides the file's value). */
function put(obj: Json, key: string, value: unknown): void {
  if (value !== undefined) obj[key] = value;
}

export async function run(argv: string[]): Promise<number> {
  const spec = COMMANDS.serve;
  const { target, rest } = takeTarget(
    "serve",
    argv,
    Object.keys(spec.targets),
    optionsOf(spec, "coordinator"),
    "service",
  );
  if (target === "ui") return serveUi(rest);
  return target === "coordinator" ? serveCoordinator(rest) : serveAgent(rest);
}

/**
 * The config object of a service that names its bus at the top level (the agent, the fleet page): the file of
 * --config, then `servers` and `credsFile` from flags and env.
 */
function flatConfig(
  values: { config?: string; server?: string; creds?: string },
  env: NodeJS.ProcessEnv,
): Json {
  const cfg: Json = values.config !== undefined ? readConfigFile(values.config) : {};
  put(
    cfg,
    "servers",
    servers(values.server) ?? servers(env.CXLRC_NATS_URL) ?? cfg.servers ?? servers(env.NATS_URL),
  );
  put(cfg, "credsFile", credsFlag(values.creds));
  return cfg;
}

async function serveUi(argv: string[]): Promise<number> {
  const { parseListen, parseUiConfig, startUi } = await import("../../ui/server.ts");
  const { values, positionals } = parseFlags("serve", argv, {
    ...COMMANDS.serve.options,
    ...COMMANDS.serve.targets.ui,
  });
  takePositionals("serve", positionals, []);
  const input = flatConfig(values, process.env);
  const listen = values.listen ?? process.env.CXLRC_UI_LISTEN;
  if (listen !== undefined) input.listen = parseListen(listen);
  const config = parseUiConfig(input);
  const level = checkLogLevel(values["log-level"] ?? process.env.CXLRC_LOG_LEVEL ?? "info");
  const log = createLogger("cxlrc-ui", { level });
  let ui: Awaited<ReturnType<typeof startUi>>;
  try {
    ui = await startUi({ ...config, log });
  } catch (e) {
    return startFailure("ui", e);
  }
  process.stderr.write(`cxlrc serve ui: the fleet page is at ${ui.url}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  await ui.close();
  return EXIT.ok;
}

/** The coordinator's config object from file, env and flags (not yet validated). */
export function coordinatorConfigInput(argv: string[], env: NodeJS.ProcessEnv = process.env): Json {
  const { values, positionals } = parseFlags("serve", argv, {
    ...COMMANDS.serve.options,
    ...COMMANDS.serve.targets.coordinator,
  });
  takePositionals("serve", positionals, []);
  const cfg: Json = values.config !== undefined ? readConfigFile(values.config) : {};
  const nats: Json =
    cfg.nats && typeof cfg.nats === "object" && !Array.isArray(cfg.nats) ? { ...(cfg.nats as Json) } : {};
  put(
    nats,
    "servers",
    servers(values.server) ??
      servers(env.CXLRC_NATS_URL) ??
      nats.servers ??
      servers(env.NATS_URL) ??
      "nats://127.0.0.1:4222",
  );
  put(nats, "credsFile", credsFlag(values.creds));
  if (cfg.nats === undefined || (typeof cfg.nats === "object" && !Array.isArray(cfg.nats))) cfg.nats = nats;
  put(cfg, "id", values.id ?? env.CXLRC_COORDINATOR_ID ?? cfg.id ?? `coordinator-${process.pid}`);
  put(cfg, "logLevel", values["log-level"] ?? env.CXLRC_LOG_LEVEL);
  const metrics = values["metrics-port"] ?? env.CXLRC_METRICS_PORT;
  if (metrics !== undefined) {
    const base = cfg.metrics && typeof cfg.metrics === "object" ? (cfg.metrics as Json) : {};
    cfg.metrics = { ...base, port: metrics === "off" ? null : int("--metrics-port", metrics) };
  }
  put(cfg, "leaseTtlMs", parseMsFlag("--lease-ttl-ms", values["lease-ttl-ms"]));
  put(cfg, "hosts", values.host);
  return cfg;
}

/** The agent's config object from file, env and flags (not yet validated). */
export function agentConfigInput(argv: string[], env: NodeJS.ProcessEnv = process.env): Json {
  const { values, positionals } = parseFlags("serve", argv, {
    ...COMMANDS.serve.options,
    ...COMMANDS.serve.targets.agent,
  });
  takePositionals("serve", positionals, []);
  const cfg = flatConfig(values, env);
  put(cfg, "host", values.host ?? env.CXLRC_HOST);
  put(cfg, "backend", values.backend ?? env.CXLRC_BACKEND);
  put(cfg, "fleetFile", values.fleet ?? env.CXLRC_FLEET_FILE);
  put(cfg, "simHost", values["sim-host"]);
  put(cfg, "sysfsRoot", values["sysfs-root"]);
  put(cfg, "heartbeatMs", parseMsFlag("--heartbeat-ms", values["heartbeat-ms"]));
  put(cfg, "logLevel", values["log-level"] ?? env.CXLRC_LOG_LEVEL);
  // A served agent has its endpoint on by default (the schema's defaults: 127.0.0.1:9465); embedded ones not.
  cfg.metrics ??= {};
  const metrics = values["metrics-port"] ?? env.CXLRC_METRICS_PORT;
  if (metrics !== undefined && cfg.metrics && typeof cfg.metrics === "object") {
    cfg.metrics = {
      ...(cfg.metrics as Json),
      port: metrics === "off" ? null : int("--metrics-port", metrics),
    };
  }
  return cfg;
}

async function serveAgent(argv: string[]): Promise<number> {
  const input = agentConfigInput(argv);
  const { parseAgentConfig, runAgentFromConfig } = await import("../../agent/main.ts");
  const config = parseAgentConfig(input); // bad-input (exit 2) before anything connects
  let running: Awaited<ReturnType<typeof runAgentFromConfig>>;
  try {
    running = await runAgentFromConfig(config);
  } catch (e) {
    return startFailure("agent", e);
  }
  await running.done;
  return EXIT.ok;
}

async function serveCoordinator(argv: string[]): Promise<number> {
  const input = coordinatorConfigInput(argv);
  const { parseCoordinatorConfig } = await import("../../coordinator/config.ts");
  const config = parseCoordinatorConfig(input);
  const { runCoordinatorFromConfig } = await import("../../coordinator/main.ts");
  let running: Awaited<ReturnType<typeof runCoordinatorFromConfig>>;
  try {
    running = await runCoordinatorFromConfig(config);
  } catch (e) {
    return startFailure("coordinator", e);
  }
  await running.done;
  return EXIT.ok;
}

function startFailure(role: string, e: unknown): number {
  const msg = describeError(e);
  process.stderr.write(`cxlrc serve ${role}: ${msg}\n`);
  if (e instanceof CxlrcError && e.kind === "bad-input") return EXIT.usage;
  return /connect|ECONNREFUSED|ENOTFOUND|connection refused/i.test(msg) ? EXIT.unavailable : EXIT.failure;
}
