// Prometheus metrics of the coordinator: its own prom-client Registry (never the global one, so several
// coordinators in one test process do not collide), fed from the events it publishes, served on GET /metrics
// with the health probes by shared/http/metrics-server.ts.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { EventEnvelope } from "../../shared/bus/codec.ts";
import { registerStandardMetrics } from "../../shared/http/standard-metrics.ts";
import { EVENT } from "./events.ts";

export interface CoordinatorMetrics {
  readonly registry: Registry;
  readonly resets: Counter<"method" | "scope" | "outcome">;
  readonly resetDuration: Histogram<"method" | "outcome">;
  readonly stateDuration: Histogram<"state">;
  readonly devices: Gauge<"state">;
  readonly refusals: Counter<"reason">;
  readonly requests: Counter<"result">;
  readonly scopeViolations: Counter;
  readonly driverHandBacks: Counter<"result" | "driver">;
  readonly leasesHeld: Gauge;
  /** Hosts whose partition lease this coordinator holds (its devices driven, or lingering after). */
  readonly partitionsHeld: Gauge;
  /** Times the fleet view's consumer was found stalled behind the actors bucket and started again. */
  readonly fleetViewRestarts: Counter;
  /** 1 while the fleet circuit breaker is open, 0 while closed (read from the breaker at each scrape). */
  readonly breakerOpen: Gauge;
  /** When this coordinator last heard from the agent of each host (Unix time), by host. */
  readonly agentLastSeen: Gauge<"host">;
  /** Agent events not believed (other host's subject, operation not issued here...), by reason. */
  readonly agentEventsDropped: Counter<"reason">;
  /** Control requests answered with a refusal before decoding (rate-limited, too-large), by subject. */
  readonly controlRefused: Counter<"subject" | "reason">;
  /**
   * What the devices gauge counts, asked when the metrics are read (a scrape), never per transition: a
   * coordinator can know 10,000 devices.
   */
  countDevicesWith(count: () => Map<string, number>): void;
  /** How many leases are held, asked when the metrics are read. */
  countLeasesWith(count: () => number): void;
  /** How many partitions (hosts) are held, asked when the metrics are read. */
  countPartitionsWith(count: () => number): void;
  /** The fleet view's restarts so far, asked when the metrics are read. */
  countViewRestartsWith(count: () => number): void;
  /** Is the breaker open, asked when the metrics are read (its state follows a KV key every coordinator watches). */
  breakerOpenWith(open: () => boolean): void;
  /** The agent of `host` was heard from (a heartbeat, or an operation event believed from its own subject). */
  agentSeen(host: string, nowMs: number): void;
  /** Feed one published event (refusals, outcomes, violations). */
  observe(e: EventEnvelope): void;
  text(): Promise<string>;
}

const SECONDS = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export interface MetricsOptions {
  /** The coordinator's id (its lease owner name): cxlrc_coordinator_info{coordinator} 1. */
  coordinator?: string;
}

/** A gauge whose value is read when the metrics are scraped (never kept up to date per change). */
function scrapedGauge(
  registry: Registry,
  name: string,
  help: string,
): { gauge: Gauge; readWith(read: () => number): void } {
  let read: (() => number) | null = null;
  const gauge: Gauge = new Gauge({
    name,
    help,
    registers: [registry],
    collect: () => {
      if (read) gauge.set(read());
    },
  });
  return {
    gauge,
    readWith: (r) => {
      read = r;
    },
  };
}

