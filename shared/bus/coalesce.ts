// A connection's socket writes of one event-loop turn go out as one: nats.js writes each batch of commands
// as soon as its microtask runs, so a process that publishes from many continuations (a coordinator driving a
// thousand devices) makes a system call per message, and the server wakes for each. Corked until the turn's
// check phase, they leave in one writev. Measured at 1,000 resets at once (bench/README.md, seventh session).
// For the coordinator's connection only (connectBus's coalesceWrites): an agent's reply waits for nothing.
import type { Socket } from "node:net";
import type { NatsConnection } from "@nats-io/transport-node";

/** What nats.js keeps of the connection's transport (NatsConnectionImpl.protocol.transport.socket). */
interface WithSocket {
  protocol?: { transport?: { socket?: Socket } };
}

const patched = new WeakSet<Socket>();

/**
 * Cork the connection's current socket for the rest of each event-loop turn that writes to it. Called again
 * after a reconnect (a new socket). False when the client's internals are not where this expects them (a
 * different nats.js): writes then go out as the client makes them.
 */
export function coalesceWrites(nc: NatsConnection): boolean {
  const socket = (nc as unknown as WithSocket).protocol?.transport?.socket;
  if (!socket || typeof socket.cork !== "function" || typeof socket.write !== "function") return false;
  if (patched.has(socket)) return true;
  patched.add(socket);
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  let corked = false;
  const uncork = () => {
    corked = false;
    if (!socket.destroyed) socket.uncork();
  };
  socket.write = ((...args: unknown[]) => {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      setImmediate(uncork);
    }
    return write(...args);
  }) as Socket["write"];
  return true;
}
