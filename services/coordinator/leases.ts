// Per-device leases in the JetStream KV bucket BUCKETS.leases, in the form that works on nats-server 2.9
// (libraries.md): the bucket's max age is the lease time (per-key TTL is silently ignored on 2.9); acquire is
// kv.create, renew is kv.update with the last revision every ttl/4, release is kv.delete with previousSeq.
// The server never tells a holder that its lease expired, so the holder finds out itself: a renewal that fails,
// an entry that is gone, or an entry naming another owner ends the lease at once (onLost) and the caller stops
// driving that device.
//
// A create is read back before it counts. On a clustered (R3) bucket nats-server checks the expected last
// subject sequence before proposing the write, not when applying it (nats-io/nats-server#4320, every 2.9
// release): two coordinators racing for a free lease can both get an acknowledgement, at consecutive
// revisions (seen in the chaos runs: epochs 329 and 330 on one device). The later write is the entry; so each
// taker waits a moment (twice its own write's round trip: the rival's proposal was in flight with it) and reads
// the entry back from the leader; only the one whose revision it holds keeps the lease.
//
// An entry the server never expires is taken over. On a replicated bucket nats-server 2.9 can keep an entry
// past the bucket's max age on the node that leads it after a fail-over (nats-io/nats-server#3653, #4754; seen
// in the chaos runs: a device left mid-operation for good, every recovery pass finding its dead holder's
// entry). A holder renews every ttl/4, so a taker that sees the same revision of an entry for STALE_FACTOR
// lease times by its own monotonic clock (no clocks compared) knows nobody renews it: it replaces the entry
// with a compare-and-set on that revision (read back like a create), and the new revision is the new epoch.
// A holder cut off from the bus gave the lease up a whole lease time before that (renew-failed / expired).
import type { JetStreamClient } from "@nats-io/jetstream";
import type { KV, KvEntry } from "@nats-io/kv";
import { headers, nuid } from "@nats-io/transport-node";
import { CxlrcError, isCxlrcError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { remember, trimOldest } from "../../shared/remember.ts";

export interface LeaseRecord {
  /** Coordinator id (configured, stable across restarts). */
  owner: string;
  /** One per process: tells a restarted coordinator's leftovers from a live twin. */
  instance: string;
  acquiredAt: number;
  renewedAt: number;
}

export interface Lease {
  readonly key: string;
  readonly revision: number;
  /** Aborted the moment the lease is lost or released. */
  readonly signal: AbortSignal;
  readonly lost: boolean;
}

/** A Lease whose revision and loss are read, when asked, from where their holder keeps them. */
export function liveLease(
  key: string,
  signal: AbortSignal,
  of: { readonly revision: number },
  loss: { readonly lost: boolean },
): Lease {
  return {
    key,
    get revision() {
      return of.revision;
    },
    signal,
    get lost() {
      return loss.lost;
    },
  };
}

/** "fenced": an agent refused this holder's epoch (another coordinator has driven the device since). */
export type LostReason = "renew-failed" | "gone" | "taken" | "expired" | "fenced";

export interface LeaseManagerOptions {
  kv: KV;
  owner: string;
  /** Lease time: must equal the bucket's max age (store.ts creates the bucket with it). */
  ttlMs: number;
  log: Logger;
  /** Called once per lost lease (not on release). */
  onLost?: (key: string, reason: LostReason) => void;
  /** Wall clock for the lease record (ms since epoch). */
  now?: () => number;
  /** Every failed renewal's error (bus-health.ts moves off a node that does not serve JetStream). */
  onError?: (err: unknown) => void;
  /**
   * Read a create back before it counts (the top of this file). "auto" (default): while the bucket is
   * replicated, asked of its stream at start and on every renewal pass; until the first answer, and when
   * the stream does not answer, creates are read back. A bucket of one replica checks the expected sequence
   * when it stores the write, so there a create that is acknowledged is the entry.
   */
  confirmCreates?: boolean | "auto";
  /**
   * Publish a release's delete marker directly (the bucket's subject, as kv.delete does) to learn its
   * revision: the next acquire of that key here is one update on it, not a create that fails on the marker, a
   * read and an update (nats.js's create of a deleted key). Without it, releases use kv.delete.
   */
  deletes?: { js: JetStreamClient; bucket: string };
}

export interface LeaseManager {
  readonly owner: string;
  readonly instance: string;
  readonly ttlMs: number;
  /**
   * Take the lease on `key`, or null when another coordinator holds it. A lease left by an earlier process with
   * the same owner id (a restart after a crash) is taken over at once instead of waiting for it to expire.
   */
  acquire(key: string): Promise<Lease | null>;
  /** The current holder as stored (null when free). */
  holder(key: string): Promise<LeaseRecord | null>;
  /** The lease this process holds on `key`, if any. */
  get(key: string): Lease | undefined;
  held(): string[];
  /** Leases given up here whose delete is not acknowledged yet (still in KV until it lands, or expires). */
  releasing(): string[];
  release(key: string): Promise<void>;
  /** Renew every held lease now (the timer does this every ttl/4). */
  renewAll(): Promise<void>;
  /**
   * Before acting on a device: true when the lease was renewed within half its time; otherwise (the process
   * was stopped, or the bus was away) renew it now and say whether it is still ours. A lost lease ends here
   * (onLost), so a coordinator waking up after its lease expired never touches the device again.
   */
  confirm(key: string): Promise<boolean>;
  /** Held and renewed within half the lease time (no I/O). */
  fresh(key: string): boolean;
  /**
   * The fencing epoch of a held lease: the KV revision at which this process acquired it (renewals keep it).
   * A later acquire of the key, by anyone, gets a higher revision than every earlier acquire and renewal.
   */
  epoch(key: string): number | undefined;
  /** Give a held lease up at once without touching KV (an agent refused its epoch): onLost with "fenced". */
  forfeit(key: string): void;
  /**
   * This process handed the lease of `epoch` back itself (release() deleted the entry: it was still ours, not
   * lost, not left to expire): what it said under that epoch before releasing may still go out (also after
   * it took the key again). Waits for a release in flight.
   */
  releasedAt(key: string, epoch: number): Promise<boolean>;
  /** Resolves once the bucket's replication is known (confirmCreates "auto"; creates are read back until then). */
  ready(): Promise<void>;
  /** Stop renewing; release every lease unless `release: false` (then they expire after the TTL). */
  stop(opts?: { release?: boolean }): Promise<void>;
}

interface Held {
  key: string;
  revision: number;
  /** The revision of the acquire (the fencing epoch). */
  epoch: number;
  record: LeaseRecord;
  controller: AbortController;
  lastRenewOk: number;
  lost: boolean;
  /** Its Lease, made once (get() is asked on every write of every device in the partition). */
  view?: Lease;
}

export function parseLeaseEntry(e: KvEntry | null): LeaseRecord | null {
  if (e?.operation !== "PUT") return null;
  try {
    const r = e.json<LeaseRecord>();
    return typeof r?.owner === "string" ? r : null;
  } catch {
    return null;
  }
}

/** The wait before a new lease is read back: at least this, twice the create's round trip, at most the max. */
const CONFIRM_MIN_MS = 2;
const CONFIRM_MAX_MS = 250;
/** Lease times an entry must sit at one revision, as a taker sees it, before it counts as abandoned. */
export const STALE_FACTOR = 1.5;

/**
 * What a step fails with when this coordinator may not act on its device: the device lease is not held here,
 * or the step's state was left. A failure of this coordinator, not of the device: the step's machine never
 * takes it (effects/agent-actors.ts lets the device go instead, and whoever holds it next continues it).
 */
export function notHeld(message: string, details: Record<string, unknown> = {}): CxlrcError {
  return new CxlrcError("in-progress", message, { ...details, reason: "not-held" });
}

export function isNotHeld(err: unknown): boolean {
  return isCxlrcError(err) && err.details.reason === "not-held";
}
/** Other holders' entries remembered for that (bounded). */
const SEEN_KEPT = 100_000;

/** A lease this process released: its epoch, whether the release deleted it, and its delete marker if known. */
interface Released {
  epoch: number;
  clean: Promise<boolean>;
  /** The marker's revision and when it was written (monotonic ms). */
  marker?: { revision: number; at: number };
}

export function createLeaseManager(opts: LeaseManagerOptions): LeaseManager {
  const { kv, owner, ttlMs, log } = opts;
  const now = opts.now ?? Date.now;
  const instance = nuid.next();
  const leases = new Map<string, Held>();
  /** Released here, delete in flight. */
  const releasing = new Set<string>();
  /**
   * key → the lease this process released, whether the release deleted it, and (when known) the revision of
   * its delete marker and when it was written (bounded: oldest go first).
   */
  const released = new Map<string, Released>();
  const RELEASED_KEPT = 10_000;
  let stopped = false;
  const mono = () => performance.now();
  const confirmMode = opts.confirmCreates ?? "auto";
  let confirmCreates = confirmMode !== false;
  const learnReplicas = async () => {
    if (confirmMode !== "auto") return;
    try {
      confirmCreates = (await kv.status()).replicas !== 1;
    } catch {
      confirmCreates = true;
    }
  };
  const known = learnReplicas();

  const view = (h: Held): Lease => (h.view ??= liveLease(h.key, h.controller.signal, h, h));

  const lose = (h: Held, reason: LostReason) => {
    if (h.lost) return;
    h.lost = true;
    leases.delete(h.key);
    h.controller.abort(new Error(`lease ${h.key} lost (${reason})`));
    log.warn({ lease: h.key, reason }, "lease lost: no longer driving this device");
    opts.onLost?.(h.key, reason);
  };

  const encode = (r: LeaseRecord) => JSON.stringify(r);

  /** Per key, the revision of another holder's entry last seen and since when (monotonic ms). */
  const seen = new Map<string, { revision: number; since: number }>();
  /** The entry has sat at one revision for STALE_FACTOR lease times, as seen here: nobody renews it. */
  const stale = (key: string, e: KvEntry): boolean => {
    const s = seen.get(key);
    if (!s || s.revision !== e.revision) {
      seen.set(key, { revision: e.revision, since: mono() });
      trimOldest(seen, SEEN_KEPT);
      return false;
    }
    return mono() - s.since >= ttlMs * STALE_FACTOR;
  };

  /** A write that took the lease (a create, or a takeover's update) counts once read back (see the top). */
  const confirmed = async (key: string, revision: number, sentAt: number): Promise<boolean> => {
    if (!confirmCreates) return true;
    const roundTrip = mono() - sentAt;
    await new Promise((r) =>
      setTimeout(r, Math.min(CONFIRM_MAX_MS, Math.max(CONFIRM_MIN_MS, 2 * roundTrip))),
    );
    let back: KvEntry | null;
    try {
      back = await kv.get(key);
    } catch (err) {
      log.debug({ lease: key, err: String(err) }, "lease not confirmed (read-back failed); not taken");
      return false;
    }
    const cur = parseLeaseEntry(back);
    if (!back || back.revision !== revision || cur?.instance !== instance) {
      log.warn(
        { lease: key, revision, latest: back?.revision ?? null, holder: cur?.owner ?? null },
        "lease write acknowledged but overwritten by a concurrent taker (nats-server#4320): not taken",
      );
      return false;
    }
    return true;
  };

  /** `sentAt`: when the write that took it was sent (the server's clock for it started no earlier). */
  const hold = (key: string, revision: number, record: LeaseRecord, sentAt: number): Lease => {
    const h: Held = {
      key,
      revision,
      epoch: revision,
      record,
      controller: new AbortController(),
      lastRenewOk: sentAt,
      lost: false,
    };
    leases.set(key, h);
    return view(h);
  };

  const acquire = async (key: string): Promise<Lease | null> => {
    if (stopped) return null;
    const mine = leases.get(key);
    if (mine) return view(mine);
    const t = now();
    const record: LeaseRecord = { owner, instance, acquiredAt: t, renewedAt: t };
    // Released here lately with a known delete marker (still within the bucket's max age): one update on it.
    const marker = released.get(key)?.marker;
    if (marker && mono() - marker.at < ttlMs * 0.9) {
      const sentAt = mono();
      const revision = await kv.update(key, encode(record), marker.revision).catch(() => null);
      if (revision !== null) {
        if (!(await confirmed(key, revision, sentAt))) return null;
        if (leases.has(key)) return view(leases.get(key)!);
        return hold(key, revision, record, sentAt);
      }
      // Taken by someone since, or the marker expired: the ordinary way below (and not this way again).
      const r = released.get(key);
      if (r) r.marker = undefined;
    }
    const sentAt = mono();
    let revision: number;
    try {
      revision = await kv.create(key, encode(record));
    } catch (err) {
      // Held (or a race on a deleted entry): look at who holds it.
      const e = await kv.get(key);
      const cur = parseLeaseEntry(e);
      if (e && cur && cur.owner === owner && cur.instance !== instance) {
        try {
          const again = mono();
          const revision = await kv.update(key, encode(record), e.revision);
          log.info(
            { lease: key, previous: cur.instance },
            "lease taken over from an earlier process of this coordinator",
          );
          return hold(key, revision, record, again);
        } catch {
          return null;
        }
      }
      if (e && cur && stale(key, e)) {
        const again = mono();
        let revision: number;
        try {
          revision = await kv.update(key, encode(record), e.revision);
        } catch {
          return null; // renewed or taken meanwhile
        }
        if (!(await confirmed(key, revision, again))) return null;
        seen.delete(key);
        log.warn(
          { lease: key, holder: cur.owner, revision: e.revision, idleMs: Math.round(ttlMs * STALE_FACTOR) },
          "lease entry not renewed for longer than the lease time and not expired by the server: taken over",
        );
        if (leases.has(key)) return view(leases.get(key)!);
        return hold(key, revision, record, again);
      }
      if (!cur) log.debug({ lease: key, err: String(err) }, "lease create raced");
      return null;
    }
    // Read back (see the top of this file): a rival whose create was in flight with ours wrote after it.
    if (!(await confirmed(key, revision, sentAt))) return null;
    if (leases.has(key)) return view(leases.get(key)!);
    return hold(key, revision, record, sentAt);
  };

  const renewOne = async (h: Held): Promise<void> => {
    if (h.lost) return;
    const record = { ...h.record, renewedAt: now() };
    // Counted from when the renewal was sent, not from its (maybe slow) acknowledgement: the server's lease
    // time started no earlier, so this side never believes it holds the lease longer than the server does.
    const sentAt = mono();
    try {
      h.revision = await kv.update(h.key, encode(record), h.revision);
      h.record = record;
      h.lastRenewOk = sentAt;
      return;
    } catch (err) {
      opts.onError?.(err);
      if (h.lost || !leases.has(h.key)) return;
      // Wrong revision → someone else wrote it, or it expired and was re-created; no answer → keep trying until
      // the TTL has run out since the last good renewal (then it has expired on the server anyway).
      let e: KvEntry | null;
      try {
        e = await kv.get(h.key);
      } catch (getErr) {
        opts.onError?.(getErr);
        if (mono() - h.lastRenewOk >= ttlMs) lose(h, "expired");
        else log.warn({ lease: h.key, err: String(err) }, "lease renewal failed; retrying");
        return;
      }
      const cur = parseLeaseEntry(e);
      if (!cur) lose(h, "gone");
      else if (cur.owner !== owner || cur.instance !== instance) lose(h, "taken");
      else if (e && e.revision !== h.revision) {
        // Our own write landed but its ack was lost: adopt the revision.
        h.revision = e.revision;
        h.lastRenewOk = sentAt;
      } else if (mono() - h.lastRenewOk >= ttlMs) lose(h, "renew-failed");
    }
  };

  const renewAll = async () => {
    await Promise.all([...leases.values()].map(renewOne));
  };

  let renewing = false;
  const timer = setInterval(
    () => {
      if (renewing || stopped) return;
      renewing = true;
      Promise.all([renewAll(), learnReplicas()])
        .catch((err) => log.error({ err }, "lease renewal loop"))
        .finally(() => {
          renewing = false;
        });
    },
    Math.max(50, Math.floor(ttlMs / 4)),
  );
  timer.unref();

  const release = async (key: string) => {
    const h = leases.get(key);
    if (!h) return;
    leases.delete(key);
    let settle: (clean: boolean) => void = () => undefined;
    const entry: Released = {
      epoch: h.epoch,
      clean: new Promise<boolean>((r) => (settle = r)),
    };
    remember(released, key, entry, RELEASED_KEPT);
    h.controller.abort(new Error(`lease ${key} released`));
    releasing.add(key);
    try {
      await deleteHeld(key, h, entry, settle);
    } finally {
      releasing.delete(key);
    }
  };

  /** Delete a released lease's entry at its revision (a renewal that moved it on: at the new one). */
  const deleteHeld = async (
    key: string,
    h: Held,
    entry: Released,
    settle: (clean: boolean) => void,
  ): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        if (opts.deletes) {
          const hd = headers();
          hd.set("KV-Operation", "DEL");
          hd.set("Nats-Expected-Last-Subject-Sequence", String(h.revision));
          const ack = await opts.deletes.js.publish(`$KV.${opts.deletes.bucket}.${key}`, undefined, {
            headers: hd,
          });
          entry.marker = { revision: ack.seq, at: mono() };
        } else {
          await kv.delete(key, { previousSeq: h.revision });
        }
        settle(true);
        return;
      } catch (err) {
        // A renewal in flight when the release began may have moved the revision on: while the entry is
        // still this instance's, delete it at its new revision (a renewal that lands later fails its CAS).
        const e = attempt < 3 ? await kv.get(key).catch(() => null) : null;
        const cur = parseLeaseEntry(e);
        if (e && cur?.owner === owner && cur.instance === instance) {
          h.revision = e.revision;
          continue;
        }
        log.warn({ lease: key, err: String(err) }, "lease release failed (it will expire)");
        settle(false);
        return;
      }
    }
  };

  return {
    owner,
    instance,
    ttlMs,
    acquire,
    async holder(key) {
      const e = await kv.get(key);
      const cur = parseLeaseEntry(e);
      // An entry nobody renews (the server failed to expire it) holds nothing: acquire takes it over.
      if (e && cur && !leases.has(key) && cur.instance !== instance && stale(key, e)) return null;
      return cur;
    },
    get(key) {
      const h = leases.get(key);
      return h ? view(h) : undefined;
    },
    held: () => [...leases.keys()],
    releasing: () => [...releasing],
    release,
    renewAll,
    ready: () => known,
    fresh(key) {
      const h = leases.get(key);
      return h !== undefined && !h.lost && mono() - h.lastRenewOk < ttlMs / 2;
    },
    epoch(key) {
      const h = leases.get(key);
      return h && !h.lost ? h.epoch : undefined;
    },
    forfeit(key) {
      const h = leases.get(key);
      if (h) lose(h, "fenced");
    },
    async releasedAt(key, epoch) {
      const r = released.get(key);
      return r !== undefined && r.epoch === epoch && (await r.clean);
    },
    async confirm(key) {
      // Renewal without an answer (the bus electing a leader) is waited out: renewOne gives the lease up once
      // a whole lease time passed without a good renewal, and then this says false.
      for (;;) {
        const h = leases.get(key);
        if (!h || h.lost) return false;
        if (mono() - h.lastRenewOk < ttlMs / 2) return true;
        await renewOne(h);
        if (h.lost || leases.get(key) !== h) return false;
        if (mono() - h.lastRenewOk < ttlMs / 2) return true;
        await new Promise((r) => setTimeout(r, Math.max(20, Math.min(250, ttlMs / 20))));
      }
    },
    async stop(o = {}) {
      stopped = true;
      clearInterval(timer);
      if (o.release === false) {
        for (const h of leases.values()) h.controller.abort(new Error(`lease ${h.key} abandoned (stop)`));
        leases.clear();
        return;
      }
      await Promise.all([...leases.keys()].map(release));
    },
  };
}
