// One host's slot holders, stored under its own small key (admission bucket, `host.<host>`): the requests that
// hold a reset slot on that host, fleet-wide, so that two coordinators driving devices of one host never pass
// its limit together. Written by compare-and-set, by the admission ledger only (admission.ts). The value holds
// at most maxConcurrentPerHost entries (plus takeovers), whatever the fleet's size.
import type { KV } from "@nats-io/kv";
import { CxlrcError } from "../../shared/errors.ts";

export interface SlotHolder {
  /** Device key (host.bdf-token). */
  key: string;
  bdf: string;
  switchId: string | null;
  /** Coordinator that took the slot. */
  owner: string;
  sinceMs: number;
}

export interface HostSlots {
  holders: Record<string, SlotHolder>;
  /** KV revision read or written last; null = the key does not exist (or was deleted). */
  revision: number | null;
}

export interface HostSlotStore {
  load(host: string): Promise<HostSlots>;
  /** Compare-and-set against `revision`; throws (kind in-progress) when someone wrote in between. */
  save(host: string, holders: Record<string, SlotHolder>, revision: number | null): Promise<number>;
}

interface Stored {
  v: 1;
  holders: Record<string, SlotHolder>;
}

export function hostSlotKey(host: string): string {
  return `host.${host}`;
}

export function kvHostSlots(kv: KV): HostSlotStore {
  return {
    async load(host) {
      const e = await kv.get(hostSlotKey(host));
      if (e?.operation !== "PUT") return { holders: {}, revision: e ? e.revision : null };
      return { holders: e.json<Stored>().holders ?? {}, revision: e.revision };
    },
    async save(host, holders, revision) {
      const data = JSON.stringify({ v: 1, holders } satisfies Stored);
      try {
        return revision === null
          ? await kv.create(hostSlotKey(host), data)
          : await kv.update(hostSlotKey(host), data, revision);
      } catch (err) {
        throw new CxlrcError(
          "in-progress",
          `slots of host ${host} changed meanwhile (expected revision ${revision})`,
          { host, revision },
          { cause: err },
        );
      }
    },
  };
}

/** In-process only (no peers): what a lone ledger uses without a bucket. */
export function memoryHostSlots(): HostSlotStore {
  const keys = new Map<string, { holders: Record<string, SlotHolder>; revision: number }>();
  let seq = 0;
  return {
    async load(host) {
      const k = keys.get(host);
      return k ? { holders: { ...k.holders }, revision: k.revision } : { holders: {}, revision: null };
    },
    async save(host, holders, revision) {
      const k = keys.get(host);
      if ((k?.revision ?? null) !== revision) {
        throw new CxlrcError("in-progress", `slots of host ${host} changed meanwhile`, { host, revision });
      }
      seq += 1;
      keys.set(host, { holders: { ...holders }, revision: seq });
      return seq;
    },
  };
}
