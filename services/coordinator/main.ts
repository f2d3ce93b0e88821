// `cxlrc serve coordinator --config coordinator.json`: connect, start, and stop cleanly on SIGINT/SIGTERM
// (intake drained, actors stopped, leases released so a peer continues at once instead of after the TTL).
import { connectBus } from "../../shared/bus/client.ts";
import { describeError } from "../../shared/errors.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import type { CoordinatorConfig } from "./config.ts";
import { type CoordinatorHandle, startCoordinator } from "./service.ts";

export interface RunningFromConfig {
  handle: CoordinatorHandle;
  /** Stop (idempotent): coordinator, then the connection. */
  stop(): Promise<void>;
  /** Resolves once stopped (by stop() or a signal). */
  done: Promise<void>;
}

export async function runCoordinatorFromConfig(
  config: CoordinatorConfig,
  opts: { log?: Logger; signals?: boolean } = {},
): Promise<RunningFromConfig> {
  const log = opts.log ?? createLogger("cxlrc-coordinator", { level: config.logLevel });
  const nc = await connectBus({
    servers: config.nats.servers,
    name: `cxlrc-coordinator ${config.id}`,
    log,
    coalesceWrites: true,
    timeoutMs: config.nats.timeoutMs,
    ...(config.nats.credsFile ? { credsFile: config.nats.credsFile } : {}),
    ...(config.nats.user !== undefined ? { user: config.nats.user, pass: config.nats.pass ?? "" } : {}),
    ...(config.nats.token !== undefined ? { token: config.nats.token } : {}),
  });
  let handle: CoordinatorHandle;
  try {
    handle = await startCoordinator({
      nc,
      id: config.id,
      policy: config.policy,
      leaseTtlMs: config.leaseTtlMs,
      partitionLingerMs: config.partitionLingerMs,
      replicas: config.replicas,
      metricsPort: config.metrics.port,
      metricsHost: config.metrics.host,
      hosts: config.hosts,
      control: config.control,
      log,
    });
  } catch (e) {
    await nc.close().catch(() => undefined);
    throw e;
  }
  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((r) => {
    resolveDone = r;
  });
  let stopping: Promise<void> | null = null;
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM"];
  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal }, "stopping");
    void stop();
  };
  const stop = () => {
    stopping ??= (async () => {
      for (const s of signals) process.off(s, onSignal);
      try {
        await handle.stop();
      } catch (e) {
        log.error({ err: describeError(e) }, "coordinator did not stop cleanly");
      }
      await nc.drain().catch(() => nc.close());
      resolveDone();
    })();
    return stopping;
  };
  if (opts.signals !== false) for (const s of signals) process.on(s, onSignal);
  return { handle, stop, done };
}
