// Ownership by partition (issue #16, "Ownership with fencing"): a coordinator holds one lease per host, not
// one per device. The runtime still asks for a device's lease (its key `<host>.<bdf-token>`): the device joins
// its host's partition lease, taken in the leases bucket under the key `<host>` when this process holds none,
// and leaves it when it rests. The partition's lease is kept while any device of the host is driven here and
// for `lingerMs` after the last one rests, so a host whose devices are reset one after another is taken once:
// no lease write per reset, and every device's operations carry the same epoch (the agent stores a new epoch
// once per ownership, not once per reset).
//
// The epoch of a device is the revision at which its partition's lease was acquired (leases.ts): monotonic over
// the bucket, so it compares with the epochs of per-device leases an agent served before. A partition lost
// (renewals failed, taken, expired) loses every device in it; an agent that refuses one device's epoch has
// served a newer owner of the host, so the whole partition is given up (forfeit).
import { hostOfKey } from "../../shared/bus/subjects.ts";
import type { Logger } from "../../shared/log.ts";
import { remember } from "../../shared/remember.ts";
import {
  createLeaseManager,
  type Lease,
  type LeaseManager,
  type LeaseManagerOptions,
  type LostReason,
  liveLease,
} from "./leases.ts";

/** The partition of a device key `<host>.<bdf-token>`: its host (a host name has no '.'). */
export const partitionOf: (key: string) => string = hostOfKey;

export interface PartitionLeaseOptions extends LeaseManagerOptions {
  /** How long a partition's lease is kept after its last device rests (0: given back at once). */
  lingerMs: number;
  /** A partition's lease is no longer held here (given back after its linger, lost, or stopped). */
  onPartitionGone?: (partition: string) => void;
}

export interface PartitionLeaseManager extends LeaseManager {
  /** The partitions (hosts) whose lease this process holds, driving a device or lingering. */
  partitions(): string[];
  /** Partitions given back whose lease delete has not landed yet (status lists them until it has). */
  partitionsReleasing(): string[];
  /** The epoch of the partition of device `key` while it is held here, whether or not the device is driven. */
  partitionEpoch(key: string): number | undefined;
}

interface Member {
  key: string;
  /** The partition lease's epoch when the device joined it. */
  epoch: number;
  controller: AbortController;
  lost: boolean;
  /** The device's view of the partition lease it was last asked for with (get, asked for on every write). */
  view?: { partition: Lease; lease: Lease };
}

/** Devices released here lately, remembered for releasedAt (bounded). */
const RELEASED_KEPT = 10_000;

