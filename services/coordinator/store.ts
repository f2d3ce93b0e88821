// Durable coordinator state in JetStream KV: device images (per function the last saved one, and the last known
// good one: the last image a reset verified, under its own key), persisted device actors (XState snapshots)
// and leases, and the coordinators' own secrets (the outcome id key, cxlrc-meta). Every write of an actor is a
// compare-and-set on the key's revision, so a coordinator that lost a device cannot overwrite its new owner's
// record; an image write is a new revision of its key, and the record that uses it names that revision.
// Buckets are created idempotently; replicas follow the cluster size.

import { createHash } from "node:crypto";
import { type JetStreamClient, type JetStreamManager, jetstream } from "@nats-io/jetstream";
import { type KV, type KvEntry, Kvm } from "@nats-io/kv";
import { type MsgHdrs, type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { createAckPublisher } from "../../shared/bus/ack-publisher.ts";
import { createKvReader, type KvRead } from "../../shared/bus/kv-read.ts";
import { createReplyMux } from "../../shared/bus/reply-mux.ts";
import { BUCKETS, deviceKey } from "../../shared/bus/subjects.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { remember } from "../../shared/remember.ts";
import { sleepBackoff } from "../../shared/retry.ts";
import { type ActorSummary, summarize, summaryHeaders } from "./actor-index.ts";
import { loadOutcomeSecret, type OutcomeIds, outcomeIds } from "./outcome-id.ts";

export interface StoreOptions {
  /** Lease time = the leases bucket's max age (libraries.md: per-key TTL is ignored on 2.9). */
  leaseTtlMs: number;
  /** JetStream replicas of every bucket (1 on a single server, 3 on a 3-node cluster). */
  replicas?: number;
  /** Revisions kept per image key: the current image and a few earlier ones. */
  imageHistory?: number;
  /** JetStream API timeout (KV get() ignores KvOptions.timeout: it is set on the context). */
  timeoutMs?: number;
  /** How long a decision record is kept (the decisions bucket's max age). Default 24 h. */
  decisionTtlMs?: number;
}

/**
 * What is stored under BUCKETS.images, keyed by the device a request named: the image of every function the
 * plan touches (one for FLR, every function for CXL Reset, siblings too for SBR). Each other function also
 * gets a record of its own, so the image endpoint answers for any of them.
 */
export interface ImageRecord {
  v: 1;
  host: string;
  bdf: string;
  /** bdf → the agent's image (shared/image schema), kept opaque here. */
  images: Record<string, unknown>;
  savedAt: string;
  requestId: string | null;
  opId: string;
  coordinator: string;
}

/**
 * The last known good image of a function (reset-rules.md "kept after the reset as the device's last known
 * good state"): the last image a reset verified on the device, read back field by field. Stored under its own
 * key (verifiedImageKey), so a later reset that saves the device as it is then (perhaps broken, after a
 * release without restore) never overwrites it; only another verify does.
 */
export interface VerifiedImageRecord extends ImageRecord {
  verified: {
    /** When the verify passed. */
    at: string;
    /** The request whose verify passed, and the coordinator that ran it. */
    requestId: string | null;
    coordinator: string;
    /** The image record that was verified: images bucket key and revision. */
    imageKey: string;
    imageRevision: number;
    scope: "io" | "full";
    round: number;
  };
}

/** Key of a function's last known good image in BUCKETS.images (three tokens: never a device key). */
export function verifiedImageKey(host: string, bdf: string): string {
  return `verified.${deviceKey(host, bdf)}`;
}

/** What is stored per device under BUCKETS.actors. */
export interface ActorRecord {
  v: 1;
  host: string;
  bdf: string;
  /** Coordinator that wrote it. */
  owner: string;
  savedAt: string;
  /** The machine's state value, flattened ("savingImage", "failed.quarantined"), for status and recovery. */
  state: string;
  /** The device is mid-operation (a new owner must continue it). */
  active: boolean;
  /** actor.getPersistedSnapshot() */
  snapshot: unknown;
  /** Request ids this device has taken (newest last, bounded): a redelivered request is a duplicate. */
  requests: string[];
  /**
   * Events this snapshot decided (a request's outcome and what the machine emitted after it), published only
   * once the snapshot holding them is stored; a new owner re-publishes them under the same ids (JetStream
   * drops what was already sent), so a crash between the write and the publish loses no outcome.
   */
  announce?: AnnouncedEvent[];
}

/** An event held back until the snapshot that decided it is stored. */
export interface AnnouncedEvent {
  id: string;
  kind: string;
  /** When it was emitted (ISO). */
  time?: string;
  requestId?: string;
  data: Record<string, unknown>;
}

/**
 * A request decided without its device's actor (refused because another coordinator drives the device): kept
 * so that a redelivery of the same request (its acknowledgement lost) gets the same answer, not a second one.
 */
export interface DecisionRecord {
  v: 1;
  requestId: string;
  host: string;
  bdf: string | null;
  /** The event that announced it (re-published under the same id, so JetStream drops the repeat). */
  event: { id: string; kind: string; data: Record<string, unknown> };
  coordinator: string;
  at: string;
}

/** KV key of a request's decision record (request ids may hold characters KV keys cannot). */
export function decisionKey(requestId: string): string {
  return createHash("sha256").update(requestId).digest("hex").slice(0, 40);
}

export interface Stored<T> {
  value: T;
  revision: number;
}

/**
 * Where older versions kept one fleet-wide policy document beside the actors. Nothing writes it any more
 * (admission lives in the admission bucket, one small key per host / device); readers of the actors bucket
 * still skip it, as a store upgraded in place may hold it.
 */
export const FLEET_KEY = "fleet/policy";

export interface CoordinatorStore {
  readonly js: JetStreamClient;
  readonly images: KV;
  readonly actors: KV;
  readonly leases: KV;
  /** Host slots, device budgets and the breaker's open/closed state (admission.ts, budgets.ts, breaker-feed.ts). */
  readonly admission: KV;
  /** The outcome event id of a request: the same on every coordinator, unpredictable to anyone else. */
  readonly outcomeId: OutcomeIds;
  /** Lease time the leases bucket really has (an existing bucket keeps its max age). */
  readonly leaseTtlMs: number;
  /** A key's latest entry in one of the buckets (on the store's reply subscription: shared/bus/kv-read.ts). */
  readKey(bucket: string, key: string): Promise<KvRead | null>;
  /**
   * A compare-and-set write of a key at the revision last read (null: the key never had an entry; a deleted
   * key's is its delete marker's): its new revision; rejects ("in-progress") when the key moved on.
   */
  writeKey(bucket: string, key: string, data: string, revision: number | null): Promise<number>;
  /**
   * Store an image: a new revision of its key (returned), which the record that uses it names. Tried again
   * while the bucket does not answer (a leader election), until `stop` says the caller gave up.
   */
  putImage(record: ImageRecord, stop?: { readonly aborted: boolean }): Promise<number>;
  getImage(host: string, bdf: string): Promise<Stored<ImageRecord> | null>;
  /** Store a function's last known good image (as putImage: the last one written is the key's current). */
  putVerifiedImage(record: VerifiedImageRecord): Promise<number>;
  getVerifiedImage(host: string, bdf: string): Promise<Stored<VerifiedImageRecord> | null>;
  /**
   * One exact revision (what a restore uses: the image persisted for this request, not a later one). A revision
   * never changes: one this process wrote or read lately is answered from memory.
   */
  getImageRevision(key: string, revision: number): Promise<ImageRecord | null>;
  /** The device behind image key `key` rests (or is no longer driven here): its images need not stay in memory. */
  releaseImages(key: string): void;
  loadActor(key: string): Promise<Stored<ActorRecord> | null>;
  /** CAS write: `revision` is the one last read or written (null = must not exist yet). */
  saveActor(key: string, record: ActorRecord, revision: number | null): Promise<number>;
  /**
   * saveActor of a record already serialized (`json`, an ActorRecord's JSON) with its summary (actor-index.ts
   * summarize), as the runtime has both without the record as an object.
   */
  saveActorJson(key: string, summary: ActorSummary, revision: number | null, json: string): Promise<number>;
  /** Every stored device key (deleted ones included: loadActor answers null for them). */
  listActorKeys(): Promise<string[]>;
  /** The decision taken for a request outside its device actor, if any. */
  getDecision(requestId: string): Promise<DecisionRecord | null>;
  /** Store a decision unless one exists: resolves with the one that holds (the first writer's). */
  recordDecision(record: DecisionRecord): Promise<DecisionRecord>;
}

function parse<T>(e: KvEntry | KvRead | null): Stored<T> | null {
  if (e?.operation !== "PUT") return null;
  return { value: e.json<T>(), revision: e.revision };
}

/** Image revisions kept in memory (a few MB at most). */
const IMAGE_RECORDS_KEPT = 256;
/**
 * Image records this process stored for resets that have not come to rest here, by image key: held until
 * releaseImages (a restore and the last-known-good copy read them without a KV read, however many resets run
 * at once; 1,000 at once overran the 256 kept above, two reads back per reset). Bounded all the same (a device
 * never released here): past this many keys the oldest goes, and its reads go to the bucket.
 */
const IMAGE_KEYS_HELD = 4096;

/**
 * Attempts of an image write that gets no answer (the bucket electing a leader: 4-6 s on nats-server 2.9; a
 * publish then fails at once, nobody answering): about a minute at the 1 s cap, for a caller that never stops
 * it. A step's write stops with the step (its state left): its budget does not count the store's time.
 */
const IMAGE_WRITE_ATTEMPTS = 60;

export async function openStore(nc: NatsConnection, opts: StoreOptions): Promise<CoordinatorStore> {
  const js = jetstream(nc, { timeout: opts.timeoutMs ?? 5000 });
  // Actor records and images are written, and keys read, on one reply subscription: no request object per call.
  const mux = createReplyMux(nc);
  const acks = createAckPublisher(nc, { timeoutMs: opts.timeoutMs ?? 5000, mux });
  const reads = createKvReader(mux, { timeoutMs: opts.timeoutMs ?? 5000 });
  const enc = new TextEncoder();
  const kvm = new Kvm(js);
  const replicas = opts.replicas ?? 1;
  // Reads go to the stream leader (allow_direct off): nats-server before 2.9.17 (Debian ships 2.9.10) answers
  // direct gets from followers that are still catching up after a restart or leader change (nats-server
  // #4162, #4710), and a stale read before a compare-and-set makes a good write fail (seen in the chaos runs:
  // "expected revision null" for an image key that existed).
  const consistent = { allow_direct: false };
  const images = await kvm.create(BUCKETS.images, {
    ...consistent,
    history: opts.imageHistory ?? 5,
    replicas,
    description: "cxlrc device images: last known good state, per function",
  });
  const actors = await kvm.create(BUCKETS.actors, {
    ...consistent,
    history: 1,
    replicas,
    description: "cxlrc persisted device actors and fleet policy state",
  });
  const leases = await kvm.create(BUCKETS.leases, {
    ...consistent,
    history: 1,
    replicas,
    ttl: opts.leaseTtlMs,
    description: "cxlrc per-device leases (max age = lease time)",
  });
  const decisions = await kvm.create(BUCKETS.decisions, {
    ...consistent,
    history: 1,
    replicas,
    // As long as the requests stream keeps a request (a redelivery can come no later).
    ttl: opts.decisionTtlMs ?? 24 * 3600_000,
    description: "cxlrc decisions taken outside a device actor, per request id",
  });
  const meta = await kvm.create(BUCKETS.meta, {
    ...consistent,
    history: 1,
    replicas,
    description: "cxlrc coordinator-only secrets (outcome event id key)",
  });
  const admission = await kvm.create(BUCKETS.admission, {
    ...consistent,
    history: 1,
    replicas,
    description: "cxlrc admission: per-host slot holders, per-device budgets, breaker state",
  });
  const outcomeId = outcomeIds(await loadOutcomeSecret(meta));
  let jsm: JetStreamManager | null = null;
  const st = await leases.status();
  const leaseTtlMs = st.ttl > 0 ? st.ttl : opts.leaseTtlMs;

  /** Image records by key@revision (a revision never changes). */
  const imageRecords = new Map<string, ImageRecord>();
  const keepRecord = (ref: string, rec: ImageRecord) => remember(imageRecords, ref, rec, IMAGE_RECORDS_KEPT);
  /** Per image key, the records stored here by revision, for resets not at rest yet (IMAGE_KEYS_HELD). */
  const held = new Map<string, Map<number, ImageRecord>>();
  /**
   * Write an image key: a new revision, without a read first. `writeId` names this write (the JetStream
   * msgID): an attempt sent again after its acknowledgement was lost is the same write, acknowledged with the
   * revision it got the first time, not stored twice. No compare-and-set: the last image written is the
   * key's current one, as when this was a read-then-CAS tried again on a race; what a reset restores is the
   * revision its own record names (getImageRevision), which a later write never changes.
   */
  const writeImageKey = async (
    key: string,
    record: unknown,
    writeId: string,
    stop: { readonly aborted: boolean } = { aborted: false },
  ): Promise<number> => {
    const data = enc.encode(JSON.stringify(record));
    for (let attempt = 1; ; attempt++) {
      try {
        const ack = await acks.publish(`$KV.${BUCKETS.images}.${key}`, data, { msgID: writeId });
        return ack.seq;
      } catch (err) {
        if (stop.aborted || attempt >= IMAGE_WRITE_ATTEMPTS) throw err;
        await sleepBackoff(attempt - 1, { baseMs: 100, maxMs: 1000, jitter: "equal" });
        if (stop.aborted) throw err;
      }
    }
  };

  /**
   * A compare-and-set write, as kv.create/kv.update send it (the key's subject, the revision the write expects
   * in the stream: 0 for none), acknowledged on the reply subscription. A key that moved on is "in-progress".
   */
  const casWrite = async (
    bucket: string,
    key: string,
    data: Uint8Array,
    revision: number | null,
    h: MsgHdrs = natsHeaders(),
  ): Promise<number> => {
    h.set("Nats-Expected-Last-Subject-Sequence", String(revision ?? 0));
    try {
      return (await acks.publish(`$KV.${bucket}.${key}`, data, { headers: h })).seq;
    } catch (err) {
      throw new CxlrcError(
        "in-progress",
        `write of ${key} lost a compare-and-set (expected revision ${revision})`,
        { key, revision },
        { cause: err },
      );
    }
  };

  /**
   * With the record's summary in its headers (actor-index.ts): a headers-only watch then tells every device's
   * state without its snapshot.
   */
  const saveActorJson = (key: string, summary: ActorSummary, revision: number | null, json: string) =>
    casWrite(BUCKETS.actors, key, enc.encode(json), revision, summaryHeaders(summary));

  return {
    js,
    images,
    actors,
    leases,
    admission,
    outcomeId,
    leaseTtlMs,
    readKey: (bucket, key) => reads.get(bucket, key),
    writeKey: (bucket, key, data, revision) => casWrite(bucket, key, enc.encode(data), revision),
    async putImage(record, stop) {
      const key = deviceKey(record.host, record.bdf);
      const revision = await writeImageKey(
        key,
        record,
        `image.${key}.${record.opId}.${record.coordinator}.${record.savedAt}`,
        stop,
      );
      const revisions = held.get(key) ?? new Map<number, ImageRecord>();
      revisions.set(revision, record);
      remember(held, key, revisions, IMAGE_KEYS_HELD);
      return revision;
    },
    putVerifiedImage(record) {
      // Two devices' resets that both include this function (SBR siblings) verified it at once: both are good
      // images; the later write wins.
      const key = verifiedImageKey(record.host, record.bdf);
      const v = record.verified;
      return writeImageKey(key, record, `${key}.${v.imageRevision}.${v.coordinator}.${v.requestId}.${v.at}`);
    },
    async getVerifiedImage(host, bdf) {
      return parse<VerifiedImageRecord>(await images.get(verifiedImageKey(host, bdf)));
    },
    async getImage(host, bdf) {
      return parse<ImageRecord>(await images.get(deviceKey(host, bdf)));
    },
    async getImageRevision(key, revision) {
      const ref = `${key}@${revision}`;
      const mine = held.get(key)?.get(revision);
      if (mine) return mine;
      let rec = imageRecords.get(ref) ?? null;
      if (!rec) {
        const e = await images.get(key, { revision });
        rec = e && e.key === key ? (parse<ImageRecord>(e)?.value ?? null) : null;
      }
      if (rec) keepRecord(ref, rec);
      return rec;
    },
    releaseImages(key) {
      const revisions = held.get(key);
      if (!revisions) return;
      held.delete(key);
      // Read lately, they may be read again (a release restoring the last image): the recent ones stay.
      for (const [revision, rec] of revisions) keepRecord(`${key}@${revision}`, rec);
    },
    async loadActor(key) {
      return parse<ActorRecord>(await reads.get(BUCKETS.actors, key));
    },
    saveActor: (key, record, revision) =>
      saveActorJson(key, summarize(record), revision, JSON.stringify(record)),
    saveActorJson,
    async listActorKeys() {
      // The stream's subjects, one snapshot answer (paged by the client). kv.keys() is not used: it streams
      // until nothing is pending, so a bucket written to all the time (every actor transition) keeps it going
      // for tens of seconds, repeating keys.
      jsm ??= await js.jetstreamManager(false);
      const prefix = `$KV.${BUCKETS.actors}.`;
      const info = await jsm.streams.info(`KV_${BUCKETS.actors}`, { subjects_filter: `${prefix}>` });
      return Object.keys(info.state.subjects ?? {})
        .map((subject) => subject.slice(prefix.length))
        .filter((k) => k !== FLEET_KEY);
    },
    async getDecision(requestId) {
      const e = await reads.get(BUCKETS.decisions, decisionKey(requestId));
      const v = parse<DecisionRecord>(e)?.value ?? null;
      return v && v.requestId === requestId ? v : null;
    },
    async recordDecision(record) {
      const key = decisionKey(record.requestId);
      for (let attempt = 1; ; attempt++) {
        try {
          await decisions.create(key, JSON.stringify(record));
          return record;
        } catch (err) {
          // Exists (the first writer's holds), or no answer (leader election): read back and decide.
          const cur = parse<DecisionRecord>(await decisions.get(key).catch(() => null))?.value;
          if (cur && cur.requestId === record.requestId) return cur;
          if (attempt >= 5) {
            throw new CxlrcError(
              "in-progress",
              `decision of ${record.requestId} not stored`,
              { requestId: record.requestId },
              { cause: err },
            );
          }
          await sleepBackoff(attempt - 1, { baseMs: 200, maxMs: 1000, jitter: "equal" });
        }
      }
    },
  };
}
