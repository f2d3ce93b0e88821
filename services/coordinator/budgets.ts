// Per-device attempt budgets, each under its own small key (admission bucket, `budget.<device key>`), taken
// under the device's lease (so a compare-and-set rarely loses). machines/policy/budget.ts keeps the rule; this
// file keeps the state. The last state read or written is cached for the guard snapshot of the next request
// (a hint: the grant re-reads when its write loses).
import type { KV, KvEntry } from "@nats-io/kv";
import { type BudgetState, checkBudget, emptyBudget, recordAttempt } from "../../machines/policy/budget.ts";
import type { Policy } from "../../machines/policy/defaults.ts";
import type { KvRead } from "../../shared/bus/kv-read.ts";
import { BUCKETS } from "../../shared/bus/subjects.ts";
import { CxlrcError, isCxlrcError } from "../../shared/errors.ts";
import { remember } from "../../shared/remember.ts";
import { retry, sleepBackoff } from "../../shared/retry.ts";
import type { CoordinatorStore } from "./store.ts";

type BudgetLimits = Pick<Policy, "maxAttemptsPerWindow" | "attemptWindowMs" | "cooldownMs">;

interface StoredBudget extends BudgetState {
  /** The request whose attempt was counted last (a repeated grant of the same request counts once). */
  lastRequestId: string | null;
}

export type BudgetTake = { ok: true } | { ok: false; untilMs: number };

export interface Budgets {
  /** The device's budget as last seen here (empty when never seen). */
  cached(key: string): BudgetState;
  /** Read the device's budget now. */
  refresh(key: string): Promise<BudgetState>;
  /** Count one attempt of this request unless the budget is spent. Idempotent per request id. */
  take(key: string, requestId: string, nowMs: number): Promise<BudgetTake>;
}

const CAS_ATTEMPTS = 5;
/**
 * How long a grant waits for a bucket that does not answer (a NATS node lost: the admission bucket's stream
 * elects a leader, which a restarted 2.9.10 node has been seen to take 10-15 s to serve), reading again.
 */
const STORE_WAIT_MS = 30_000;

/** No answer from the bucket (a timeout, nobody serving it), as opposed to an answer that refused the write. */
function unanswered(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 3; e = (e as { cause?: unknown }).cause, depth++) {
    if (!isCxlrcError(e)) continue;
    if (e.kind === "timeout" || e.details.reason === "no-responders") return true;
  }
  return false;
}
/** Budgets remembered here (the oldest go first): a hint only, the key holds the truth. */
const CACHE_MAX_ENTRIES = 10_000;

export function budgetKey(deviceKey: string): string {
  return `budget.${deviceKey}`;
}

/** How budgets reach their bucket: a key's latest entry, and a compare-and-set write (null: create). */
export interface BudgetIo {
  read(key: string): Promise<KvRead | KvEntry | null>;
  write(key: string, data: string, revision: number | null): Promise<number>;
}

/** A budget bucket through nats.js KV. */
export function kvBudgetIo(kv: KV): BudgetIo {
  return {
    read: (key) => kv.get(key),
    write: (key, data, revision) =>
      revision === null ? kv.create(key, data) : kv.update(key, data, revision),
  };
}

/** A budget bucket through the coordinator's store (its reply subscription: shared/bus/kv-read.ts). */
export function storeBudgetIo(store: Pick<CoordinatorStore, "readKey" | "writeKey">): BudgetIo {
  return {
    read: (key) => store.readKey(BUCKETS.admission, key),
    write: (key, data, revision) => store.writeKey(BUCKETS.admission, key, data, revision),
  };
}

/** `io`: the admission bucket (null: budgets kept in memory only). */
export function createBudgets(io: BudgetIo | null, policy: BudgetLimits): Budgets {
  const cache = new Map<string, { value: StoredBudget; revision: number | null }>();
  const empty = (): StoredBudget => ({ ...emptyBudget(), lastRequestId: null });
  const keep = (key: string, v: { value: StoredBudget; revision: number | null }) =>
    remember(cache, key, v, CACHE_MAX_ENTRIES);

  const read = async (key: string) => {
    if (!io) return cache.get(key) ?? { value: empty(), revision: null };
    const e = await io.read(budgetKey(key));
    const got =
      e?.operation === "PUT"
        ? { value: { ...empty(), ...e.json<StoredBudget>() }, revision: e.revision }
        : { value: empty(), revision: e ? e.revision : null };
    keep(key, got);
    return got;
  };

  return {
    cached: (key) => cache.get(key)?.value ?? emptyBudget(),
    async refresh(key) {
      return (await read(key)).value;
    },
    async take(key, requestId, nowMs) {
      const until = performance.now() + STORE_WAIT_MS;
      let waits = 0;
      /** Read, again while the bucket does not answer, up to the grant's one deadline. */
      const readPatiently = () =>
        retry(() => read(key), {
          deadlineMs: Math.max(0, until - performance.now()),
          baseMs: 100,
          maxMs: 1000,
          jitter: "equal",
        });
      let cur = cache.get(key) ?? (await readPatiently());
      for (let attempt = 1; ; attempt++) {
        if (cur.value.lastRequestId === requestId) return { ok: true };
        const check = checkBudget(cur.value, policy, nowMs);
        if (!check.allowed) return { ok: false, untilMs: check.untilMs };
        const next: StoredBudget = { ...recordAttempt(cur.value, policy, nowMs), lastRequestId: requestId };
        try {
          const revision = io ? await io.write(budgetKey(key), JSON.stringify(next), cur.revision) : null;
          keep(key, { value: next, revision });
          return { ok: true };
        } catch (err) {
          // No answer: the write may have landed (the read then names this request) or not; it is not a lost
          // compare-and-set, so it does not count as one.
          if (unanswered(err) && performance.now() < until) {
            attempt--;
            await sleepBackoff(waits++, { baseMs: 100, maxMs: 1000, jitter: "equal" });
            cur = await readPatiently();
            continue;
          }
          // Another coordinator counted an attempt meanwhile (or the cache was stale): read and decide again.
          if (attempt >= CAS_ATTEMPTS) {
            throw new CxlrcError(
              "in-progress",
              `attempt budget of ${key} not written`,
              { key, requestId },
              { cause: err },
            );
          }
          cur = await readPatiently();
        }
      }
    },
  };
}
