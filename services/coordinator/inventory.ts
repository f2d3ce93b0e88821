// Each host's inventory (the agent's `inventory` op), cached briefly and shared by concurrent callers: the
// intake resolves device selectors and unknown hosts with it, probes use it for switches and siblings.
import type { NatsConnection } from "@nats-io/transport-node";
import { nuid } from "@nats-io/transport-node";
import type { InventoryResult } from "../../shared/bus/agent-contract.ts";
import { callAgent } from "../../shared/bus/client.ts";
import type { AgentLink } from "./agent-link.ts";

export interface InventoryCache {
  get(host: string, fresh?: boolean): Promise<InventoryResult>;
}

export function createInventoryCache(
  nc: NatsConnection,
  opts: { ttlMs?: number; timeoutMs: number; link?: AgentLink },
): InventoryCache {
  const ttlMs = opts.ttlMs ?? 2000;
  const cache = new Map<string, { at: number; value: Promise<InventoryResult> }>();
  return {
    get(host, fresh = false) {
      const hit = cache.get(host);
      if (hit && !fresh && performance.now() - hit.at < ttlMs) return hit.value;
      const opId = `inventory/${nuid.next()}`;
      const value = opts.link
        ? opts.link.call(host, "inventory", opId, {}, { timeoutMs: opts.timeoutMs })
        : callAgent(nc, host, "inventory", opId, {}, { timeoutMs: opts.timeoutMs });
      const entry = { at: performance.now(), value };
      cache.set(host, entry);
      value.catch(() => {
        if (cache.get(host) === entry) cache.delete(host);
      });
      return value;
    },
  };
}
