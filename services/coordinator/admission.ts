// Admission: the one ledger of host and switch slots, kept in the memory of the host's owner. A coordinator
// admits a request only under its device's lease, and a device's lease is its host's partition lease
// (partition-leases.ts): one coordinator at a time owns a host, so the host's limit is this ledger's to keep,
// and nothing is written for it. What survives the owner is the stored actors: a coordinator that takes a host
// over takes its devices left mid-operation with their slots (force), before it admits anything new there. A
// request waits here for a free slot on its host (and switch) before its device actor sees it; it is never
// refused for the ledger's own contention.
import type { Policy } from "../../machines/policy/defaults.ts";

export interface AdmissionClaim {
  requestId: string;
  host: string;
  switchId: string | null;
  /** Device key and BDF (shown in the status reply). */
  key?: string;
  bdf?: string;
}

/** A slot holder as the status reply shows it. */
export interface InFlight {
  key: string;
  host: string;
  bdf: string;
  owner: string;
  sinceMs: number;
}

export interface Admission {
  /** Resolves when the claim holds its slots; `onWait` is called once if it has to wait. Idempotent per request id. */
  admit(
    claim: AdmissionClaim,
    opts?: { onWait?: (position: number) => void; signal?: AbortSignal },
  ): Promise<void>;
  /** Take a slot without waiting (a recovered request already runs). */
  force(claim: AdmissionClaim): void;
  /** Give the request's slots back (idempotent); the waiters that fit now get in. */
  release(requestId: string): void;
  /** This coordinator holds slots for the request. */
  holds(requestId: string): boolean;
  /**
   * Give back the slots of requests that no longer run here (`live` says which still do): a request whose
   * hand-over failed half-way must not keep its host's slot for ever. Returns the request ids freed.
   */
  reconcile(live: (requestId: string) => boolean): string[];
  /** Requests holding slots here, per host. */
  running(): Record<string, string[]>;
  /** Slot holders of every host. */
  holders(): Record<string, InFlight>;
  /** Holders per host and per switch (the guard snapshot's concurrency), of one host or of all known. */
  concurrency(host?: string): { hosts: Record<string, string[]>; switches: Record<string, string[]> };
  waiting(): number;
  /** Nothing is admitted any more (waiters wait for good): the coordinator is stopping. */
  stop(): void;
}

type Limits = Pick<Policy, "maxConcurrentPerHost" | "maxConcurrentPerSwitch">;

export interface AdmissionOptions {
  /** This coordinator's id (the holders' owner, in the status reply). */
  owner?: string;
  now?: () => number;
}

interface Holder {
  key: string;
  bdf: string;
  switchId: string | null;
  sinceMs: number;
}

interface Waiter {
  claim: AdmissionClaim;
  resolve: () => void;
}

interface HostLedger {
  holders: Map<string, Holder>;
  queue: Waiter[];
}

export function createAdmission(limits: Limits, opts: AdmissionOptions = {}): Admission {
  const owner = opts.owner ?? "local";
  const now = opts.now ?? Date.now;
  const hosts = new Map<string, HostLedger>();
  /** Request id → host, for every request holding slots here. */
  const mine = new Map<string, string>();
  let stopped = false;

  const ledger = (host: string): HostLedger => {
    let h = hosts.get(host);
    if (!h) {
      h = { holders: new Map(), queue: [] };
      hosts.set(host, h);
    }
    return h;
  };

  const fits = (holders: ReadonlyMap<string, Holder>, c: AdmissionClaim) => {
    if (holders.size >= limits.maxConcurrentPerHost) return false;
    if (c.switchId === null) return true;
    let onSwitch = 0;
    for (const s of holders.values()) if (s.switchId === c.switchId) onSwitch++;
    return onSwitch < limits.maxConcurrentPerSwitch;
  };

  const take = (h: HostLedger, c: AdmissionClaim) => {
    h.holders.set(c.requestId, {
      key: c.key ?? `${c.host}.?`,
      bdf: c.bdf ?? "?",
      switchId: c.switchId,
      sinceMs: now(),
    });
    mine.set(c.requestId, c.host);
  };

  /** Waiters that fit now get in, in arrival order (one blocked by its switch does not hold up the rest). */
  const pump = (host: string, h: HostLedger) => {
    if (stopped) return;
    for (const w of [...h.queue]) {
      if (!fits(h.holders, w.claim)) continue;
      h.queue.splice(h.queue.indexOf(w), 1);
      take(h, w.claim);
      w.resolve();
    }
    if (h.holders.size === 0 && h.queue.length === 0) hosts.delete(host);
  };

  const release = (requestId: string) => {
    const host = mine.get(requestId);
    mine.delete(requestId);
    if (host === undefined) return;
    const h = hosts.get(host);
    if (!h) return;
    h.holders.delete(requestId);
    pump(host, h);
  };

  return {
    admit(claim, o = {}) {
      if (mine.has(claim.requestId)) return Promise.resolve();
      if (stopped) return new Promise<void>(() => undefined);
      const h = ledger(claim.host);
      if (h.queue.length === 0 && fits(h.holders, claim)) {
        take(h, claim);
        return Promise.resolve();
      }
      if (o.signal?.aborted) {
        return Promise.reject(new Error(`admission of ${claim.requestId} abandoned`));
      }
      return new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          const i = h.queue.indexOf(w);
          if (i < 0) return; // admitted meanwhile: the caller releases what it no longer wants
          h.queue.splice(i, 1);
          reject(new Error(`admission of ${claim.requestId} abandoned`));
        };
        const w: Waiter = {
          claim,
          resolve: () => {
            o.signal?.removeEventListener("abort", onAbort);
            resolve();
          },
        };
        h.queue.push(w);
        o.signal?.addEventListener("abort", onAbort, { once: true });
        // The waiters ahead that fit go first; this one waits behind them, or behind the host's holders.
        pump(claim.host, h);
        if (h.queue.includes(w)) o.onWait?.(h.queue.indexOf(w) + 1);
      });
    },
    force(claim) {
      if (mine.has(claim.requestId)) return;
      take(ledger(claim.host), claim);
    },
    release,
    holds: (requestId) => mine.has(requestId),
    reconcile(live) {
      const gone = [...mine.keys()].filter((id) => !live(id));
      for (const id of gone) release(id);
      return gone;
    },
    running() {
      const out: Record<string, string[]> = {};
      for (const [id, host] of mine) out[host] = [...(out[host] ?? []), id];
      return out;
    },
    holders() {
      const out: Record<string, InFlight> = {};
      for (const [host, h] of hosts) {
        for (const [id, s] of h.holders) {
          out[id] = { key: s.key, host, bdf: s.bdf, owner, sinceMs: s.sinceMs };
        }
      }
      return out;
    },
    concurrency(host) {
      const out = { hosts: {} as Record<string, string[]>, switches: {} as Record<string, string[]> };
      const which =
        host === undefined ? [...hosts] : hosts.has(host) ? [[host, hosts.get(host)!] as const] : [];
      for (const [name, h] of which) {
        for (const [id, s] of h.holders) {
          out.hosts[name] = [...(out.hosts[name] ?? []), id];
          if (s.switchId !== null) out.switches[s.switchId] = [...(out.switches[s.switchId] ?? []), id];
        }
      }
      return out;
    },
    waiting: () => {
      let n = 0;
      for (const h of hosts.values()) n += h.queue.length;
      return n;
    },
    stop() {
      stopped = true;
    },
  };
}
