// One coordinator as its own process, forked by the chaos runner (coordinators.ts), so it can be SIGKILLed
// and SIGSTOPped like the real service. Config in $CXLRC_CHAOS_COORDINATOR (JSON). Over the IPC channel it
// says "ready" once serving, and reports every step (before and after its effect, via the coordinator's
// stepHook) and waits for the runner's go-ahead: a fault can land at an exact step, or the step can be held.

import { connectBus } from "../../shared/bus/client.ts";
import { createLogger } from "../../shared/log.ts";
import { retry } from "../../shared/retry.ts";
import type { StepHook } from "../coordinator/effects/agent-actors.ts";
import { startCoordinator } from "../coordinator/service.ts";

export interface CoordinatorProcessConfig {
  id: string;
  index: number;
  servers: string[];
  leaseTtlMs: number;
  replicas: number;
  recoveryIntervalMs: number;
  ackWaitMs: number;
  policy: Record<string, unknown>;
  logLevel: string;
  /** `servers` are relays (relay.ts): dial only them, never the addresses the cluster announces. */
  relayed?: boolean;
}

export type ChildMessage =
  | { t: "ready"; pid: number }
  | {
      t: "step";
      seq: number;
      phase: string;
      point: "before" | "after";
      host: string;
      bdf: string;
      requestId: string | null;
      opId: string;
    }
  | { t: "fatal"; message: string };

export type ParentMessage = { t: "go"; seq: number } | { t: "stop" };

function send(m: ChildMessage): void {
  process.send?.(m);
}

async function main(): Promise<void> {
  const raw = process.env.CXLRC_CHAOS_COORDINATOR;
  if (!raw) throw new Error("CXLRC_CHAOS_COORDINATOR is not set");
  const cfg = JSON.parse(raw) as CoordinatorProcessConfig;
  const log = createLogger(`coordinator-${cfg.id}`, { level: cfg.logLevel, destination: process.stderr });
  const waiting = new Map<number, () => void>();
  let seq = 0;
  let stopping: (() => Promise<void>) | null = null;

  process.on("message", (m: ParentMessage) => {
    if (m.t === "go") {
      waiting.get(m.seq)?.();
      waiting.delete(m.seq);
    } else if (m.t === "stop") {
      void (async () => {
        await stopping?.().catch(() => undefined);
        process.exit(0);
      })();
    }
  });
  // The runner going away takes this process with it.
  process.on("disconnect", () => process.exit(0));

  const stepHook: StepHook = (phase, point, info) => {
    const n = ++seq;
    return new Promise<void>((resolve) => {
      waiting.set(n, resolve);
      send({ t: "step", seq: n, phase, point, ...info });
    });
  };

  const nc = await connectBus({
    servers: cfg.servers,
    name: `cxlrc-coordinator ${cfg.id} (chaos)`,
    log,
    coalesceWrites: true,
    reconnectWaitMs: 50,
    reconnectMaxWaitMs: 500,
    timeoutMs: 2000,
    pingIntervalMs: 2000,
    ...(cfg.relayed ? { ignoreClusterUpdates: true } : {}),
  });
  // A fresh cluster (or one electing a stream leader after a kill) can time out JetStream API calls while
  // the streams and buckets are created: try again for a while, as a supervisor restarting it would.
  const coordinator = await retry(
    () =>
      startCoordinator({
        nc,
        id: cfg.id,
        leaseTtlMs: cfg.leaseTtlMs,
        replicas: cfg.replicas,
        recoveryIntervalMs: cfg.recoveryIntervalMs,
        ackWaitMs: cfg.ackWaitMs,
        policy: cfg.policy,
        log,
        stepHook,
      }),
    {
      deadlineMs: 45_000,
      baseMs: 250,
      maxMs: 1000,
      jitter: "equal",
      onRetry: (e, attempt) => {
        log.warn({ attempt, err: (e as Error).message }, "coordinator start failed; trying again");
        process.stderr.write(
          `coordinator ${cfg.id}: start attempt ${attempt} failed: ${(e as Error).message}\n`,
        );
      },
    },
  );
  stopping = async () => {
    await coordinator.stop();
    await nc.close();
  };
  send({ t: "ready", pid: process.pid });
}

main().catch((e: unknown) => {
  send({ t: "fatal", message: (e as Error)?.stack ?? String(e) });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 50);
});
