// `cxlrc serve agent` wiring: config validation names the bad key; a sim agent from the bundled fleet
// serves over a spawned nats-server, creates the streams, and stops on SIGTERM.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAgentConfig, runAgentFromConfig } from "../../services/agent/main.ts";
import { callAgent, connectBus, getJsm } from "../../shared/bus/client.ts";
import { STREAMS } from "../../shared/bus/subjects.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";

function configError(input: unknown): CxlrcError {
  try {
    parseAgentConfig(input);
  } catch (e) {
    if (e instanceof CxlrcError) return e;
    throw e;
  }
  throw new Error("config was accepted");
}

describe("AgentConfig", () => {
  it("fills defaults", () => {
    const c = parseAgentConfig({ host: "alpha" });
    expect(c).toMatchObject({
      host: "alpha",
      servers: "nats://127.0.0.1:4222",
      backend: "sysfs",
      sysfsRoot: "/sys",
      heartbeatMs: 5000,
      ensureStreams: true,
    });
  });

  it.each([
    [{ host: "alpha", heartbeat: 5 }, /unknown field "heartbeat"/],
    [{ host: "alpha", heartbeatMs: "5s" }, /field "heartbeatMs"/],
    [{ host: "al pha" }, /field "host": 1-64 letters/],
    [{ host: "alpha", backend: "qemu-ish" }, /field "backend"/],
    [{ host: "alpha", timeouts: { commitTimeoutMs: 50, warpMs: 1 } }, /unknown field "warpMs" in "timeouts"/],
    [{ host: "alpha", timeouts: { commitTimeoutMs: -1 } }, /field "timeouts.commitTimeoutMs"/],
    [{ host: "alpha", fleetFile: "f.json" }, /field "fleetFile": only used with backend "sim"/],
    [{}, /field "host"/],
  ])("rejects %j naming the key", (input, re) => {
    const e = configError(input);
    expect(e.kind).toBe("bad-input");
    expect(e.message).toMatch(/^agent config: /);
    expect(e.message).toMatch(re);
  });
});

describe("runAgentFromConfig", () => {
  let server: NatsServerHandle;
  beforeAll(async () => {
    server = await startNats();
  });
  afterAll(async () => {
    await server.stop();
  });

  it("runs a sim host of the bundled fleet, creates the streams, serves, and stops on SIGTERM", async () => {
    const listeners = process.listenerCount("SIGTERM");
    const running = await runAgentFromConfig(
      { host: "alpha", servers: server.url, backend: "sim", simClock: "virtual", logLevel: "silent" },
      { log: silentLogger },
    );
    expect(process.listenerCount("SIGTERM")).toBe(listeners + 1);
    const nc = await connectBus({ servers: server.url, name: "main test", log: silentLogger });
    try {
      const jsm = await getJsm(nc);
      expect((await jsm.streams.info(STREAMS.events.name)).config.subjects).toEqual([
        "cxlrc.evt.>",
        "cxlrc.agt.>",
      ]);
      expect((await jsm.streams.info(STREAMS.requests.name)).config.subjects).toEqual(["cxlrc.req.>"]);
      const probe = await callAgent(
        nc,
        "alpha",
        "probe",
        "m-1",
        { bdf: "0000:01:00.0" },
        { timeoutMs: 10_000 },
      );
      expect(probe).toMatchObject({ bdf: "0000:01:00.0", driver: "cxl_accel" });
      const inv = await callAgent(nc, "alpha", "inventory", "m-2", {}, { timeoutMs: 10_000 });
      expect(inv.devices.map((d) => d.bdf)).toContain("0000:02:00.0");

      process.emit("SIGTERM", "SIGTERM");
      await running.done;
      expect(running.nc.isClosed()).toBe(true);
      const gone = await callAgent(
        nc,
        "alpha",
        "probe",
        "m-3",
        { bdf: "0000:01:00.0" },
        { timeoutMs: 2000 },
      ).catch((e: unknown) => e);
      expect(gone).toMatchObject({ kind: "backend", details: { reason: "no-responders" } });
      expect(process.listenerCount("SIGTERM")).toBe(listeners);
    } finally {
      await running.stop();
      await nc.close();
    }
  });

  it("names the fleet's hosts when the configured one is missing", async () => {
    const e = await runAgentFromConfig(
      { host: "nowhere", servers: server.url, backend: "sim" },
      { log: silentLogger, handleSignals: false },
    ).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CxlrcError);
    expect((e as CxlrcError).message).toMatch(/host "nowhere" is not in the fleet .*alpha/);
  });
});
