// `cxlrc reset --wait`, `watch --json`, `plan`, `status`, `image show` and `release` as child processes,
// against a real nats-server (shared/natsd/server.ts), a coordinator and a simulated host's agent started here.
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentHandle, startAgent } from "../../services/agent/service.ts";
import { type CoordinatorHandle, startCoordinator } from "../../services/coordinator/service.ts";
import { connectBus } from "../../shared/bus/client.ts";
import type { EventEnvelope } from "../../shared/bus/codec.ts";
import { realClock } from "../../shared/hw/backend.ts";
import { silentLogger } from "../../shared/log.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { createSimHost, defaultFleet, type SimHost } from "../../shared/sim/index.ts";
import { lines, runCli, startCli, waitForOutput } from "./run-cli.ts";

let nats: NatsServerHandle;
let nc: NatsConnection;
let coordinator: CoordinatorHandle;
const agents: AgentHandle[] = [];
const sims = new Map<string, SimHost>();

beforeAll(async () => {
  nats = await startNats();
  nc = await connectBus({ servers: nats.url, name: "cli-test", log: silentLogger, waitForServer: false });
  for (const spec of defaultFleet().hosts.filter((h) => h.name === "alpha" || h.name === "bravo")) {
    const sim = createSimHost(spec, {
      clock: realClock,
      timings: { notReadyMs: 50, cxlResetDurationMs: 20 },
    });
    sims.set(spec.name, sim);
    agents.push(await startAgent({ nc, host: spec.name, backend: sim, heartbeatMs: 200 }));
  }
  coordinator = await startCoordinator({ nc, id: "cli-test", hosts: ["alpha", "bravo"] });
});

afterAll(async () => {
  await coordinator?.stop();
  for (const a of agents) await a.stop();
  await nc?.close();
  await nats?.stop();
});

function parseJsonLines(out: string): EventEnvelope[] {
  return lines(out).map((l) => JSON.parse(l) as EventEnvelope);
}

