// The config file is strict (unknown keys named, policy keys checked against the policy), and
// runCoordinatorFromConfig serves until SIGTERM, then stops cleanly (metrics endpoint gone, leases released).
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseCoordinatorConfig } from "../../services/coordinator/config.ts";
import { runCoordinatorFromConfig } from "../../services/coordinator/main.ts";
import { BUCKETS, subjects } from "../../shared/bus/subjects.ts";
import { silentLogger } from "../../shared/log.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import { control, publishRequest, startWorld, type World } from "./helpers.ts";

describe("coordinator config", () => {
  it("fills defaults and rejects unknown keys by name", () => {
    const c = parseCoordinatorConfig({ id: "c1", nats: { servers: "nats://127.0.0.1:4222" } });
    expect(c.leaseTtlMs).toBe(15_000);
    expect(c.metrics.port).toBe(9464);
    expect(c.policy).toEqual({});
    expect(() => parseCoordinatorConfig({ id: "c1", nats: { servers: "x" }, leaseTTL: 5 })).toThrow(
      /unknown field "leaseTTL"/,
    );
    expect(() =>
      parseCoordinatorConfig({
        id: "c1",
        nats: { servers: "x" },
        policy: { maxConcurrentPerHost: 4, maxResets: 2 },
      }),
    ).toThrow(/unknown field "maxResets" in "policy"/);
    expect(() => parseCoordinatorConfig({ id: "c 1", nats: { servers: "x" } })).toThrow(/field "id"/);
    expect(() =>
      parseCoordinatorConfig({ id: "c1", nats: { servers: "x" }, policy: { breakerFailureRatio: 2 } }),
    ).toThrow(/policy.breakerFailureRatio/);
  });
});

describe("runCoordinatorFromConfig", () => {
  let w: World;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "cfg" })]);
  });
  afterAll(async () => {
    await w?.close();
  });

  it("serves from a config file's settings and stops on SIGTERM", async () => {
    const config = parseCoordinatorConfig({
      id: "from-config",
      nats: { servers: w.server.url },
      leaseTtlMs: 2000,
      metrics: { port: 0 },
      hosts: ["cfg"],
      policy: { maxAttemptsPerWindow: 100 },
      logLevel: "silent",
    });
    const run = await runCoordinatorFromConfig(config, { log: silentLogger });
    // Discovery at start gave the configured host's device an actor.
    const st = await control<{ devices: Array<{ host: string; state: string }> }>(w.nc, subjects.status, {});
    expect(st.ok && st.result.devices.map((d) => `${d.host}:${d.state}`)).toEqual(["cfg:ready"]);
    await publishRequest(w.js, {
      requestId: "cfg-1",
      host: "cfg",
      bdf: "0000:01:00.0",
      scope: "io",
      reason: "x",
    });
    expect((await run.handle.waitForOutcome("cfg-1", 20_000)).outcome).toBe("verified");
    const url = run.handle.metricsUrl!;
    expect((await fetch(url)).status).toBe(200);

    process.emit("SIGTERM", "SIGTERM");
    await run.done;
    await expect(fetch(url)).rejects.toThrow();
    // Nothing left held (the host's partition lease given back), and nobody answers the control subjects.
    const kv = await new Kvm(w.js).open(BUCKETS.leases);
    expect((await kv.get("cfg"))?.operation).toBe("DEL");
    await expect(w.nc.request(subjects.status, "{}", { timeout: 2000 })).rejects.toThrow(/no responders/i);
  });
});
