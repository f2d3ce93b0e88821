// Prometheus metrics of the host agent: its own prom-client Registry (never the global one: tests run many
// agents in one process), served with the health probes by shared/http/metrics-server.ts when the agent's
// config has a metrics section. Labels stay few-valued: operation names, backend kinds, error kinds, never a
// BDF or an operation id.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { AgentOp } from "../../shared/bus/subjects.ts";
import type { ErrorKind } from "../../shared/errors.ts";
import { registerStandardMetrics } from "../../shared/http/standard-metrics.ts";
import type { HardwareBackend } from "../../shared/hw/backend.ts";

/** "ok", or the kind of the error the operation ended with (a closed set: shared/errors.ts). */
export type OpResult = "ok" | ErrorKind;

/** Why an event never reached the bus. */
export type DropReason =
  /** The outbox gave it up: full, the agent stopped with it unsent, or the connection closed. */
  | "outbox"
  /** It could not be built (bad kind or device): never queued. */
  | "unpublishable"
  /** A heartbeat the connection refused to send. */
  | "heartbeat";

export interface AgentMetrics {
  readonly registry: Registry;
  /** One operation ran (from taking its device's lane to its result). */
  operation(op: AgentOp, backend: HardwareBackend["kind"], result: OpResult, seconds: number): void;
  /** A heartbeat went out (now: ms since the epoch). */
  heartbeat(nowMs: number): void;
  eventsDropped(reason: DropReason, n?: number): void;
  /** The outbox's running count of dropped events, read at each scrape (counted as reason "outbox"). */
  countOutboxDropsWith(dropped: () => number): void;
}

/** Agent operations run from a few ms (probe on sysfs) to minutes (a reset waiting for a slow device). */
const SECONDS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export function createAgentMetrics(): AgentMetrics {
  const registry = new Registry();
  registerStandardMetrics(registry, "agent");
  const duration = new Histogram({
    name: "cxlrc_agent_operation_duration_seconds",
    help: "Agent operations by operation, backend and result (ok or the error kind), from device lane to result",
    labelNames: ["op", "backend", "result"] as const,
    buckets: SECONDS,
    registers: [registry],
  });
  const operations = new Counter({
    name: "cxlrc_agent_operations_total",
    help: "Agent operations run, by operation, backend and result (ok or the error kind)",
    labelNames: ["op", "backend", "result"] as const,
    registers: [registry],
  });
  let outboxDrops: (() => number) | null = null;
  let outboxCounted = 0;
  const dropped: Counter<"reason"> = new Counter({
    name: "cxlrc_agent_events_dropped_total",
    help: "Agent events that never reached the bus, by reason (outbox, unpublishable, heartbeat)",
    labelNames: ["reason"] as const,
    registers: [registry],
    collect: () => {
      if (!outboxDrops) return;
      const now = outboxDrops();
      if (now > outboxCounted) dropped.inc({ reason: "outbox" }, now - outboxCounted);
      outboxCounted = Math.max(outboxCounted, now);
    },
  });
  // Present (at 0) before the first drop: an alert on rate() needs the series to exist.
  for (const reason of ["outbox", "unpublishable", "heartbeat"] satisfies DropReason[])
    dropped.inc({ reason }, 0);
  const heartbeats = new Counter({
    name: "cxlrc_agent_heartbeats_total",
    help: "Heartbeats the agent sent",
    registers: [registry],
  });
  const lastHeartbeat = new Gauge({
    name: "cxlrc_agent_last_heartbeat_timestamp_seconds",
    help: "When the agent last sent a heartbeat (Unix time)",
    registers: [registry],
  });

  return {
    registry,
    operation(op, backend, result, seconds) {
      const labels = { op, backend, result };
      duration.observe(labels, seconds);
      operations.inc(labels);
    },
    heartbeat(nowMs) {
      heartbeats.inc();
      lastHeartbeat.set(nowMs / 1000);
    },
    eventsDropped(reason, n = 1) {
      dropped.inc({ reason }, n);
    },
    countOutboxDropsWith(count) {
      outboxDrops = count;
      outboxCounted = 0;
    },
  };
}
