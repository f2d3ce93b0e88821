// Counting messages on a real bus: the lease and store tests say how many writes and reads an operation makes.
import type { NatsConnection } from "@nats-io/transport-node";

/** Counts the messages on the bus that each predicate matches, for what runs inside during(). */
export function busCounter(
  nc: NatsConnection,
  kinds: Record<string, (subject: string, bytes: number) => boolean>,
) {
  const n = new Map(Object.keys(kinds).map((k) => [k, 0]));
  const sub = nc.subscribe(">", {
    callback: (_e, m) => {
      for (const [k, is] of Object.entries(kinds)) if (is(m.subject, m.data.length)) n.set(k, n.get(k)! + 1);
    },
  });
  return {
    async during<T>(f: () => Promise<T>): Promise<{ out: T; counts: Record<string, number> }> {
      await nc.flush();
      const before = new Map(n);
      const out = await f();
      await nc.flush();
      return { out, counts: Object.fromEntries([...n].map(([k, v]) => [k, v - before.get(k)!])) };
    },
    stop: () => sub.unsubscribe(),
  };
}
