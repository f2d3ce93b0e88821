// Admission: the one ledger of host and switch slots. A request waits here for a free slot on its host (and
// switch) before its device actor sees it; it is never refused for the ledger's own contention. The ledger keeps,
// per host, the slot holders as stored under that host's key (host-slots.ts) and changes them in one place:
// `commit` takes the slots of the waiters that fit and frees the ones given back, in one compare-and-set of that
// host's key (batched: whatever arrived meanwhile rides along). Another coordinator's holders count too, so a
// host's limit holds fleet-wide; a waiter blocked by them re-reads the key every ADMISSION_TIMING.peerPollMs.
import type { Policy } from "../../machines/policy/defaults.ts";
import { describeError } from "../../shared/errors.ts";
import { type Logger, silentLogger } from "../../shared/log.ts";
import { backoffDelay } from "../../shared/retry.ts";
import { type HostSlotStore, memoryHostSlots, type SlotHolder } from "./host-slots.ts";

export const ADMISSION_TIMING = {
  /** A waiter blocked by another coordinator's holders re-reads the host's key this often. */
  peerPollMs: 100,
  /** Back-off after a failed write or read of a host key (no answer: leader election), growing to the max. */
  retryBaseMs: 50,
  retryMaxMs: 1000,
} as const;

export interface AdmissionClaim {
  requestId: string;
  host: string;
  switchId: string | null;
  /** Device key and BDF (named in the host's key, so a peer can tell whether the request still runs). */
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
  /** Give the request's slots back (idempotent); resolves once the host's key says so. */
  free(requestId: string): Promise<void>;
  /** free(), not awaited. */
  release(requestId: string): void;
  /** This coordinator holds slots for the request. */
  holds(requestId: string): boolean;
  /**
   * Give back the slots of requests that no longer run here (`live` says which still do): a request whose
   * hand-over failed half-way must not keep its host's slot for ever. Returns the request ids freed.
   */
  reconcile(live: (requestId: string) => boolean): string[];
  /**
   * Free slots held in the host keys this ledger knows by requests nobody drives any more (a peer, or an
   * earlier process of this one, died holding them): `isAlive` decides. Returns the request ids freed.
   */
  reclaim(isAlive: (holder: InFlight, requestId: string) => Promise<boolean>): Promise<string[]>;
  /** Requests holding slots here, per host. */
  running(): Record<string, string[]>;
  /** Slot holders of every host this ledger has read, whoever holds them. */
  holders(): Record<string, InFlight>;
  /** Holders per host and per switch (the guard snapshot's concurrency), of one host or of all known. */
  concurrency(host?: string): { hosts: Record<string, string[]>; switches: Record<string, string[]> };
  waiting(): number;
  stop(): void;
}

type Limits = Pick<Policy, "maxConcurrentPerHost" | "maxConcurrentPerSwitch">;

export interface AdmissionOptions {
  /** The per-host keys; default in-process only (one coordinator). */
  slots?: HostSlotStore;
  /** This coordinator's id (the holders' owner). */
  owner?: string;
  now?: () => number;
  log?: Logger;
}

interface Waiter {
  claim: AdmissionClaim;
  /** Told once that it waits (at admit, or when the host's key turns out full of a peer's holders). */
  onWait: ((position: number) => void) | null;
  resolve: () => void;
  reject: (e: Error) => void;
  aborted: boolean;
}

interface HostLedger {
  host: string;
  /** Holders as last read or written. */
  stored: Record<string, SlotHolder>;
  revision: number | null;
  loaded: boolean;
  queue: Waiter[];
  /** Forced claims not yet written. */
  adds: Map<string, SlotHolder>;
  /** Request ids to free, with whoever waits for it. */
  frees: Map<string, Array<() => void>>;
  running: Promise<void> | null;
  again: boolean;
  poll: NodeJS.Timeout | null;
}

