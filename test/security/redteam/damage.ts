// What a confused deputy could be made to do: the JetStream and KV API subjects an answer (a control reply, an
// agent's reply, a discovery reply, a JetStream PubAck) would act on if it were delivered there in the account
// that holds the streams. And the oracle that says whether anything happened: the stored state read back
// through the coordinator principal's JetStream access before and after, and a witness subscribed to every
// target subject in that account (it sees any message that reaches one).
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { BUCKETS, STREAMS } from "../../../shared/bus/subjects.ts";

/** Every stream cxlrc keeps: the two of its own and the one behind each KV bucket. */
export const ALL_STREAMS: string[] = [
  STREAMS.events.name,
  STREAMS.requests.name,
  ...Object.values(BUCKETS).map((b) => `KV_${b}`),
];

export interface Target {
  subject: string;
  /** What it would do: "purge CXLRC_EVENTS", "overwrite cxlrc-leases/sim-b.0000-01-00-0"... */
  what: string;
}

/**
 * The damaging reply subjects: purge, delete, delete a message of and delete a consumer of every stream, and
 * overwrite one real key of every bucket. `durables` names a consumer of a stream (default "x"), `keys` the
 * key of each bucket to aim at.
 */
export function damagingTargets(keys: Record<string, string>, durables: Record<string, string>): Target[] {
  const out: Target[] = [];
  for (const s of ALL_STREAMS) {
    out.push({ subject: `$JS.API.STREAM.PURGE.${s}`, what: `purge ${s}` });
    out.push({ subject: `$JS.API.STREAM.DELETE.${s}`, what: `delete ${s}` });
    out.push({ subject: `$JS.API.STREAM.MSG.DELETE.${s}`, what: `delete a message of ${s}` });
    const d = durables[s] ?? "x";
    out.push({ subject: `$JS.API.CONSUMER.DELETE.${s}.${d}`, what: `delete consumer ${d} of ${s}` });
  }
  for (const b of Object.values(BUCKETS)) {
    const key = keys[b];
    if (key === undefined) throw new TypeError(`no key given for bucket ${b}`);
    out.push({ subject: `$KV.${b}.${key}`, what: `overwrite ${b}/${key}` });
  }
  return out;
}

interface StreamState {
  messages: number;
  firstSeq: number;
  lastSeq: number;
  deleted: number;
  durables: string[];
}

export interface Snapshot {
  streams: Record<string, StreamState | null>;
  /** bucket/key → revision (null: no such key), and the value's text. */
  keys: Record<string, { revision: number | null; value: string | null }>;
}

/** Which of the named durables exist (the coordinator may look a consumer up by name, not list them). */
async function durablesOf(jsm: JetStreamManager, stream: string, names: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of names) {
    if (
      await jsm.consumers.info(stream, n).then(
        () => true,
        () => false,
      )
    )
      out.push(n);
  }
  return out.sort();
}

/**
 * The stored state, read with the coordinator principal's JetStream access: every stream's counters, which
 * of the `durables` named per stream exist, and the revision and value of each bucket's key in `keys`.
 */
export async function snapshot(
  jsm: JetStreamManager,
  kvs: Record<string, KV>,
  keys: Record<string, string>,
  durables: Record<string, string[]> = {},
): Promise<Snapshot> {
  const streams: Snapshot["streams"] = {};
  for (const s of ALL_STREAMS) {
    const info = await jsm.streams.info(s).catch(() => null);
    streams[s] = info
      ? {
          messages: info.state.messages,
          firstSeq: info.state.first_seq,
          lastSeq: info.state.last_seq,
          deleted: info.state.num_deleted ?? 0,
          durables: await durablesOf(jsm, s, durables[s] ?? []),
        }
      : null;
  }
  const out: Snapshot["keys"] = {};
  for (const [bucket, key] of Object.entries(keys)) {
    const kv = kvs[bucket];
    if (!kv) throw new TypeError(`no KV handle for bucket ${bucket}`);
    const e = await kv.get(key);
    out[`${bucket}/${key}`] = {
      revision: e && e.operation === "PUT" ? e.revision : null,
      value: e && e.operation === "PUT" ? e.string() : null,
    };
  }
  return { streams, keys: out };
}