export function createPartitionLeases(opts: PartitionLeaseOptions): PartitionLeaseManager {
  const { lingerMs } = opts;
  const log: Logger = opts.log;
  /** partition → device key → member. */
  const members = new Map<string, Map<string, Member>>();
  /** A partition's acquire in flight: devices joining it meanwhile wait for the same one. */
  const acquiring = new Map<string, Promise<Lease | null>>();
  /** Devices on their way into a partition (their acquire not answered yet): it is not idle meanwhile. */
  const joining = new Map<string, number>();
  /** A partition's release in flight: an acquire waits for it (the entry is still ours until it lands). */
  const releasing = new Map<string, Promise<void>>();
  const lingering = new Map<string, NodeJS.Timeout>();
  /** device key → the epoch it left its partition at, and whether the partition was still ours then. */
  const released = new Map<string, { epoch: number; clean: Promise<boolean> }>();

  const inner = createLeaseManager({
    ...opts,
    onLost: (partition, reason) => lost(partition, reason),
  });

  const lost = (partition: string, reason: LostReason) => {
    stopLinger(partition);
    const group = members.get(partition);
    members.delete(partition);
    for (const m of group?.values() ?? []) {
      m.lost = true;
      m.controller.abort(new Error(`lease ${m.key} lost with its partition ${partition} (${reason})`));
      opts.onLost?.(m.key, reason);
    }
    opts.onPartitionGone?.(partition);
  };

  const stopLinger = (partition: string) => {
    const t = lingering.get(partition);
    if (t) clearTimeout(t);
    lingering.delete(partition);
  };

  /** The member of `key`, while its partition's lease is still the one it joined. */
  const memberOf = (key: string): Member | undefined => {
    const partition = partitionOf(key);
    const m = members.get(partition)?.get(key);
    if (!m || m.lost || inner.epoch(partition) !== m.epoch) return undefined;
    return m;
  };

  const view = (m: Member, partition: Lease): Lease => {
    if (m.view?.partition === partition) return m.view.lease;
    // The partition's revision, the device's own loss (one device can leave a partition that stays).
    const lease = liveLease(m.key, m.controller.signal, partition, m);
    m.view = { partition, lease };
    return lease;
  };

  const letGo = (partition: string): Promise<void> => {
    log.debug({ lease: partition }, "partition given back");
    const run = inner.release(partition).finally(() => {
      if (releasing.get(partition) === run) releasing.delete(partition);
    });
    opts.onPartitionGone?.(partition);
    releasing.set(partition, run);
    return run;
  };

  /** The partition has no device driven here: its lease goes after lingerMs (at once with 0). */
  const idle = async (partition: string): Promise<void> => {
    const busy = () => (members.get(partition)?.size ?? 0) > 0 || (joining.get(partition) ?? 0) > 0;
    if (busy()) return;
    members.delete(partition);
    if (!inner.get(partition)) return;
    if (lingerMs <= 0) return letGo(partition);
    if (lingering.has(partition)) return;
    const t = setTimeout(() => {
      lingering.delete(partition);
      if (busy()) return;
      void letGo(partition).catch(() => undefined);
    }, lingerMs);
    t.unref?.();
    lingering.set(partition, t);
  };

  const takePartition = async (partition: string): Promise<Lease | null> => {
    const held = inner.get(partition);
    if (held) return held;
    const pending = acquiring.get(partition);
    if (pending) return pending;
    const run = (async () => {
      await releasing.get(partition)?.catch(() => undefined);
      return inner.acquire(partition);
    })().finally(() => {
      if (acquiring.get(partition) === run) acquiring.delete(partition);
    });
    acquiring.set(partition, run);
    return run;
  };

  const acquire = async (key: string): Promise<Lease | null> => {
    const partition = partitionOf(key);
    stopLinger(partition);
    joining.set(partition, (joining.get(partition) ?? 0) + 1);
    let lease: Lease | null;
    try {
      lease = await takePartition(partition);
    } finally {
      const n = (joining.get(partition) ?? 1) - 1;
      if (n > 0) joining.set(partition, n);
      else joining.delete(partition);
    }
    const epoch = inner.epoch(partition);
    if (!lease || lease.lost || epoch === undefined) {
      // Not ours (a peer holds the host): a partition lingering on nothing goes as it would have.
      void idle(partition).catch(() => undefined);
      return null;
    }
    let group = members.get(partition);
    if (!group) {
      group = new Map();
      members.set(partition, group);
    }
    log.debug({ lease: partition, device: key, epoch, members: group.size }, "device joined its partition");
    const existing = group.get(key);
    if (existing && !existing.lost && existing.epoch === epoch) return view(existing, lease);
    const m: Member = { key, epoch, controller: new AbortController(), lost: false };
    group.set(key, m);
    return view(m, lease);
  };

  const release = async (key: string): Promise<void> => {
    const partition = partitionOf(key);
    const group = members.get(partition);
    const m = group?.get(key);
    if (!group || !m) return;
    group.delete(key);
    log.debug({ lease: partition, device: key, members: [...group.keys()] }, "device left its partition");
    // Left while its partition's lease was still the one it joined and confirmed ours: nobody can have been
    // given the device since, so what was said under the epoch belongs to the device's history (fencing.ts).
    const clean =
      m.lost || inner.epoch(partition) !== m.epoch
        ? Promise.resolve(false)
        : inner.fresh(partition)
          ? Promise.resolve(true)
          : inner.confirm(partition).then((ok) => ok && inner.epoch(partition) === m.epoch);
    remember(released, key, { epoch: m.epoch, clean }, RELEASED_KEPT);
    m.controller.abort(new Error(`lease ${key} released`));
    await clean.catch(() => false);
    await idle(partition);
  };

  return {
    owner: inner.owner,
    instance: inner.instance,
    ttlMs: inner.ttlMs,
    acquire,
    async holder(key) {
      const partition = partitionOf(key);
      // The partition is ours: the device is free for this process unless one of its runs drives it.
      if (inner.get(partition)) {
        const m = memberOf(key);
        return m ? inner.holder(partition) : null;
      }
      return inner.holder(partition);
    },
    get(key) {
      const m = memberOf(key);
      const lease = m ? inner.get(partitionOf(key)) : undefined;
      return m && lease ? view(m, lease) : undefined;
    },
    held: () => [...members.values()].flatMap((g) => [...g.keys()]),
    // A device leaves its partition in memory: nothing of its own to delete (its partition's: below).
    releasing: () => [],
    partitions: () => inner.held(),
    partitionsReleasing: () => inner.releasing(),
    partitionEpoch: (key) => inner.epoch(partitionOf(key)),
    release,
    renewAll: () => inner.renewAll(),
    ready: () => inner.ready(),
    fresh: (key) => memberOf(key) !== undefined && inner.fresh(partitionOf(key)),
    epoch: (key) => memberOf(key)?.epoch,
    async confirm(key) {
      const m = memberOf(key);
      if (!m) return false;
      const partition = partitionOf(key);
      return (await inner.confirm(partition)) && inner.epoch(partition) === m.epoch && !m.lost;
    },
    forfeit(key) {
      // An agent served a newer epoch for this device: a newer owner of the host exists.
      const partition = partitionOf(key);
      if (memberOf(key)) {
        log.warn({ lease: partition, device: key }, "an agent refused the partition's epoch: giving it up");
        inner.forfeit(partition);
      }
    },
    async releasedAt(key, epoch) {
      const r = released.get(key);
      return r !== undefined && r.epoch === epoch && (await r.clean.catch(() => false));
    },
    async stop(o = {}) {
      for (const t of lingering.values()) clearTimeout(t);
      lingering.clear();
      const all = [...members.values()].flatMap((g) => [...g.values()]);
      members.clear();
      for (const m of all)
        m.controller.abort(
          new Error(`lease ${m.key} ${o.release === false ? "abandoned" : "released"} (stop)`),
        );
      await inner.stop(o);
    },
  };
}
