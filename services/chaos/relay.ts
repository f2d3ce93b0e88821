// A TCP relay in front of each NATS server, for a chaos run's process to connect through, whose traffic can be
// held or cut:
// - freeze: every byte held, both ways, and let go in order on thaw: what a process frozen by SIGSTOP, a paused
//   VM or a cgroup freezer looks like from the bus. Its connections stay open, the server keeps its
//   subscriptions and queues to it, and nothing it would say or read moves until it thaws;
// - cut: a network partition. Its connections are dropped and new ones refused until heal, while the process
//   itself runs on (its timers fire, its hardware work goes on, it tries to reconnect).
// Chaos agents (hosts.ts) and coordinators (coordinators.ts) connect through these when their scenario freezes
// or cuts them off; the frozen-agent test too.
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";

export interface BusRelays {
  /** One loopback URL per upstream server, in the same order (connect with ignoreClusterUpdates). */
  readonly urls: string[];
  /** Hold every byte from now on, both ways, on every connection (new ones too). */
  freeze(): void;
  /** Let the held bytes go, in order, and stop holding. */
  thaw(): void;
  /** Stop holding and forget what was held (its connections are gone: a killed process's bytes die with it). */
  discard(): void;
  readonly cut: boolean;
  /** Drop every connection now and refuse new ones (what was held goes with them). */
  cutOff(): void;
  /** Accept connections again. */
  heal(): void;
  close(): Promise<void>;
}

/** Relays to these servers (nats://host:port), each on a free loopback port. */
export async function startRelays(upstreams: string[]): Promise<BusRelays> {
  let frozen = false;
  let cut = false;
  let held: Array<() => void> = [];
  const sockets = new Set<Socket>();
  const servers: Server[] = [];
  const urls: string[] = [];
  for (const upstreamUrl of upstreams) {
    const { hostname, port } = new URL(upstreamUrl);
    const server = createServer((client) => {
      if (cut) {
        client.destroy();
        return;
      }
      const upstream = tcpConnect(Number(port), hostname);
      sockets.add(client).add(upstream);
      const forward = (from: Socket, to: Socket) =>
        from.on("data", (chunk) => {
          const send = () => {
            if (!to.destroyed) to.write(chunk);
          };
          if (frozen) held.push(send);
          else send();
        });
      forward(client, upstream);
      forward(upstream, client);
      const close = () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(client);
        sockets.delete(upstream);
      };
      client.on("error", close).on("close", close);
      upstream.on("error", close).on("close", close);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    servers.push(server);
    urls.push(`nats://127.0.0.1:${(server.address() as { port: number }).port}`);
  }
  /** Every connection dropped, and what was held with them. */
  const dropAll = () => {
    held = [];
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return {
    urls,
    freeze() {
      frozen = true;
    },
    thaw() {
      frozen = false;
      const go = held;
      held = [];
      for (const send of go) send();
    },
    discard() {
      frozen = false;
      held = [];
    },
    get cut() {
      return cut;
    },
    cutOff() {
      cut = true;
      dropAll();
    },
    heal() {
      cut = false;
    },
    async close() {
      frozen = false;
      cut = false;
      dropAll();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
