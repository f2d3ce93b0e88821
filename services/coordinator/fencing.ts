// Fencing tokens, the coordinator's side (issue #16, "Ownership with fencing"): what the agent link and the
// event publisher need from the lease manager. A device lease's epoch is the KV revision of its acquire; every
// agent operation and every event under the lease carries it, and nothing more is sent under it once the lease
// is not confirmed fresh (renewed within half its time, leases.ts fresh()): a coordinator whose renewals fail
// goes silent while its lease still has half its time to run on the server.
import { deviceKey } from "../../shared/bus/subjects.ts";
import type { FenceGrant } from "./agent-link.ts";
import type { LeaseManager } from "./leases.ts";

export interface FencingView {
  /** The token for operations under `key`, while held here. */
  grant(key: string): FenceGrant | null;
  /** The epoch of the device's lease, while held here. */
  epochOf(host: string, bdf: string): number | undefined;
  /**
   * May an event published at `epoch` still go out: the same lease, fresh (or confirmed by a renewal now), or
   * a lease this process released itself at that epoch. Never after the lease was lost or fenced.
   */
  confirmEvent(host: string, bdf: string, epoch: number): boolean | Promise<boolean>;
  /** An agent refused the lease's epoch: give the lease up (the device's actor is dropped, onLost "fenced"). */
  forfeit(key: string): void;
}

export function createFencing(leases: LeaseManager, owner: string): FencingView {
  const keyOf = (host: string, bdf: string): string | null => {
    try {
      return deviceKey(host, bdf);
    } catch {
      return null;
    }
  };
  return {
    grant(key) {
      const epoch = leases.epoch(key);
      if (epoch === undefined) return null;
      return {
        fence: { epoch, owner, lease: key },
        fresh: () => leases.epoch(key) === epoch && leases.fresh(key),
        confirm: async () =>
          leases.epoch(key) === epoch && (await leases.confirm(key)) && leases.epoch(key) === epoch,
      };
    },
    epochOf(host, bdf) {
      const key = keyOf(host, bdf);
      return key === null ? undefined : leases.epoch(key);
    },
    confirmEvent(host, bdf, epoch) {
      const key = keyOf(host, bdf);
      if (key === null) return false;
      // Said while the lease was held, and the lease was handed back cleanly since (deleted while still ours:
      // the device at rest): nobody was fenced out, the event still belongs to the device's history. A lease
      // given up mid-operation whose delete failed (left to expire), lost or fenced: dropped.
      if (leases.epoch(key) !== epoch) return leases.releasedAt(key, epoch);
      if (leases.fresh(key)) return true;
      return leases.confirm(key).then((ok) => ok && leases.epoch(key) === epoch);
    },
    forfeit(key) {
      leases.forfeit(key);
    },
  };
}
