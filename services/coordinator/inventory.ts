// Each host's inventory (the agent's `inventory` op), cached briefly and shared by concurrent callers: the
// intake resolves device selectors and unknown hosts with it, probes use it for switches and siblings.
import type { NatsConnection } from "@nats-io/transport-node";
import { nuid } from "@nats-io/transport-node";
import type { InventoryResult } from "../../shared/bus/agent-contract.ts";
import { callAgent } from "../../shared/bus/client.ts";
import type { AgentLink } from "./agent-link.ts";

export interface InventoryCache {
  get(host: string, fresh?: boolean): Promise<InventoryResult>;
  /**
   * The features the host's agent named in its latest inventory (an agent of 0.1.0 names none); an inventory
   * is asked for only when none was seen from the host yet.
   */
  features(host: string): Promise<ReadonlySet<string>>;
}

export function createInventoryCache(
  nc: NatsConnection,
  opts: { ttlMs?: number; timeoutMs: number; link?: AgentLink },
): InventoryCache {
  const ttlMs = opts.ttlMs ?? 2000;
  const cache = new Map<string, { at: number; value: Promise<InventoryResult> }>();
  /** Per host: the fresh call not started yet (callers join it) and the end of the one running. */
  const fresh = new Map<string, { pending: Promise<InventoryResult> | null; tail: Promise<unknown> }>();

  /** Per host: the features of the latest inventory answered (by the order the calls went out). */
  const features = new Map<string, { seq: number; names: ReadonlySet<string> }>();
  let calls = 0;

  const call = (host: string): Promise<InventoryResult> => {
    const opId = `inventory/${nuid.next()}`;
    const value = opts.link
      ? opts.link.call(host, "inventory", opId, {}, { timeoutMs: opts.timeoutMs })
      : callAgent(nc, host, "inventory", opId, {}, { timeoutMs: opts.timeoutMs });
    const seq = ++calls;
    value.then(
      (inv) => {
        if ((features.get(host)?.seq ?? 0) < seq)
          features.set(host, { seq, names: new Set(inv.features ?? []) });
      },
      () => undefined,
    );
    const entry = { at: performance.now(), value };
    cache.set(host, entry);
    value.catch(() => {
      if (cache.get(host) === entry) cache.delete(host);
    });
    return value;
  };

  return {
    async features(host) {
      const known = features.get(host);
      if (known) return known.names;
      return new Set((await this.get(host)).features ?? []);
    },
    get(host, wantFresh = false) {
      const hit = cache.get(host);
      if (hit && !wantFresh && performance.now() - hit.at < ttlMs) return hit.value;
      if (!wantFresh) return call(host);
      // Fresh: a call that starts after this one asked. One runs per host at a time; whoever asks meanwhile
      // joins the next one (it starts when the running one ends), so ten devices re-gating at once cost the
      // agent one or two inventories, not ten.
      let f = fresh.get(host);
      if (!f) {
        f = { pending: null, tail: Promise.resolve() };
        fresh.set(host, f);
      }
      if (f.pending) return f.pending;
      const slot = f;
      const next = slot.tail.then(() => {
        slot.pending = null;
        return call(host);
      });
      const tail = next.catch(() => undefined);
      slot.pending = next;
      slot.tail = tail;
      // Nothing asked since: the host's entry goes.
      void tail.then(() => {
        if (slot.tail === tail && fresh.get(host) === slot) fresh.delete(host);
      });
      return next;
    },
  };
}
