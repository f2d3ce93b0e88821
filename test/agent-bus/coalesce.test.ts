// Socket writes of one event-loop turn go out together (shared/bus/coalesce.ts): corked at the turn's first
// write, uncorked in its check phase, in order; a connection whose client keeps its socket elsewhere is left as
// it is. On a real server: messages published from many continuations of one turn, and across a reconnect (a new
// socket), all arrive, in order.
import { afterAll, describe, expect, it } from "vitest";
import { connectBus, waitForConnection } from "../../shared/bus/client.ts";
import { coalesceWrites } from "../../shared/bus/coalesce.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";

function fakeSocket() {
  const calls: string[] = [];
  const socket = {
    destroyed: false,
    cork: () => calls.push("cork"),
    uncork: () => calls.push("uncork"),
    write: (frame: string) => {
      calls.push(frame);
      return true;
    },
  };
  return { calls, nc: { protocol: { transport: { socket } } } as never, socket };
}

const turn = () => new Promise((r) => setImmediate(r));

describe("coalesceWrites", () => {
  it("corks a turn's writes once and uncorks them in its check phase, in order", async () => {
    const f = fakeSocket();
    expect(coalesceWrites(f.nc)).toBe(true);
    expect(coalesceWrites(f.nc)).toBe(true); // the same socket: wrapped once
    f.socket.write("a");
    await Promise.resolve();
    f.socket.write("b");
    expect(f.calls).toEqual(["cork", "a", "b"]);
    await turn();
    expect(f.calls).toEqual(["cork", "a", "b", "uncork"]);
    f.socket.write("c");
    await turn();
    expect(f.calls).toEqual(["cork", "a", "b", "uncork", "cork", "c", "uncork"]);
    // A destroyed socket is neither corked nor uncorked.
    f.socket.destroyed = true;
    f.socket.write("d");
    await turn();
    expect(f.calls.slice(-1)).toEqual(["d"]);
  });

  it("leaves a connection alone whose client keeps no socket where expected", () => {
    expect(coalesceWrites({} as never)).toBe(false);
    expect(coalesceWrites({ protocol: { transport: {} } } as never)).toBe(false);
  });

  describe("on a real server", () => {
    let s: NatsServerHandle;
    afterAll(async () => {
      await s?.stop();
    });

    it("delivers what one turn's continuations publish, in order, also after a reconnect", async () => {
      s = await startNats();
      const opts = { servers: s.url, log: silentLogger, reconnectWaitMs: 20, reconnectMaxWaitMs: 100 };
      const pub = await connectBus({ ...opts, name: "coalesce-pub", coalesceWrites: true });
      const sub = await connectBus({ ...opts, name: "coalesce-sub" });
      const got: number[] = [];
      const done = (n: number) =>
        new Promise<void>((resolve) => {
          const check = setInterval(() => {
            if (got.length >= n) {
              clearInterval(check);
              resolve();
            }
          }, 5);
        });
      sub.subscribe("co.>", {
        callback: (_e, m) => {
          got.push(Number(m.string()));
        },
      });
      await sub.flush();
      const send = async (from: number) => {
        await Promise.all(
          Array.from({ length: 200 }, async (_, i) => {
            for (let k = 0; k < i % 3; k++) await Promise.resolve();
            pub.publish(`co.${i % 7}`, String(from + i));
          }),
        );
        await pub.flush();
      };
      /** Wrapped sockets carry a write of their own (the prototype's otherwise). */
      const wrapped = (nc: unknown) =>
        Object.hasOwn(
          (nc as { protocol: { transport: { socket: object } } }).protocol.transport.socket,
          "write",
        );
      expect([wrapped(pub), wrapped(sub)]).toEqual([true, false]);
      await send(0);
      await done(200);
      // Published in index order within each delay class; all of them arrive.
      expect([...got].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i));
      for (const cls of [0, 1, 2]) {
        const seen = got.filter((v) => v % 3 === cls);
        expect(seen).toEqual([...seen].sort((a, b) => a - b));
      }
      await s.restart();
      await waitForConnection(pub);
      await waitForConnection(sub);
      // A new socket, wrapped again (the opted-out connection's is not).
      expect([wrapped(pub), wrapped(sub)]).toEqual([true, false]);
      await send(1000);
      await done(400);
      expect(got.slice(200).sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => 1000 + i));
      await pub.close();
      await sub.close();
    });
  });
});
