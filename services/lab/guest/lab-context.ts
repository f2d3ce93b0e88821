// What every check gets: the sysfs backend under test (real /sys, /proc, /dev of the guest), the agent's
// OpContext around it with the events the operations emit collected in order, and a second, independent
// backend instance for read-backs (its own fds and mappings), so that a value a check asserts on was read
// fresh from the device, not remembered by the instance that wrote it.

import type { HardwareBackend } from "../../../shared/hw/backend.ts";
import { silentLogger } from "../../../shared/log.ts";
import { createSysfsBackend } from "../../agent/backends/sysfs/sysfs-backend.ts";
import { agentTimeouts, type OpContext } from "../../agent/ops/index.ts";
import type { LabLine } from "../protocol.ts";

export interface LabEvent {
  bdf: string;
  kind: string;
  data?: Record<string, unknown>;
}

export interface LabContext {
  ctx: OpContext;
  backend: HardwareBackend;
  /** Runs fn with a fresh backend instance, closed afterwards. */
  readBack<T>(fn: (b: HardwareBackend) => Promise<T>): Promise<T>;
  /** Events emitted since the last call. */
  takeEvents(): LabEvent[];
  /** Writes a line to the host now, while the check runs (the kernel demo's live progress). */
  report(line: LabLine): void;
  /** Runs fn when the scenario is over, before the backend closes (latest registered first). */
  atClose(fn: () => Promise<unknown>): void;
  close(): Promise<void>;
}

/**
 * The guest runs under TCG, several times slower than a host: the waits that poll get more room than the
 * agent's defaults (the spec minimums, SBR hold and settle, stay as they are).
 */
export const LAB_TIMEOUTS = agentTimeouts({
  commitTimeoutMs: 500,
  decommitTimeoutMs: 500,
  readyTimeoutMs: 10_000,
  flrPendingTimeoutMs: 500,
});

export function createLabContext(report: (line: LabLine) => void = () => {}): LabContext {
  const backend = createSysfsBackend();
  let events: LabEvent[] = [];
  const closers: (() => Promise<unknown>)[] = [];
  const ctx: OpContext = {
    backend,
    host: "kernel-lab",
    log: silentLogger,
    emit: (bdf, kind, data) => {
      events.push(data === undefined ? { bdf, kind } : { bdf, kind, data });
    },
    timeouts: LAB_TIMEOUTS,
    agentVersion: "kernel-lab",
  };
  return {
    ctx,
    backend,
    async readBack(fn) {
      const b = createSysfsBackend();
      try {
        return await fn(b);
      } finally {
        await b.close();
      }
    },
    takeEvents() {
      const out = events;
      events = [];
      return out;
    },
    report,
    atClose(fn) {
      closers.push(fn);
    },
    async close() {
      for (const fn of closers.reverse()) await fn().catch(() => undefined);
      await backend.close();
    },
  };
}
