// What every cxlrc endpoint serves beside its own metrics: the process metrics of prom-client
// (process_cpu_seconds_total, nodejs_heap_size_used_bytes, ...) and cxlrc_build_info.
import { collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { packageVersion } from "../version.ts";

export type Component = "coordinator" | "agent";

let processRegistry: Registry | undefined;

/**
 * The process metrics, collected once per process: each collectDefaultMetrics() call starts a GC observer and
 * an event-loop monitor that are never stopped, and a test process starts many coordinators and agents.
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * prom-client's gauges nodejs_active_{handles,requests,resources}_total break the naming rule (`_total` is for
 * counters: promtool check metrics flags them); their per-type twins without the suffix say the same.
 */
const misnamed = (m: { name: string; type: unknown }) => m.name.endsWith("_total") && m.type !== "counter";

/** Add the process metrics and cxlrc_build_info{version, node, component} 1 to a service's own registry. */
export function registerStandardMetrics(registry: Registry, component: Component): void {
  const proc = processMetrics();
  for (const metric of proc.getMetricsAsArray()) {
    if (misnamed(metric)) continue;
    const m = proc.getSingleMetric(metric.name);
    if (m) registry.registerMetric(m);
  }
  new Gauge({
    name: "cxlrc_build_info",
    help: "Always 1: the cxlrc version, the Node.js version and which component serves these metrics",
    labelNames: ["version", "node", "component"] as const,
    registers: [registry],
  }).set({ version: packageVersion(), node: process.version, component }, 1);
}
