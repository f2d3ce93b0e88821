// What every operation receives: the backend, the host name, a logger, an event sink and the timeouts.
import type { HardwareBackend } from "../../../shared/hw/backend.ts";
import type { Logger } from "../../../shared/log.ts";
import type { AgentTimeouts } from "./timeouts.ts";

export interface OpContext {
  backend: HardwareBackend;
  host: string;
  log: Logger;
  /** Progress events (reset.started, decoder.committed…), published by the service as they happen. */
  emit: (bdf: string, kind: string, data?: Record<string, unknown>) => void;
  timeouts: AgentTimeouts;
  agentVersion: string;
}