export function createAdmission(limits: Limits, opts: AdmissionOptions = {}): Admission {
  const slots = opts.slots ?? memoryHostSlots();
  const owner = opts.owner ?? "local";
  const now = opts.now ?? Date.now;
  const log = opts.log ?? silentLogger;
  const hosts = new Map<string, HostLedger>();
  /** Request id → host, for every request holding slots here (written or being forced). */
  const mine = new Map<string, string>();
  let stopped = false;

  const ledger = (host: string): HostLedger => {
    let h = hosts.get(host);
    if (!h) {
      h = {
        host,
        stored: {},
        revision: null,
        loaded: false,
        queue: [],
        adds: new Map(),
        frees: new Map(),
        running: null,
        again: false,
        poll: null,
      };
      hosts.set(host, h);
    }
    return h;
  };

  /** The holders once the pending frees and forced claims are written. */
  const projected = (h: HostLedger): Record<string, SlotHolder> => {
    const out = { ...h.stored };
    for (const id of h.frees.keys()) delete out[id];
    for (const [id, s] of h.adds) out[id] = s;
    return out;
  };

  const fits = (holders: Record<string, SlotHolder>, c: AdmissionClaim) => {
    let onHost = 0;
    let onSwitch = 0;
    for (const s of Object.values(holders)) {
      onHost++;
      if (c.switchId !== null && s.switchId === c.switchId) onSwitch++;
    }
    return (
      onHost < limits.maxConcurrentPerHost &&
      (c.switchId === null || onSwitch < limits.maxConcurrentPerSwitch)
    );
  };

  const holderOf = (c: AdmissionClaim): SlotHolder => ({
    key: c.key ?? `${c.host}.?`,
    bdf: c.bdf ?? "?",
    switchId: c.switchId,
    owner,
    sinceMs: now(),
  });

  const reload = async (h: HostLedger) => {
    const s = await slots.load(h.host);
    h.stored = s.holders;
    h.revision = s.revision;
    h.loaded = true;
  };

  /** The one place slots are taken and freed: one compare-and-set of the host's key per round. */
  const commit = async (h: HostLedger) => {
    for (let failures = 0; !stopped; ) {
      h.again = false;
      try {
        if (!h.loaded) await reload(h);
        const next = projected(h);
        const taking: Waiter[] = [];
        for (const w of h.queue) {
          if (w.aborted || !fits(next, w.claim)) continue;
          next[w.claim.requestId] = holderOf(w.claim);
          taking.push(w);
        }
        const freeing = [...h.frees.keys()];
        const adding = [...h.adds.keys()];
        const changed = taking.length > 0 || adding.length > 0 || freeing.some((id) => id in h.stored);
        if (changed) {
          h.revision = await slots.save(h.host, next, h.revision);
          h.stored = next;
        }
        for (const id of freeing) {
          for (const done of h.frees.get(id) ?? []) done();
          h.frees.delete(id);
        }
        for (const id of adding) h.adds.delete(id);
        for (const w of taking) {
          h.queue.splice(h.queue.indexOf(w), 1);
          if (w.aborted) h.frees.set(w.claim.requestId, []);
          else {
            mine.set(w.claim.requestId, h.host);
            w.resolve();
          }
        }
        // Waiters given up while the write was under way leave the queue now; the others wait, and say so.
        h.queue = h.queue.filter((w) => !w.aborted);
        h.queue.forEach((w, i) => {
          w.onWait?.(i + 1);
          w.onWait = null;
        });
        failures = 0;
        if (!h.again && !taking.some((w) => w.aborted)) break;
      } catch (err) {
        // Lost the compare-and-set (a peer wrote) or no answer: read the key again and retry; waiters wait.
        failures++;
        h.loaded = false;
        if (failures > 1) {
          log.warn({ host: h.host, err: describeError(err) }, "host slots not written yet; retrying");
          await sleep(
            backoffDelay(failures - 2, {
              baseMs: ADMISSION_TIMING.retryBaseMs,
              maxMs: ADMISSION_TIMING.retryMaxMs,
            }),
          );
        }
      }
    }
    // Blocked by holders this coordinator will not free itself: look again soon.
    const blocked = h.queue.some((w) => !w.aborted);
    const foreign = Object.keys(h.stored).some((id) => !mine.has(id));
    if (blocked && foreign && !h.poll && !stopped) {
      h.poll = setTimeout(() => {
        h.poll = null;
        h.loaded = false;
        kick(h);
      }, ADMISSION_TIMING.peerPollMs);
      h.poll.unref();
    }
  };

  const kick = (h: HostLedger) => {
    if (h.running) {
      h.again = true;
      return;
    }
    h.running = commit(h).finally(() => {
      h.running = null;
      if (h.again && !stopped) kick(h);
    });
  };

  const free = (requestId: string, host?: string): Promise<void> => {
    const where = host ?? mine.get(requestId);
    mine.delete(requestId);
    if (where === undefined) return Promise.resolve();
    const h = ledger(where);
    h.adds.delete(requestId);
    return new Promise<void>((resolve) => {
      h.frees.set(requestId, [...(h.frees.get(requestId) ?? []), resolve]);
      kick(h);
    });
  };

  return {
    admit(claim, o = {}) {
      if (mine.has(claim.requestId)) return Promise.resolve();
      const h = ledger(claim.host);
      return new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          if (w.aborted || mine.has(claim.requestId)) return;
          w.aborted = true;
          const i = h.queue.indexOf(w);
          // Not in a write under way: gone at once; otherwise commit() frees what it took.
          if (i >= 0 && !h.running) h.queue.splice(i, 1);
          reject(new Error(`admission of ${claim.requestId} abandoned`));
        };
        const w: Waiter = {
          claim,
          onWait: o.onWait ?? null,
          resolve: () => {
            o.signal?.removeEventListener("abort", onAbort);
            resolve();
          },
          reject,
          aborted: false,
        };
        // Waits when the slots left, after the waiters ahead that fit, are not enough.
        const next = projected(h);
        let blockedAhead = 0;
        for (const q of h.queue) {
          if (q.aborted) continue;
          if (fits(next, q.claim)) next[q.claim.requestId] = holderOf(q.claim);
          else blockedAhead++;
        }
        h.queue.push(w);
        if (!fits(next, claim)) {
          w.onWait?.(blockedAhead + 1);
          w.onWait = null;
        }
        o.signal?.addEventListener("abort", onAbort, { once: true });
        kick(h);
      });
    },
    force(claim) {
      if (mine.has(claim.requestId)) return;
      const h = ledger(claim.host);
      mine.set(claim.requestId, claim.host);
      h.frees.delete(claim.requestId);
      h.adds.set(claim.requestId, holderOf(claim));
      kick(h);
    },
    free: (requestId) => free(requestId),
    release(requestId) {
      void free(requestId);
    },
    holds: (requestId) => mine.has(requestId),
    reconcile(live) {
      const gone = [...mine.keys()].filter((id) => !live(id));
      for (const id of gone) void free(id);
      return gone;
    },
    async reclaim(isAlive) {
      const freed: string[] = [];
      for (const h of hosts.values()) {
        if (!Object.keys(h.stored).some((id) => !mine.has(id))) continue;
        // Read aside: only commit() changes what the ledger holds (a read here could race its write).
        let current: Record<string, SlotHolder>;
        try {
          current = (await slots.load(h.host)).holders;
        } catch (err) {
          log.warn({ host: h.host, err: describeError(err) }, "host slots not read for reclaim");
          continue;
        }
        for (const [id, s] of Object.entries(current)) {
          if (mine.has(id) || h.frees.has(id)) continue;
          if (await isAlive({ ...s, host: h.host }, id).catch(() => true)) continue;
          freed.push(id);
          h.loaded = false; // commit() reads the key again first: the holder may be newer than its copy
          void free(id, h.host);
        }
      }
      return freed;
    },
    running() {
      const out: Record<string, string[]> = {};
      for (const [id, host] of mine) out[host] = [...(out[host] ?? []), id];
      return out;
    },
    holders() {
      const out: Record<string, InFlight> = {};
      for (const h of hosts.values()) {
        for (const [id, s] of Object.entries(projected(h))) {
          out[id] = { key: s.key, host: h.host, bdf: s.bdf, owner: s.owner, sinceMs: s.sinceMs };
        }
      }
      return out;
    },
    concurrency(host) {
      const out = { hosts: {} as Record<string, string[]>, switches: {} as Record<string, string[]> };
      const which =
        host === undefined ? [...hosts.values()] : [hosts.get(host)].filter((h) => h !== undefined);
      for (const h of which) {
        for (const [id, s] of Object.entries(projected(h))) {
          out.hosts[h.host] = [...(out.hosts[h.host] ?? []), id];
          if (s.switchId !== null) out.switches[s.switchId] = [...(out.switches[s.switchId] ?? []), id];
        }
      }
      return out;
    },
    waiting: () => {
      let n = 0;
      for (const h of hosts.values()) n += h.queue.filter((w) => !w.aborted).length;
      return n;
    },
    stop() {
      stopped = true;
      for (const h of hosts.values()) if (h.poll) clearTimeout(h.poll);
    },
  };
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}