export function createMetrics(mo: MetricsOptions = {}): CoordinatorMetrics {
  const registry = new Registry();
  registerStandardMetrics(registry, "coordinator");
  // The id once, in an info metric joined on the scrape's job/instance (`* on (job, instance) group_left
  // (coordinator) cxlrc_coordinator_info`), rather than a label on every series: the series keep their names and
  // labels, and Prometheus's own instance/pod labels already tell coordinators apart.
  if (mo.coordinator !== undefined) {
    new Gauge({
      name: "cxlrc_coordinator_info",
      help: "Always 1: the id of the coordinator serving these metrics (the owner name its leases carry)",
      labelNames: ["coordinator"] as const,
      registers: [registry],
    }).set({ coordinator: mo.coordinator }, 1);
  }
  const resets = new Counter({
    name: "cxlrc_resets_total",
    help: "Resets finished, by method, scope and outcome (verified, failed, quarantined)",
    labelNames: ["method", "scope", "outcome"] as const,
    registers: [registry],
  });
  const resetDuration = new Histogram({
    name: "cxlrc_reset_duration_seconds",
    help: "From plan accepted to the outcome, by method",
    labelNames: ["method", "outcome"] as const,
    buckets: SECONDS,
    registers: [registry],
  });
  const stateDuration = new Histogram({
    name: "cxlrc_state_duration_seconds",
    help: "Time a device spent in each lifecycle state",
    labelNames: ["state"] as const,
    buckets: SECONDS,
    registers: [registry],
  });
  let countDevices: (() => Map<string, number>) | null = null;
  const devices: Gauge<"state"> = new Gauge({
    name: "cxlrc_devices",
    help: "Devices known to this coordinator, per lifecycle state",
    labelNames: ["state"] as const,
    registers: [registry],
    collect: () => {
      if (!countDevices) return;
      devices.reset();
      for (const [state, n] of countDevices()) devices.set({ state }, n);
    },
  });
  const refusals = new Counter({
    name: "cxlrc_refusals_total",
    help: "Requests refused, by reason (flr-unsupported, sibling-busy, quarantined...)",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  const requests = new Counter({
    name: "cxlrc_requests_total",
    help: "Reset requests taken from the stream, by result (accepted, refused, rejected, duplicate)",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  const scopeViolations = new Counter({
    name: "cxlrc_scope_violations_total",
    help: "io-scope resets that changed CXL state (detected by verify)",
    registers: [registry],
  });
  const driverHandBacks = new Counter({
    name: "cxlrc_driver_handbacks_total",
    help: "Drivers given back to a device after a full reset, by result (rebound, failed: alert on failed) and driver",
    labelNames: ["result", "driver"] as const,
    registers: [registry],
  });
  const leases = scrapedGauge(
    registry,
    "cxlrc_leases_held",
    "Devices this coordinator drives, each under its host's partition lease",
  );
  const partitions = scrapedGauge(
    registry,
    "cxlrc_partitions_held",
    "Hosts whose partition lease this coordinator holds (devices driven there, or the linger after the last)",
  );
  let countViewRestarts: (() => number) | null = null;
  let viewRestartsSeen = 0;
  const fleetViewRestarts: Counter = new Counter({
    name: "cxlrc_fleet_view_restarts_total",
    help: "Times the fleet view's consumer of the actors bucket was found stalled behind it and started again",
    registers: [registry],
    collect: () => {
      const now = countViewRestarts?.() ?? viewRestartsSeen;
      if (now > viewRestartsSeen) fleetViewRestarts.inc(now - viewRestartsSeen);
      viewRestartsSeen = now;
    },
  });
  const breaker = scrapedGauge(
    registry,
    "cxlrc_breaker_open",
    "1 while the fleet circuit breaker is open (resets refused until an operator closes it), 0 while closed",
  );
  // One series per host heard from: the fleet's host count, which is bounded and acceptable. A host gone from
  // the fleet keeps its series (and its heartbeat alert) until the coordinator restarts.
  const agentLastSeen = new Gauge({
    name: "cxlrc_agent_last_seen_timestamp_seconds",
    help: "When this coordinator last heard from the agent of each host (heartbeat or operation event; Unix time)",
    labelNames: ["host"] as const,
    registers: [registry],
  });

  const agentEventsDropped = new Counter({
    name: "cxlrc_agent_events_dropped_total",
    help: "Agent events not believed: not on their own host's subject, or for an operation not issued here",
    labelNames: ["reason"] as const,
    registers: [registry],
  });
  const controlRefused = new Counter({
    name: "cxlrc_control_refused_total",
    help: "Control requests refused before decoding, by subject and reason (rate-limited, too-large)",
    labelNames: ["subject", "reason"] as const,
    registers: [registry],
  });

  const str = (v: unknown, dflt: string) => (typeof v === "string" && v.length > 0 ? v : dflt);

  return {
    registry,
    resets,
    resetDuration,
    stateDuration,
    devices,
    refusals,
    requests,
    scopeViolations,
    driverHandBacks,
    leasesHeld: leases.gauge,
    partitionsHeld: partitions.gauge,
    fleetViewRestarts,
    breakerOpen: breaker.gauge,
    agentLastSeen,
    agentEventsDropped,
    controlRefused,
    countDevicesWith(count) {
      countDevices = count;
    },
    countLeasesWith: leases.readWith,
    countPartitionsWith: partitions.readWith,
    countViewRestartsWith(count) {
      countViewRestarts = count;
    },
    breakerOpenWith(open) {
      breaker.readWith(() => (open() ? 1 : 0));
    },
    agentSeen(host, nowMs) {
      agentLastSeen.set({ host }, nowMs / 1000);
    },
    observe(e) {
      switch (e.kind) {
        case EVENT.refused:
          refusals.inc({
            reason: str(
              (e.data.refusal as { reason?: unknown } | undefined)?.reason ?? e.data.reason,
              "unknown",
            ),
          });
          requests.inc({ result: "refused" });
          break;
        case EVENT.plan:
          if (e.data.dryRun !== true) requests.inc({ result: "accepted" });
          break;
        case EVENT.requestRejected:
          requests.inc({ result: "rejected" });
          break;
        case EVENT.requestDuplicate:
          requests.inc({ result: "duplicate" });
          break;
        case EVENT.scopeViolation:
          scopeViolations.inc();
          break;
        case EVENT.driverRebound:
        case EVENT.driverRebindFailed: {
          const result = e.kind === EVENT.driverRebound ? "rebound" : "failed";
          for (const d of Object.values((e.data.drivers ?? {}) as Record<string, unknown>)) {
            driverHandBacks.inc({ result, driver: str(d, "unknown") });
          }
          break;
        }
        default:
          break;
      }
    },
    text: () => registry.metrics(),
  };
}
