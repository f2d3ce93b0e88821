// A NATS node can answer "JetStream is not enabled" for a while after it restarts (nats-server 2.9: until it
// has caught up with the meta leader, seen for 10-15 s in the chaos runs), and a client stays connected to it:
// every KV read of the coordinator fails meanwhile and its leases run out. Reported JetStream errors of that
// kind make the coordinator move to another node of the cluster (at most once per `minIntervalMs`).
import type { NatsConnection } from "@nats-io/transport-node";
import { describeError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";

export interface BusHealth {
  /** A JetStream call failed with this error. */
  report(err: unknown): void;
  /** How many times this process moved to another node. */
  readonly moves: number;
}

const NOT_SERVED = /JetStreamNotEnabled|jetstream is not enabled/i;

export function createBusHealth(nc: NatsConnection, log: Logger, minIntervalMs = 5000): BusHealth {
  let last = Number.NEGATIVE_INFINITY;
  let moves = 0;
  return {
    report(err) {
      const text = `${(err as Error)?.name ?? ""} ${describeError(err)}`;
      if (!NOT_SERVED.test(text)) return;
      const now = performance.now();
      if (now - last < minIntervalMs || nc.isClosed()) return;
      last = now;
      moves++;
      log.warn(
        { server: nc.getServer(), err: describeError(err) },
        "this NATS node does not serve JetStream now; moving to another",
      );
      nc.reconnect().catch((e) =>
        log.warn({ err: describeError(e) }, "reconnect to another NATS node failed"),
      );
    },
    get moves() {
      return moves;
    },
  };
}
