// Coordinators and agents upgraded in either order: an agent names the features its operations accept beyond
// the first release (its inventory's `features`), and a coordinator asks for one only of an agent that names
// it. An agent without "reset.restore" (as 0.1.0 was) refuses a reset that carries a restore, naming the
// field, and resets nothing; a coordinator resetting a device of such an agent restores in a step of its own
// and still verifies. An agent that names it gets the restore in the reset's operation. The same for
// "save.probe": an agent without it refuses a save that asks for the read after it, and is asked for that read
// as an operation of its own.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgent } from "../../services/agent/service.ts";
import { AGENT_FEATURES, type AgentFeature } from "../../shared/bus/agent-contract.ts";
import { callAgent } from "../../shared/bus/client.ts";
import { isCxlrcError } from "../../shared/errors.ts";
import { simpleHost } from "../../shared/sim/index.ts";
import {
  probe,
  publishRequest,
  type RunningCoordinator,
  readEvents,
  startWorld,
  type World,
} from "./helpers.ts";

const BDF = "0000:01:00.0";

/** A full reset of the host's device, published as a controller does; its outcome must be verified. */
async function resetVerified(w: World, c: RunningCoordinator, host: string, requestId: string) {
  await publishRequest(w.js, { requestId, host, bdf: BDF, scope: "full", reason: "test" });
  expect((await c.handle.waitForOutcome(requestId, 20_000)).outcome).toBe("verified");
}

/** The operations the host's agent started for a request, in order, with what each was asked. */
async function opsOf(w: World, host: string, requestId: string) {
  const started = (await readEvents(w.jsm, { host, source: "agent" }))
    .map((e) => e.event)
    .filter((e) => e.kind === "op.started" && e.opId?.startsWith(`${requestId}/`))
    .map((e) => e.data as { op: string; params: Record<string, unknown> });
  return {
    ops: started.map((d) => d.op),
    reset: started.find((d) => d.op === "reset"),
    save: started.find((d) => d.op === "save"),
  };
}

describe("agent features", () => {
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "older" }), simpleHost({ name: "newer" })], {
      agentFeatures: { older: [] },
    });
    c = await w.coordinator();
  });
  afterAll(async () => {
    await w?.close();
  });

  it("are named in the inventory: all of them by a current agent, none by one standing for 0.1.0", async () => {
    const newer = await callAgent(w.nc, "newer", "inventory", "test-inv-1", {}, { timeoutMs: 5000 });
    expect(newer.features).toEqual([...AGENT_FEATURES]);
    expect(newer.features).toContain("reset.restore");
    const older = await callAgent(w.nc, "older", "inventory", "test-inv-2", {}, { timeoutMs: 5000 });
    expect(older.features).toEqual([]);
  });

  /** The older agent's answer to `op` carrying `field`: a bad-input naming the field. */
  async function refusedFor(
    op: "reset" | "save",
    opId: string,
    params: Record<string, unknown>,
    field: string,
  ) {
    const err = await callAgent(w.nc, "older", op, opId, { bdf: BDF, ...params } as never, {
      timeoutMs: 5000,
    }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isCxlrcError(err) && err.kind).toBe("bad-input");
    expect(String((err as Error).message)).toContain(`"${field}"`);
    expect((err as { details?: { fields?: string[] } }).details?.fields).toEqual([field]);
  }

  it("an agent without reset.restore refuses a reset carrying a restore, naming the field, and resets nothing", async () => {
    await refusedFor(
      "reset",
      "test-reset-restore",
      { method: "cxl", restore: { scope: "full", image: {} } },
      "restore",
    );
    expect(w.sims.get("older")!.counters(BDF).cxlReset).toBe(0);
  });

  it("an agent without save.probe refuses a save asking for the read after it, naming the field, and saves nothing", async () => {
    await refusedFor("save", "test-save-probe", { probe: true }, "probe");
    const started = (await readEvents(w.jsm, { host: "older", source: "agent" })).filter(
      (e) => e.event.kind === "op.started" && e.event.opId === "test-save-probe",
    );
    expect(started).toEqual([]);
  });

  it("a full reset of an older agent's device restores in its own step and verifies", async () => {
    const before = await probe(w.nc, "older", BDF);
    await resetVerified(w, c, "older", "old-1");
    expect(w.sims.get("older")!.counters(BDF).cxlReset).toBe(1);
    expect((await probe(w.nc, "older", BDF)).decoders).toEqual(before.decoders);
    const { ops, reset, save } = await opsOf(w, "older", "old-1");
    expect(ops).toContain("reset");
    expect(ops.indexOf("restore")).toBeGreaterThan(ops.indexOf("reset"));
    expect(reset?.params).not.toHaveProperty("restore");
    // The regate's read goes as an operation of its own, right behind the save.
    expect(save?.params).not.toHaveProperty("probe");
    expect(ops.slice(ops.indexOf("save"), ops.indexOf("save") + 2)).toEqual(["save", "probe"]);
  });

  it("a full reset of a current agent's device restores in the reset's operation", async () => {
    await resetVerified(w, c, "newer", "new-1");
    const { ops, reset, save } = await opsOf(w, "newer", "new-1");
    expect(ops).toContain("reset");
    expect(ops).not.toContain("restore");
    expect(reset?.params).toHaveProperty("restore");
    // The regate's read made by the save's own operation: no read between the save and the reset.
    expect(save?.params).toMatchObject({ probe: true });
    expect(ops.slice(ops.indexOf("save"))).toEqual(["save", "reset"]);
  });
});