/** Is this text what an answer looks like (a control or agent reply, a PubAck, a discovery reply, a JS error)? */
export function looksLikeAnswer(text: string | null): boolean {
  if (text === null) return false;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return false;
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  return (
    "ok" in o ||
    ("stream" in o && "seq" in o) ||
    (typeof o.type === "string" && o.type.startsWith("io.nats.micro")) ||
    (typeof o.error === "object" && o.error !== null)
  );
}

/**
 * How a stream may change on its own while an attack runs:
 * - "append-only" (the event and request streams): messages are only added (no limit trims them in a test);
 * - "keys" (a KV bucket keeping one revision per key): an update drops the key's previous revision, so the
 *   first sequence and the deleted count move, but the number of stored keys never falls;
 * - "expiring" (the leases bucket: its max age is the lease time): entries expire; it must still exist.
 */
export type StreamPolicy = "append-only" | "keys" | "expiring";

/**
 * What changed between two snapshots that no legitimate party does: a stream gone, messages removed, a durable
 * consumer gone, a key deleted or overwritten with an answer. Streams in `quiet` (nothing legitimate writes to
 * them meanwhile) and keys in `quietKeys` must not have changed at all.
 */
export function changes(
  before: Snapshot,
  after: Snapshot,
  policy: (stream: string) => StreamPolicy,
  quiet: ReadonlySet<string>,
  quietKeys: ReadonlySet<string>,
): string[] {
  const out: string[] = [];
  for (const [s, b] of Object.entries(before.streams)) {
    const a = after.streams[s];
    if (b === null) continue;
    if (a === null || a === undefined) {
      out.push(`stream ${s} is gone`);
      continue;
    }
    const p = policy(s);
    if (p === "append-only") {
      if (a.firstSeq !== b.firstSeq) out.push(`${s}: first sequence ${b.firstSeq} → ${a.firstSeq} (purged)`);
      if (a.deleted !== b.deleted) out.push(`${s}: deleted messages ${b.deleted} → ${a.deleted}`);
      if (a.messages - b.messages !== a.lastSeq - b.lastSeq) {
        out.push(
          `${s}: ${b.messages} → ${a.messages} messages while sequences went ${b.lastSeq} → ${a.lastSeq}`,
        );
      }
    } else if (p === "keys" && a.messages < b.messages) {
      out.push(`${s}: ${b.messages} → ${a.messages} keys`);
    }
    if (a.durables.join(",") !== b.durables.join(",")) {
      out.push(`${s}: durable consumers [${b.durables.join(", ")}] → [${a.durables.join(", ")}]`);
    }
    if (quiet.has(s) && (a.messages !== b.messages || a.lastSeq !== b.lastSeq)) {
      out.push(`${s}: ${b.messages} → ${a.messages} messages (last sequence ${b.lastSeq} → ${a.lastSeq})`);
    }
  }
  for (const [k, b] of Object.entries(before.keys)) {
    const a = after.keys[k];
    if (!a) continue;
    if (looksLikeAnswer(a.value)) out.push(`${k} now holds an answer: ${a.value?.slice(0, 120)}`);
    if (quietKeys.has(k) && a.revision !== b.revision)
      out.push(`${k}: revision ${b.revision} → ${a.revision}`);
  }
  return out;
}

/** A witness subscription on every target subject: whatever reaches one is recorded. */
export interface Watch {
  hits(): Array<{ subject: string; data: string }>;
  stop(): Promise<void>;
}

export async function watchTargets(witness: NatsConnection, targets: Target[]): Promise<Watch> {
  const hits: Array<{ subject: string; data: string }> = [];
  const subs: Subscription[] = [];
  for (const t of new Set(targets.map((x) => x.subject))) {
    subs.push(
      witness.subscribe(t, {
        callback: (_e, m) => {
          hits.push({ subject: m.subject, data: m.string().slice(0, 200) });
        },
      }),
    );
  }
  await witness.flush();
  return {
    hits: () => [...hits],
    async stop() {
      await witness.flush();
      for (const s of subs) s.unsubscribe();
    },
  };
}
