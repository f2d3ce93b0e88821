// The envelope id (JetStream msgID) of a request's outcome event. JetStream drops a second message with the
// same msgID inside the duplicate window, so whoever publishes an outcome's id first owns it: with a
// predictable id ("outcome.<requestId>") anyone able to publish into the events stream (an agent, on its own
// subject) could make JetStream drop the coordinator's real outcome as a duplicate. The id is therefore an
// HMAC of the request id under a secret that every coordinator shares and no other role can read (the
// coordinator-only bucket cxlrc-meta): the same on every coordinator (a takeover re-publishes under the same
// id, and JetStream keeps one), unpredictable to everyone else.
import { createHmac, randomBytes } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { BUCKETS } from "../../shared/bus/subjects.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { retry } from "../../shared/retry.ts";

export const OUTCOME_SECRET_KEY = "outcome-id-secret";
/** 256-bit key, hex. */
const SECRET_RE = /^[0-9a-f]{64}$/;

/** requestId → the outcome event id of that request. */
export type OutcomeIds = (requestId: string) => string;

/** Outcome ids under `secret`: `outcome.<first 32 hex digits of HMAC-SHA256(secret, requestId)>`. */
export function outcomeIds(secret: string): OutcomeIds {
  if (!SECRET_RE.test(secret)) throw new TypeError("outcome id secret must be 64 hex digits");
  const key = Buffer.from(secret, "hex");
  return (requestId) =>
    `outcome.${createHmac("sha256", key).update(requestId, "utf8").digest("hex").slice(0, 32)}`;
}

/**
 * The fleet's outcome id secret: created once (kv.create: the first coordinator wins a race), read by every
 * later one. A stored value that is not a secret of ours is an error, not silently replaced: replacing it
 * would give a coordinator that took a device over ids different from its peers'.
 */
export async function loadOutcomeSecret(kv: KV, attempts = 10): Promise<string> {
  const readOrCreate = async (): Promise<string> => {
    const cur = await kv.get(OUTCOME_SECRET_KEY);
    if (cur?.operation === "PUT") {
      const v = cur.string();
      if (!SECRET_RE.test(v)) {
        throw new CxlrcError(
          "internal",
          `KV ${BUCKETS.meta}/${OUTCOME_SECRET_KEY} holds no outcome id secret (64 hex digits); remove it to have one created`,
          { key: OUTCOME_SECRET_KEY },
        );
      }
      return v;
    }
    const fresh = randomBytes(32).toString("hex");
    await kv.create(OUTCOME_SECRET_KEY, fresh);
    return fresh;
  };
  try {
    // Lost the creation race (read it next time round), or the bucket is electing a leader: again. Equal
    // jitter keeps the ~5 s the plain 100 ms·n schedule gave an election.
    return await retry(readOrCreate, {
      attempts,
      baseMs: 100,
      maxMs: 1000,
      jitter: "equal",
      retryIf: (err) => !(err instanceof CxlrcError),
    });
  } catch (err) {
    if (err instanceof CxlrcError) throw err;
    throw new CxlrcError(
      "backend",
      `outcome id secret not read or created in KV after ${attempts} attempts`,
      { key: OUTCOME_SECRET_KEY },
      { cause: err },
    );
  }
}