describe("reset and watch against a running coordinator", () => {
  it("watch --json shows a reset's events live; reset --wait follows it to verified (exit 0)", async () => {
    // Heartbeats prove the watch's consumer is live before the reset is sent.
    const watch = startCli(["watch", "--json", "--host", "alpha", "--heartbeats", "--server", nats.url]);
    await waitForOutput(watch, (out) => out.includes('"kind":"heartbeat"'));

    const r = await runCli([
      "reset",
      "alpha",
      "0000:01:00.0",
      "--scope",
      "io",
      "--wait",
      "--server",
      nats.url,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^plan cli-\S+: alpha 0000:01:00\.0/m);
    expect(r.stdout).toMatch(/scope\s+io/);
    expect(r.stdout).toMatch(/method\s+flr/);
    // Plain progress lines (not a terminal), then the result line with the time per phase.
    expect(r.stdout).toMatch(/state\.entered\s+verifying/);
    expect(r.stdout).toMatch(
      /^verified alpha 0000:01:00\.0 io\/flr in .*\(gate .*save .*reset .*restore .*verify .*\)$/m,
    );

    await waitForOutput(watch, (out) => /"kind":"verified"/.test(out));
    watch.child.kill("SIGINT");
    const w = await watch.done;
    expect(w.code).toBe(0);
    const events = parseJsonLines(w.stdout);
    const mine = events.filter((e) => e.host === "alpha" && e.bdf === "0000:01:00.0");
    const kinds = mine.map((e) => e.kind);
    expect(kinds).toContain("reset.started");
    expect(kinds).toContain("verify.passed");
    expect(kinds.indexOf("reset.started")).toBeLessThan(kinds.lastIndexOf("verify.passed"));
    // Every line is a whole event envelope.
    for (const e of events) {
      expect(e.v).toBe(1);
      expect(typeof e.id).toBe("string");
      expect(Number.isNaN(Date.parse(e.time))).toBe(false);
    }
  });

  it("watch --since replays a device's past events and filters by device", async () => {
    const w = startCli([
      "watch",
      "--json",
      "--since",
      "10m",
      "--device",
      "0000:01:00.0",
      "--server",
      nats.url,
    ]);
    await waitForOutput(w, (out) => out.includes('"kind":"verify.passed"'));
    w.child.kill("SIGINT");
    const r = await w.done;
    expect(r.code).toBe(0);
    const events = parseJsonLines(r.stdout);
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((e) => e.bdf === "0000:01:00.0")).toBe(true);
  });

  it("reset --json --wait prints the reply, the events and a result object", async () => {
    const r = await runCli([
      "reset",
      "alpha",
      "0000:02:00.0",
      "--scope",
      "full",
      "--wait",
      "--json",
      "--server",
      nats.url,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const objs = lines(r.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    const result = objs.at(-1)!;
    expect(result).toMatchObject({
      host: "alpha",
      bdf: "0000:02:00.0",
      scope: "full",
      method: "cxl",
      outcome: "verified",
    });
    expect((result.phasesMs as Record<string, number | null>).reset).toBeGreaterThan(0);
  });

  it("a refusal is printed with its reason and exits 1", async () => {
    // bravo 0000:05:00.0 shares its bridge with 0000:05:01.0, which a process holds: SBR is refused.
    const r = await runCli([
      "reset",
      "bravo",
      "0000:05:00.0",
      "--scope",
      "full",
      "--method",
      "sbr",
      "--server",
      nats.url,
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^refused cli-\S+: bravo 0000:05:00\.0: sibling-busy: /m);
  });

  it("plan: a dry run lists the gates; io on a device without FLR is refused unless escalation is allowed", async () => {
    const no = await runCli(["plan", "alpha", "0000:02:00.0", "--scope", "io", "--server", nats.url]);
    expect(no.code).toBe(1);
    expect(no.stdout).toMatch(/flr-unsupported/);
    const yes = await runCli([
      "plan",
      "alpha",
      "02:00.0",
      "--scope",
      "io",
      "--allow-escalation",
      "--server",
      nats.url,
    ]);
    expect(yes.code, yes.stderr).toBe(0);
    expect(yes.stdout).toMatch(/plan \(dry run, nothing touched\)/);
    expect(yes.stdout).toMatch(/scope\s+full \(escalated from io/);
    expect(yes.stdout).toMatch(/pass\s+breaker/);
  });

  it("a commit failure quarantines; status shows it; release takes it out", async () => {
    sims.get("bravo")!.faults.set("0000:04:00.0", { name: "commit-error", decoder: 0 });
    const r = await runCli([
      "reset",
      "bravo",
      "0000:04:00.0",
      "--scope",
      "full",
      "--wait",
      "--server",
      nats.url,
    ]);
    sims.get("bravo")!.faults.clear("0000:04:00.0");
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^quarantined bravo 0000:04:00\.0 full\/cxl/m);

    const s = await runCli(["status", "--json", "--server", nats.url]);
    expect(s.code).toBe(0);
    const status = JSON.parse(s.stdout) as { devices: Array<{ host: string; bdf: string; state: string }> };
    expect(status.devices.find((d) => d.host === "bravo" && d.bdf === "0000:04:00.0")?.state).toBe(
      "quarantined",
    );
    const text = await runCli(["status", "--host", "bravo", "--server", nats.url]);
    expect(text.stdout).toMatch(/^bravo\s+\d+\s+.*1/m);
    expect(text.stdout).toMatch(/quarantined bravo 0000:04:00\.0: .*Error Not Committed/);

    const rel = await runCli([
      "release",
      "bravo",
      "0000:04:00.0",
      "--reason",
      "card reseated",
      "--server",
      nats.url,
    ]);
    expect(rel.code, rel.stderr).toBe(0);
    const again = await runCli(["status", "--json", "--server", nats.url]);
    const after = JSON.parse(again.stdout) as typeof status;
    expect(after.devices.find((d) => d.host === "bravo" && d.bdf === "0000:04:00.0")?.state).not.toBe(
      "quarantined",
    );
  });

  it("image show decodes the last saved image: identity, DVSEC, decoders", async () => {
    const r = await runCli(["image", "show", "alpha", "0000:01:00.0", "--server", nats.url]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^image of alpha 0000:01:00\.0/);
    expect(r.stdout).toMatch(/CXL DVSEC for CXL Devices at 0x100/);
    expect(r.stdout).toMatch(/decoder0 {2}base 0x100000000 {2}size 0x10000000 {2}committed/);
    const j = await runCli(["image", "show", "alpha", "0000:01:00.0", "--json", "--server", nats.url]);
    expect(JSON.parse(j.stdout).image.identity.bdf).toBe("0000:01:00.0");
  });

  it("devices lists every known device with its state", async () => {
    const r = await runCli(["devices", "--host", "alpha", "--server", nats.url]);
    expect(r.code).toBe(0);
    expect(lines(r.stdout)[0]).toMatch(/^HOST\s+DEVICE\s+STATE/);
    expect(r.stdout).toMatch(/^alpha\s+0000:01:00\.0\s+ready/m);
  });

  it("bus up but no coordinator, or no JetStream: exit 3, one line", async () => {
    const other = await startNats({ jetstream: false });
    try {
      const r = await runCli(["status", "--server", other.url]);
      expect(r.code).toBe(3);
      expect(lines(r.stderr)).toHaveLength(1);
      expect(r.stderr).toMatch(/no coordinator answers on cxlrc\.ctl\.status/);
      const w = await runCli(["watch", "--server", other.url]);
      expect(w.code).toBe(3);
      expect(lines(w.stderr)).toEqual([
        "cxlrc watch: the NATS server has no JetStream (start nats-server with -js, as `cxlrc demo` does)",
      ]);
    } finally {
      await other.stop();
    }
  });
});

describe("last known good image and release --restore", () => {
  const DEV = "0000:03:00.0";
  it("image show says which image it shows; release --restore puts the verified one back", async () => {
    const ok = await runCli(["reset", "bravo", DEV, "--scope", "full", "--wait", "--server", nats.url]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^verified bravo 0000:03:00\.0 full\//m);
    const verifiedId = /^plan (cli-\S+):/m.exec(ok.stdout)?.[1];
    expect(verifiedId).toMatch(/^cli-/);
    const same = await runCli(["image", "show", "bravo", DEV, "--server", nats.url]);
    expect(lines(same.stdout)[1]).toMatch(
      /^ {2}shown: the last saved image, which is also the last known good one/,
    );

    sims.get("bravo")!.faults.set(DEV, { name: "commit-error", decoder: 0 });
    const bad = await runCli(["reset", "bravo", DEV, "--scope", "full", "--wait", "--server", nats.url]);
    sims.get("bravo")!.faults.clear(DEV);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(new RegExp(`^quarantined bravo ${DEV.replace(/\./g, "\\.")}`, "m"));

    const latest = await runCli(["image", "show", "bravo", DEV, "--server", nats.url]);
    expect(latest.code, latest.stderr).toBe(0);
    expect(lines(latest.stdout)[0]).toMatch(/^image of bravo 0000:03:00\.0/);
    expect(lines(latest.stdout)[1]).toMatch(
      /^ {2}shown: the last saved image, NOT verified; the last known good one is revision \d+ \(verified \S+ by request cli-/,
    );
    const good = await runCli(["image", "show", "bravo", DEV, "--verified", "--server", nats.url]);
    expect(good.code, good.stderr).toBe(0);
    expect(lines(good.stdout)[1]).toMatch(/^ {2}shown: the last known good image \(verified /);
    expect(lines(good.stdout)[1]).toContain(`by request ${verifiedId}`);
    expect(good.stdout).toMatch(/decoder0 {2}base 0x\S+ {2}size 0x\S+ {2}committed/);

    const rel = await runCli([
      "release",
      "bravo",
      DEV,
      "--restore",
      "--reason",
      "decoder replaced",
      "--server",
      nats.url,
    ]);
    expect(rel.code, rel.stderr).toBe(0);
    expect(rel.stdout).toMatch(/^restored from the last known good image \(revision \d+, request cli-/m);
    expect(rel.stdout).toMatch(/^ {2}0000:03:00\.0: decoder0 committed.*; verify passed$/m);
    expect(rel.stdout).toMatch(/^released bravo 0000:03:00\.0 from quarantine \(now ready\)$/m);
    const s = await runCli(["status", "--json", "--server", nats.url]);
    const status = JSON.parse(s.stdout) as { devices: Array<{ host: string; bdf: string; state: string }> };
    expect(status.devices.find((d) => d.host === "bravo" && d.bdf === DEV)?.state).toBe("ready");
  });
});
