// Chaos hosts on a real nats-server: an agent brought back by two faults at once (a kill's restart and a
// reboot's, both due) starts once. Two started at once left one agent whose connection nobody closed: it tried
// to reconnect to the stopped cluster for ever, and `cxlrc chaos` never exited after its report.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHosts } from "../../services/chaos/hosts.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { defaultFleet } from "../../shared/sim/index.ts";

let server: NatsServerHandle;

beforeAll(async () => {
  server = await startNats();
}, 30_000);

afterAll(async () => {
  await server?.stop();
});

describe("chaos hosts", () => {
  it("two starts of a killed agent at once start one agent; a kill during a start kills that agent", async () => {
    const fleet = defaultFleet();
    const hosts = createHosts({
      fleet,
      servers: [server.url],
      timings: {},
      agentTimeouts: {},
      relayed: true,
    });
    const h = hosts.get("alpha")!;
    try {
      await h.start();
      expect([h.state, h.starts]).toEqual(["up", 1]);
      await h.reboot();
      expect(h.state).toBe("killed");
      // Both undo actions come due together.
      await Promise.all([h.start(), h.start()]);
      expect([h.state, h.starts]).toEqual(["up", 2]);
      await h.kill();
      // A kill that lands while a start is under way waits for it, then kills that agent.
      const started = h.start();
      const killed = h.kill();
      await Promise.all([started, killed]);
      expect([h.state, h.starts, h.agent]).toEqual(["killed", 3, null]);
    } finally {
      for (const x of hosts.values()) await x.stop();
    }
  }, 30_000);
});
