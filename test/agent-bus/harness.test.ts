// The nats-server harness itself: JetStream data survives restart(), kill() and pause() really stop the
// server, stop() removes the temp store, and two servers get different ports.
import { existsSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import {
  connectBus,
  ensureStreams,
  getJsm,
  requestJson,
  waitForConnection,
} from "../../shared/bus/client.ts";
import { STREAMS } from "../../shared/bus/subjects.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";

const servers: NatsServerHandle[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});

describe("shared/natsd/server.ts", () => {
  it("starts JetStream on a free loopback port, keeps stream data across restart(), cleans up on stop()", async () => {
    const s = await startNats();
    servers.push(s);
    expect(s.url).toBe(`nats://127.0.0.1:${s.port}`);
    expect(existsSync(s.storeDir)).toBe(true);
    const nc = await connectBus({
      servers: s.url,
      name: "h",
      log: silentLogger,
      reconnectWaitMs: 20,
      reconnectMaxWaitMs: 100,
    });
    const jsm = await getJsm(nc);
    await ensureStreams(jsm);
    await ensureStreams(jsm); // idempotent
    const js = jsm.jetstream();
    await js.publish("cxlrc.evt.h1.agent.test", "one", { msgID: "m1" });
    const dup = await js.publish("cxlrc.evt.h1.agent.test", "one", { msgID: "m1" });
    expect(dup.duplicate).toBe(true);
    const pid = s.pid;
    await s.restart();
    expect(s.pid).not.toBe(pid);
    // The client reconnects by itself; the stream and its message are still there.
    await waitForConnection(nc);
    const info = await jsm.streams.info(STREAMS.events.name);
    expect(info.state.messages).toBe(1);
    expect(info.config.max_age).toBe(7 * 24 * 3600 * 1e9);
    expect(info.config.subjects).toEqual(["cxlrc.evt.>", "cxlrc.agt.>"]);
    await nc.close();
    const dir = s.storeDir;
    await s.stop();
    expect(existsSync(dir)).toBe(false);
    expect(s.running).toBe(false);
  });

  it("kill() stops answering at once; restart() after kill() recovers; two servers differ in port", async () => {
    const a = await startNats({ jetstream: false });
    const b = await startNats({ jetstream: false });
    servers.push(a, b);
    expect(a.port).not.toBe(b.port);
    const nc = await connectBus({
      servers: a.url,
      name: "k",
      log: silentLogger,
      reconnectWaitMs: 20,
      reconnectMaxWaitMs: 100,
    });
    const sub = nc.subscribe("echo", { callback: (_e, m) => void m.respond(m.data) });
    await nc.flush();
    expect(await requestJson(nc, "echo", { x: 1 }, { timeoutMs: 2000 })).toEqual({ x: 1 });
    await a.kill();
    expect(a.running).toBe(false);
    await expect(requestJson(nc, "echo", { x: 2 }, { timeoutMs: 200 })).rejects.toMatchObject({
      kind: "timeout",
    });
    await a.restart();
    // The subscription is re-sent on reconnect; ask until it answers.
    let got: unknown;
    for (let i = 0; i < 100 && got === undefined; i++) {
      got = await requestJson(nc, "echo", { x: 3 }, { timeoutMs: 200 }).catch(() => undefined);
    }
    expect(got).toEqual({ x: 3 });
    sub.unsubscribe();
    await nc.close();
  });

  it("pause() freezes the server (requests time out) and resume() brings it back", async () => {
    const s = await startNats({ jetstream: false });
    servers.push(s);
    const nc = await connectBus({ servers: s.url, name: "p", log: silentLogger });
    nc.subscribe("echo", { callback: (_e, m) => void m.respond(m.data) });
    await nc.flush();
    await s.pause();
    const err = await requestJson(nc, "echo", { y: 1 }, { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CxlrcError);
    expect((err as CxlrcError).kind).toBe("timeout");
    s.resume();
    expect(await requestJson(nc, "echo", { y: 2 }, { timeoutMs: 5000 })).toEqual({ y: 2 });
    await nc.close();
  });

  it("passes a config file (-c): the server applies it", async () => {
    const s = await startNats({ jetstream: false, config: "max_payload: 2048\n" });
    servers.push(s);
    const nc = await connectBus({ servers: s.url, name: "c", log: silentLogger });
    expect(nc.info?.max_payload).toBe(2048);
    await nc.close();
  });

  it("reports a server that cannot start with its log", async () => {
    await expect(startNats({ args: ["--no-such-flag"] })).rejects.toThrow(/exited|no-such-flag/);
  });
});
