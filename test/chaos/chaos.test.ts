// The chaos proof, on real nats-server processes: one 3-node JetStream cluster shared by every scenario (each
// starts from empty streams and buckets), coordinators as processes, simulated hosts with their agents.
// Every scenario ends with the invariant checks of services/chaos/invariants.ts and prints its figures.
// Scenarios run one after the other (one file, one worker): they kill and pause NATS nodes of the cluster.
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { killEveryStep } from "../../services/chaos/builders.ts";
import { type ChaosReport, formatReport } from "../../services/chaos/report.ts";
import { runScenarioTimed } from "../../services/chaos/runner.ts";
import { type LoadedScenario, loadScenario, parseScenario } from "../../services/chaos/scenario.ts";
import { type ClusterHandle, startCluster } from "../../shared/natsd/cluster.ts";

const scenarioFile = (name: string) =>
  new URL(`../../services/chaos/scenarios/${name}.json`, import.meta.url).pathname;

let cluster: ClusterHandle;

beforeAll(async () => {
  cluster = await startCluster(3, { clusterName: "cxlrc-chaos-test" });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

/** Print the report (its last line: the figures) and return it. */
function show(r: ChaosReport): ChaosReport {
  console.log(formatReport(r));
  return r;
}

/**
 * Run with the coordinators logging warnings; a failed run leaves their logs in a file (named in the output,
 * with the last lines) so that what went wrong can be read after the fact, also from CI.
 */
async function run(loaded: LoadedScenario): Promise<ChaosReport> {
  if (loaded.scenario.coordinators.logLevel === "silent") loaded.scenario.coordinators.logLevel = "warn";
  const logs: string[] = [];
  const r = await runScenarioTimed(loaded, {
    cluster,
    coordinatorLog: (i, text) => {
      for (const line of text.split("\n")) if (line) logs.push(`c${i} ${line}`);
    },
  });
  if (!r.ok) {
    const file = join(tmpdir(), `cxlrc-chaos-${loaded.scenario.name}-${loaded.scenario.seed}.log`);
    writeFileSync(file, `${logs.join("\n")}\n`);
    console.log(`coordinator logs: ${file}; last lines:\n${logs.slice(-60).join("\n")}`);
  }
  return show(r);
}

const terminal = (r: ChaosReport) =>
  r.requests.list.filter((q) => ["verified", "refused", "failed", "quarantined"].includes(q.outcome)).length;

describe.sequential("chaos on a 3-node NATS cluster", () => {
  it("cluster harness: the leader of a replicated bucket is killed, writes resume with CAS intact", async () => {
    const nc = await cluster.connect("harness-test");
    const kv = await new Kvm(jetstream(nc, { timeout: 2000 })).create("harness-check", {
      replicas: 3,
      history: 1,
    });
    const rev = await kv.create("k", "1");
    const leader = await cluster.streamLeader("KV_harness-check");
    expect(leader).toBeGreaterThanOrEqual(0);
    await cluster.kill(leader);
    expect(cluster.nodes[leader]?.running).toBe(false);
    let next = 0;
    for (let i = 0; next === 0 && i < 100; i++) {
      next = await kv.update("k", "2", rev).catch(() => 0);
      if (next === 0) await new Promise((r) => setTimeout(r, 200));
    }
    expect(next).toBeGreaterThan(rev);
    // A stale revision is refused by the new leader too.
    await expect(kv.update("k", "3", rev)).rejects.toThrow();
    const newLeader = await cluster.streamLeader("KV_harness-check");
    expect(newLeader).not.toBe(leader);
    await cluster.restart(leader);
    expect(cluster.nodes[leader]?.running).toBe(true);
    await cluster.waitReady();
    cluster.pause(newLeader);
    expect(cluster.nodes[newLeader]?.paused).toBe(true);
    cluster.resume(newLeader);
    await kv.destroy().catch(() => undefined);
    await nc.close();
  }, 90_000);

  it("a coordinator SIGKILLed at every lifecycle step (before and after its effect) loses nothing", async () => {
    const r = await run(parseScenario(killEveryStep({ restartAfterMs: 0 })));
    expect(r.faults.unfired).toEqual([]);
    expect(r.faults.injected).toBe(22);
    expect(r.requests.outcomes.verified).toBe(22);
    expect(r.violations).toEqual([]);
    expect(r.ok).toBe(true);
  }, 200_000);

  it("a coordinator killed for good mid-reset: the other takes its device over within the lease time", async () => {
    const input = killEveryStep({ phases: ["resetting"], points: ["before"], restartAfterMs: undefined });
    input.requests!.push({
      requestId: "after-takeover",
      after: "kill-before-resetting",
      host: "k1",
      bdf: "0000:02:00.0",
      scope: "full",
    });
    input.fleet = { generate: { hosts: 1, devicesPerHost: 2, prefix: "k", noFlrEvery: 0 } };
    const r = await run(parseScenario(input));
    const kill = r.faults.log.find((f) => f.name === "kill-before-resetting");
    expect(kill?.ok).toBe(true);
    const killed = kill!.target.replace("coordinator ", "");
    const entry = r.requests.list.find((q) => q.requestId === "kill-before-resetting");
    expect(entry?.outcome).toBe("verified");
    // The outcome came from the other coordinator (the killed one stayed down until the end).
    expect(entry?.by).not.toBe(killed);
    expect(r.requests.list.find((q) => q.requestId === "after-takeover")?.outcome).toBe("verified");
    expect(r.violations).toEqual([]);
  }, 200_000);

  it("agents killed in the middle of a restore and restarted", async () => {
    const r = await run(loadScenario(scenarioFile("agent-restore")));
    const kills = r.faults.log.filter((f) => f.action === "kill" && f.target.startsWith("agent"));
    expect(kills).toHaveLength(2);
    for (const k of kills) expect(k.detail).toMatch(/^mid-operation/);
    expect(terminal(r)).toBe(2);
    expect(r.violations).toEqual([]);
  }, 200_000);

  it("the NATS node leading the images bucket killed during persist", async () => {
    const r = await run(loadScenario(scenarioFile("leader-persist")));
    const kills = r.faults.log.filter((f) => f.action === "kill" && f.source === "scenario");
    expect(kills.map((k) => k.ok)).toEqual([true]);
    expect(kills[0]?.target).toMatch(/leader of KV_cxlrc-images/);
    expect(kills[0]?.trigger).toMatch(/persistingImage/);
    // The reset whose image write met the fail-over completes: the write waited for the new leader.
    expect(r.requests.list.find((q) => q.requestId === "persist-1")?.outcome).toBe("verified");
    expect(terminal(r)).toBe(2);
    expect(r.violations).toEqual([]);
  }, 200_000);

  it("a coordinator, then a NATS node, SIGSTOPped for longer than the lease time", async () => {
    const r = await run(loadScenario(scenarioFile("pause")));
    expect(r.faults.log.filter((f) => f.action === "pause" && f.ok)).toHaveLength(2);
    expect(r.faults.unfired).toEqual([]);
    expect(terminal(r)).toBe(2);
    expect(r.violations).toEqual([]);
  }, 200_000);

  // Fencing tokens (issue #16): a frozen owner past its lease, and agents restarted between fenced operations.
  it("a partition owner frozen past its lease while its agent calls are in flight: the new owner finishes", async () => {
    const r = await run(loadScenario(scenarioFile("frozen-owner")));
    expect(r.faults.log.filter((f) => f.action === "pause" && f.ok)).toHaveLength(1);
    expect(r.faults.unfired).toEqual([]);
    expect(r.requests.list.map((q) => q.outcome)).toEqual(Array(6).fill("verified"));
    expect(r.violations).toEqual([]);
  }, 120_000);

  it("agents restarted between two fenced operations: the table is read back, the resets complete", async () => {
    const r = await run(loadScenario(scenarioFile("agent-restart-fenced")));
    expect(r.faults.log.filter((f) => f.action === "restart" && f.ok)).toHaveLength(2);
    expect(r.requests.list.map((q) => q.outcome)).toEqual(Array(3).fill("verified"));
    expect(r.violations).toEqual([]);
  }, 120_000);

  // An agent stopped whole (SIGSTOP: its bus traffic held, not only its hardware) answers neither its calls nor
  // a ping: the coordinator waits within the step's grace and sends again. Were the agent's event loop still
  // answering (a chaos pause), the save would be refused after its 2 s budget: verified proves the freeze held.
  it("agents frozen whole at the save and before the restore: waited for, each device reset once", async () => {
    const r = await run(loadScenario(scenarioFile("agent-frozen")));
    expect(r.faults.log.filter((f) => f.action === "freeze" && f.ok)).toHaveLength(2);
    expect(r.faults.unfired).toEqual([]);
    expect(r.requests.list.map((q) => q.outcome)).toEqual(Array(3).fill("verified"));
    expect(r.resets).toMatchObject({ total: 3, cxlReset: 3 });
    expect(r.timings.runMs).toBeGreaterThan(3000);
    expect(r.violations).toEqual([]);
  }, 120_000);

  // A partition, not a SIGSTOP: the cut-off owner runs on, its renewals fail, and it must go silent in time.
  it("the owner cut off from the bus before the restore, past its lease: the other finishes, fenced", async () => {
    const r = await run(loadScenario(scenarioFile("partitioned-owner")));
    const cut = r.faults.log.filter((f) => f.action === "partition" && f.ok);
    expect(cut).toHaveLength(1);
    expect(r.faults.log.some((f) => f.action === "heal" && f.source === "undo" && f.ok)).toBe(true);
    expect(r.requests.list.map((q) => q.outcome)).toEqual(Array(6).fill("verified"));
    const owner = cut[0]!.target.replace("coordinator ", "");
    expect(r.requests.list.find((q) => q.requestId === "cut")?.by).not.toBe(owner);
    expect(r.violations).toEqual([]);
  }, 120_000);

  // A host that loses power mid-restore: its agent dies mid-operation and its devices power on as at boot.
  it("a host rebooted in the middle of a restore: the reset is finished from the stored image", async () => {
    const r = await run(loadScenario(scenarioFile("host-reboot")));
    const reboots = r.faults.log.filter((f) => f.action === "reboot" && f.ok);
    expect(reboots.map((f) => f.detail?.split(",")[0])).toEqual(["agent mid-operation"]);
    expect(r.fleet.agentStarts).toBe(4);
    expect(r.requests.list.map((q) => q.outcome)).toEqual(Array(3).fill("verified"));
    expect(r.resets).toMatchObject({ total: 3, cxlReset: 3 });
    expect(r.violations).toEqual([]);
  }, 120_000);

  // Issue #17: every device bound to cxl_pci, as a real host boots; coordinators and agents killed mid
  // hand-over. Every device ends bound to cxl_pci again (driver-back), and the usual invariants hold.
  it("a fleet on cxl_pci under random faults: every driver taken for a reset comes back", async () => {
    const r = await run(loadScenario(scenarioFile("driver-handover")));
    expect(r.requests.complete).toBe(true);
    expect(r.requests.outcomes.verified ?? 0).toBeGreaterThan(0);
    expect(r.invariants.byInvariant["driver-back"]).toEqual({ checks: 20, violations: 0 });
    expect(r.violations).toEqual([]);
  }, 200_000);

  // No retry: these runs kill and restart NATS nodes at random (a restarted nats-server 2.9.10 node does not
  // serve JetStream for 10-15 s), and every invariant must hold through that. On failure the report,
  // violations and the coordinators' log file stay in the output.
  for (const seed of [1, 2]) {
    it(`200 requests across 50 devices and 5 hosts with seeded random faults (seed ${seed})`, {
      timeout: 240_000,
    }, async () => {
      const loaded = loadScenario(scenarioFile("fleet-random"));
      loaded.scenario.seed = seed;
      const r = await run(loaded);
      expect(r.requests.sent).toBe(200);
      expect(r.fleet).toMatchObject({ hosts: 5, devices: 50 });
      expect(r.faults.injected).toBeGreaterThan(0);
      expect(r.faults.injected + r.faults.failed).toBeGreaterThanOrEqual(loaded.scenario.randomFaults!.count);
      expect(r.resets.total).toBeGreaterThan(0);
      expect(r.requests.complete).toBe(true);
      expect(r.violations).toEqual([]);
    });
  }
});
