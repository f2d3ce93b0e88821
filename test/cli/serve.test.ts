// `cxlrc serve agent|coordinator` as child processes against a real nats-server: the config comes from the
// file, CXLRC_* env and flags (later layers win), the service answers on the bus, SIGTERM stops it (exit 0).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, requestJson } from "../../shared/bus/client.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { runCli, startCli, waitForOutput } from "./run-cli.ts";

let nats: NatsServerHandle;
let nc: NatsConnection;
const dir = mkdtempSync(join(tmpdir(), "cxlrc-serve-test-"));

beforeAll(async () => {
  // The agents' state directory (fencing table): a temp one, never the machine's /var/lib/cxlrc-agent.
  process.env.STATE_DIRECTORY = join(dir, "agent-state");
  nats = await startNats();
  nc = await connectBus({ servers: nats.url, name: "serve-test", log: silentLogger, waitForServer: false });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("cxlrc serve", () => {
  it("agent: file + env + flags; the agent of the flag's host serves its simulated devices; SIGTERM exits 0", async () => {
    const cfg = join(dir, "agent.json");
    // The file names host "alpha" and a bad server; env gives the right server; the flag renames the host.
    writeFileSync(
      cfg,
      JSON.stringify({ host: "alpha", backend: "sim", servers: "nats://127.0.0.1:9", logLevel: "info" }),
    );
    const agent = startCli(["serve", "agent", "--config", cfg, "--host", "bravo", "--log-level", "info"], {
      env: { CXLRC_NATS_URL: nats.url },
    });
    // pino's "agent serving" line on stdout says it is up.
    await waitForOutput(agent, (out) => out.includes("agent serving"));
    const reply = (await requestJson(
      nc,
      subjects.agent("bravo", "inventory"),
      { opId: "t-inv-1" },
      { timeoutMs: 5000 },
    )) as {
      ok: boolean;
      result: { devices: Array<{ bdf: string }> };
    };
    expect(reply.ok).toBe(true);
    // bravo of the bundled fleet, not alpha: the flag won over the file.
    expect(reply.result.devices.map((d) => d.bdf)).toContain("0000:05:01.0");
    agent.child.kill("SIGTERM");
    const r = await agent.done;
    expect(r.code).toBe(0);
  });

  it("coordinator: env + flags; it discovers the agent's devices; `cxlrc status` shows them; SIGTERM exits 0", async () => {
    const agent = startCli(["serve", "agent", "--backend", "sim", "--host", "charlie", "--server", nats.url]);
    await waitForOutput(agent, (out) => out.includes("agent serving"));
    const cfg = join(dir, "coordinator.json");
    writeFileSync(cfg, JSON.stringify({ id: "from-file", metrics: { port: null }, logLevel: "info" }));
    const coord = startCli(
      ["serve", "coordinator", "--config", cfg, "--host", "charlie", "--server", nats.url],
      {
        env: { CXLRC_COORDINATOR_ID: "from-env" },
      },
    );
    await waitForOutput(coord, (out) => out.includes("coordinator started"));
    const s = await runCli(["status", "--json", "--server", nats.url]);
    expect(s.code, s.stderr).toBe(0);
    const status = JSON.parse(s.stdout) as { id: string; devices: Array<{ host: string; bdf: string }> };
    // The environment won over the file.
    expect(status.id).toBe("from-env");
    expect(status.devices.some((d) => d.host === "charlie" && d.bdf === "0000:01:00.0")).toBe(true);
    coord.child.kill("SIGTERM");
    agent.child.kill("SIGTERM");
    expect((await coord.done).code).toBe(0);
    expect((await agent.done).code).toBe(0);
  });

  it("agent: a host missing from the fleet is bad input naming it (exit 2)", async () => {
    const r = await runCli(["serve", "agent", "--backend", "sim", "--host", "zulu", "--server", nats.url]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/zulu/);
  });
});
