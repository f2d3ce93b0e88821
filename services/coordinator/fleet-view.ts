// The fleet as stored: every device whose actor is persisted in the actors bucket, whichever coordinator
// drives it. A headers-only watch of the bucket keeps the latest revision of every key (cheap: no snapshot
// crosses the wire until asked); status() reads the records it needs (devices without a current local actor)
// and caches them by revision, so a status poll reads only what changed since the last one.
import type { KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/transport-node";
import type { LifecycleContext } from "../../machines/lifecycle-types.ts";
import { describeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { type ActorRecord, type CoordinatorStore, FLEET_KEY } from "./store.ts";

/** A device as its stored actor describes it. */
export interface StoredDevice {
  key: string;
  host: string;
  bdf: string;
  state: string;
  /** Coordinator that stored it last (the one driving it, while it is mid-operation). */
  owner: string;
  savedAt: string;
  revision: number;
  active: boolean;
  requestId: string | null;
  scopeViolations: number;
  quarantineReason: string | null;
}

export interface FleetView {
  /** Latest stored revision of a device key, as the watch has seen it (undefined: none seen). */
  revision(key: string): number | undefined;
  /** Every device key stored, as the watch has seen them. */
  keys(): string[];
  /** The stored devices of these keys (read when the cached record is older than the watched revision). */
  read(keys: string[]): Promise<StoredDevice[]>;
  stop(): void;
}

const READ_WIDTH = 32;

export function summarize(key: string, revision: number, rec: ActorRecord): StoredDevice {
  const ctx = (rec.snapshot as { context?: Partial<LifecycleContext> } | null)?.context ?? {};
  return {
    key,
    host: rec.host,
    bdf: rec.bdf,
    state: rec.state,
    owner: rec.owner,
    savedAt: rec.savedAt,
    revision,
    active: rec.active,
    requestId: ctx.request && ctx.outcome === null ? ctx.request.requestId : null,
    scopeViolations: ctx.scopeViolations ?? 0,
    quarantineReason: ctx.quarantineReason ?? null,
  };
}

export async function startFleetView(store: CoordinatorStore, log: Logger): Promise<FleetView> {
  const revisions = new Map<string, number>();
  const cache = new Map<string, StoredDevice>();
  let iter: QueuedIterator<KvWatchEntry> | null = null;
  let stopped = false;

  const watch = async () => {
    while (!stopped) {
      try {
        iter = await store.actors.watch({ key: ">", headers_only: true });
        for await (const e of iter) {
          if (e.key === FLEET_KEY) continue;
          if (e.operation === "PUT") revisions.set(e.key, e.revision);
          else {
            revisions.delete(e.key);
            cache.delete(e.key);
          }
        }
      } catch (err) {
        if (!stopped) log.warn({ err: describeError(err) }, "actors watch ended; starting it again");
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 250));
    }
  };
  void watch();

  const readOne = async (key: string): Promise<StoredDevice | null> => {
    const rev = revisions.get(key);
    const cached = cache.get(key);
    if (cached && rev !== undefined && cached.revision >= rev) return cached;
    const rec = await store.loadActor(key);
    if (!rec) {
      cache.delete(key);
      return null;
    }
    const s = summarize(key, rec.revision, rec.value);
    cache.set(key, s);
    return s;
  };

  return {
    revision: (key) => revisions.get(key),
    keys: () => [...revisions.keys()],
    async read(keys) {
      const out: StoredDevice[] = [];
      for (let i = 0; i < keys.length; i += READ_WIDTH) {
        const got = await Promise.all(
          keys.slice(i, i + READ_WIDTH).map((k) =>
            readOne(k).catch((err) => {
              log.warn({ key: k, err: describeError(err) }, "stored actor not read for status");
              return null;
            }),
          ),
        );
        for (const g of got) if (g) out.push(g);
      }
      return out;
    },
    stop() {
      stopped = true;
      iter?.stop();
    },
  };
}
