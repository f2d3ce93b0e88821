// Readiness of a service for its /readyz probe: ready while it serves (started, not stopping) and its NATS
// connection is up. Liveness (/healthz) is only "the process answers": a bus outage is not a reason to restart.
import type { NatsConnection } from "@nats-io/transport-node";

export type Readiness = { ready: true } | { ready: false; reason: string };

/** What the service is doing: only "serving" can be ready. */
export type Phase = "starting" | "serving" | "stopping";

export interface ReadinessGate {
  /** The service moved on (starting → serving → stopping). */
  enter(phase: Phase): void;
  /** Follow this connection's status: not ready while it is disconnected or closed. */
  follow(nc: NatsConnection): void;
  check(): Readiness;
  /** Stop following the connection. */
  close(): void;
}

export function createReadinessGate(): ReadinessGate {
  let phase: Phase = "starting";
  let bus: { nc: NatsConnection; up: boolean; stop: () => void } | null = null;
  return {
    enter(p) {
      phase = p;
    },
    follow(nc) {
      bus?.stop();
      const statuses = nc.status();
      const followed = { nc, up: !nc.isClosed(), stop: () => (statuses as { stop?: () => void }).stop?.() };
      bus = followed;
      void (async () => {
        for await (const s of statuses) {
          if (s.type === "disconnect" || s.type === "close") followed.up = false;
          else if (s.type === "reconnect") followed.up = true;
        }
      })().catch(() => undefined);
    },
    check() {
      if (phase !== "serving") return { ready: false, reason: phase };
      if (!bus) return { ready: false, reason: "no bus connection" };
      if (bus.nc.isClosed()) return { ready: false, reason: "bus connection closed" };
      if (!bus.up) return { ready: false, reason: "bus disconnected" };
      return { ready: true };
    },
    close() {
      bus?.stop();
    },
  };
}