describe("an agent rolled back behind the coordinator's last inventory", () => {
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    w = await startWorld([simpleHost({ name: "rolled" })]);
    // The inventory (and the features it names) reused for a minute: the rollback below lands inside it.
    c = await w.coordinator({ inventoryTtlMs: 60_000 });
  });
  afterAll(async () => {
    await w?.close();
  });

  /** The host's agent replaced by one offering only `features` (the coordinator's inventory says otherwise). */
  async function rollBack(features: AgentFeature[]) {
    const i = w.agents.findIndex((a) => a.host === "rolled");
    await w.agents[i]!.stop();
    const older = await startAgent({
      nc: w.agentNc,
      host: "rolled",
      backend: w.sims.get("rolled")!,
      heartbeatMs: 60_000,
      features,
    });
    w.agents[i] = older;
    return older;
  }

  it("the reset refused for its restore field goes again without it, once, and the device verifies", async () => {
    await resetVerified(w, c, "rolled", "roll-1");
    // The agent is replaced by one that refuses the restore in the reset (as 0.1.0 does).
    const older = await rollBack(["save.probe"]);
    const resetsBefore = w.sims.get("rolled")!.counters(BDF).cxlReset;
    await resetVerified(w, c, "rolled", "roll-2");
    expect(older.stats().badInput).toBe(1);
    expect(w.sims.get("rolled")!.counters(BDF).cxlReset).toBe(resetsBefore + 1);
    const { ops } = await opsOf(w, "rolled", "roll-2");
    expect(ops.filter((op) => op === "reset")).toHaveLength(1);
    expect(ops.indexOf("restore")).toBeGreaterThan(ops.indexOf("reset"));
  });

  it("the save refused for its probe field goes again without it, once, the read on its own, and the device verifies", async () => {
    // The coordinator's inventory says "save.probe" (read afresh in the test above, of the agent replaced now).
    const older = await rollBack(["reset.restore"]);
    await resetVerified(w, c, "rolled", "roll-4");
    expect(older.stats().badInput).toBe(1);
    const { ops, save } = await opsOf(w, "rolled", "roll-4");
    expect(ops.filter((op) => op === "save")).toHaveLength(1);
    expect(save?.params).not.toHaveProperty("probe");
    expect(ops.indexOf("probe", ops.indexOf("save"))).toBeGreaterThan(ops.indexOf("save"));
  });
});
