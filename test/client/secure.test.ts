// The client on the deployed security model (accounts, TLS identities, per-role permissions): a fleet
// controller resets and follows a device of its hosts; a role without the right gets "permission-denied" naming
// the subject the server refused, and nothing is reset.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientError, clientOn } from "../../client/index.ts";
import { SIMPLE_DEVICE, type SimHost } from "../../shared/sim/index.ts";
import { type SecureBus, startSecureBus } from "../security/env.ts";
import { type SecureHost, startSecureHost } from "../security/one-host.ts";
import { TEST_ROSTER } from "../security/roster.ts";

const BDF = SIMPLE_DEVICE;

describe("client on the secure bus", () => {
  let bus: SecureBus;
  let host: SecureHost;
  let sim: SimHost;
  beforeAll(async () => {
    bus = await startSecureBus(TEST_ROSTER);
    host = await startSecureHost(bus);
    sim = host.sim;
  }, 60_000);
  afterAll(async () => {
    await host?.stop();
    await bus?.stop();
  });

  it("a controller resets a device of its hosts and follows it to verified", async () => {
    const client = clientOn((await bus.connectAs("controller")).nc);
    const h = await client.reset({ host: "sim-a", bdf: BDF, scope: "io", reason: "secure client" });
    const kinds: string[] = [];
    for await (const e of h.events) kinds.push(e.kind);
    expect((await h.outcome).kind).toBe("verified");
    expect(kinds).toContain("reset.started");
    expect(sim.counters(BDF).flr).toBe(1);
  });

  it("an SRE may watch but not reset: permission-denied names the subject", async () => {
    const client = clientOn((await bus.connectAs("sre")).nc);
    const err = await client
      .submit({ host: "sim-a", bdf: BDF, scope: "io", reason: "not mine to ask" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClientError);
    expect(err).toMatchObject({ kind: "permission-denied", subject: "cxlrc.ctl.submit.sim-a" });
    expect(sim.counters(BDF).flr).toBe(1);
  });

  it("a controller scoped to other hosts is denied this one", async () => {
    const client = clientOn((await bus.connectAs("controller-hw")).nc);
    const err = await client
      .reset({ host: "sim-a", bdf: BDF, scope: "io", reason: "not my host" })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: "permission-denied" });
    expect((err as ClientError).subject).toMatch(/^cxlrc\.(ctl\.submit|evt)\.sim-a/);
    expect(sim.counters(BDF).flr).toBe(1);
  });
});
