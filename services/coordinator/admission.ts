// Admission: a request waits here for a free host (and switch) slot before its device actor sees it, so a
// fleet controller can queue many requests and each starts when the per-host / per-switch limit allows,
// instead of being refused host-busy. In-process and first-come first-served; the fleet state in KV
// (fleet-state.ts) is the cluster-wide check that follows.
import type { Policy } from "../../machines/policy/defaults.ts";

export interface AdmissionClaim {
  requestId: string;
  host: string;
  switchId: string | null;
}

export interface Admission {
  /** Resolves when the claim fits; `onWait` is called once if it has to wait. Idempotent per request id. */
  admit(
    claim: AdmissionClaim,
    opts?: { onWait?: (position: number) => void; signal?: AbortSignal },
  ): Promise<void>;
  /** Take a slot without waiting (a recovered request already runs). */
  force(claim: AdmissionClaim): void;
  release(requestId: string): void;
  /**
   * Give back the slots of requests that no longer run here (`live` says which still do): a request whose
   * hand-over failed half-way must not keep its host's slot for ever. Returns the request ids freed.
   */
  reconcile(live: (requestId: string) => boolean): string[];
  running(): Record<string, string[]>;
  waiting(): number;
}

type Limits = Pick<Policy, "maxConcurrentPerHost" | "maxConcurrentPerSwitch">;

export function createAdmission(limits: Limits): Admission {
  const held = new Map<string, AdmissionClaim>();
  const queue: Array<{ claim: AdmissionClaim; resolve: () => void; reject: (e: Error) => void }> = [];

  const count = (pred: (c: AdmissionClaim) => boolean) => [...held.values()].filter(pred).length;
  const fits = (c: AdmissionClaim) =>
    count((h) => h.host === c.host) < limits.maxConcurrentPerHost &&
    (c.switchId === null ||
      count((h) => h.host === c.host && h.switchId === c.switchId) < limits.maxConcurrentPerSwitch);

  const pump = () => {
    for (let i = 0; i < queue.length; ) {
      const q = queue[i]!;
      if (fits(q.claim)) {
        held.set(q.claim.requestId, q.claim);
        queue.splice(i, 1);
        q.resolve();
      } else i++;
    }
  };

  return {
    admit(claim, opts = {}) {
      if (held.has(claim.requestId)) return Promise.resolve();
      // Earlier waiters of the same host go first.
      if (fits(claim) && !queue.some((q) => q.claim.host === claim.host)) {
        held.set(claim.requestId, claim);
        return Promise.resolve();
      }
      return new Promise<void>((resolve, reject) => {
        const onAbort = () => {
          const i = queue.indexOf(entry);
          if (i >= 0) {
            queue.splice(i, 1);
            reject(new Error(`admission of ${claim.requestId} abandoned`));
          }
        };
        const entry = {
          claim,
          resolve: () => {
            opts.signal?.removeEventListener("abort", onAbort);
            resolve();
          },
          reject,
        };
        queue.push(entry);
        opts.onWait?.(queue.filter((q) => q.claim.host === claim.host).length);
        opts.signal?.addEventListener("abort", onAbort, { once: true });
      });
    },
    force(claim) {
      held.set(claim.requestId, claim);
    },
    release(requestId) {
      if (held.delete(requestId)) pump();
    },
    reconcile(live) {
      const freed = [...held.keys()].filter((id) => !live(id));
      for (const id of freed) held.delete(id);
      if (freed.length > 0) pump();
      return freed;
    },
    running() {
      const out: Record<string, string[]> = {};
      for (const c of held.values()) out[c.host] = [...(out[c.host] ?? []), c.requestId];
      return out;
    },
    waiting: () => queue.length,
  };
}
