// Fencing tokens at the agent (issue #16): per function and lease, the agent serves the highest epoch it has
// seen and refuses an older one with "stale-epoch" naming both epochs and the owner it served; the table
// survives a restart of the agent (same state directory); a corrupt table is an error naming the file.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FENCE_LOG_FILE, LEGACY_FENCE_FILE } from "../../services/agent/fence-table.ts";
import { type AgentHandle, startAgent } from "../../services/agent/service.ts";
import type { AgentReply, Fence } from "../../shared/bus/agent-messages.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { DEV_A, DEV_B, type Env, fakeBackend, fakeOps, readEvents, startEnv, until } from "./fixtures.ts";

const HOST = "fence-host";
const LEASE = `${HOST}.0000-01-00-0`;

const fence = (epoch: number, owner: string): Fence => ({ epoch, owner, lease: LEASE });

/** The table as its log on disk says: the last line of each function and lease. */
function storedFences(dir: string): Record<string, Record<string, { epoch: number; owner: string }>> {
  const out: Record<string, Record<string, { epoch: number; owner: string }>> = {};
  for (const line of readFileSync(join(dir, FENCE_LOG_FILE), "utf8").trim().split("\n")) {
    const l = JSON.parse(line) as { bdf: string; lease: string; epoch: number; owner: string };
    out[l.bdf] = { ...out[l.bdf], [l.lease]: { epoch: l.epoch, owner: l.owner } };
  }
  return out;
}

describe("agent fencing tokens", () => {
  let env: Env;
  let stateDir: string;
  const ops = fakeOps();
  /** The raw reply (requestJson would throw the error body). */
  const send = async (op: "probe" | "save", opId: string, bdf: string, f?: Fence): Promise<AgentReply> => {
    const body = JSON.stringify({ opId, bdf, ...(f ? { fence: f } : {}) });
    const m = await env.nc.request(subjects.agent(HOST, op), body, { timeout: 5000 });
    return m.json<AgentReply>();
  };

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), "cxlrc-fence-"));
    env = await startEnv({ host: HOST, backend: fakeBackend(), operations: ops, stateDir });
  });
  afterAll(async () => {
    await env?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("serves the newer owner and refuses an older epoch, naming both epochs and the owner it served", async () => {
    expect((await send("probe", "new-1", DEV_A, fence(20, "coord-new"))).ok).toBe(true);
    const probesBefore = ops.runs.get(`probe:${DEV_A}`) ?? 0;

    const stale = await send("save", "old-1", DEV_A, fence(7, "coord-old"));
    expect(stale.ok).toBe(false);
    if (stale.ok) return;
    expect(stale.error.kind).toBe("stale-epoch");
    expect(stale.error.message).toContain("epoch 7");
    expect(stale.error.message).toContain("epoch 20");
    expect(stale.error.message).toContain("coord-new");
    expect(stale.error.details).toMatchObject({ epoch: 7, servedEpoch: 20, servedOwner: "coord-new" });
    // Nothing ran for the stale owner; the refusal is counted.
    expect(ops.runs.get(`save:${DEV_A}`) ?? 0).toBe(0);
    expect(ops.runs.get(`probe:${DEV_A}`) ?? 0).toBe(probesBefore);
    expect(env.agent.stats().staleEpoch).toBe(1);

    // The same owner at the same epoch goes on; another function has its own table; unfenced tools still work.
    expect((await send("save", "new-2", DEV_A, fence(20, "coord-new"))).ok).toBe(true);
    expect((await send("probe", "old-b", DEV_B, fence(7, "coord-old"))).ok).toBe(true);
    expect((await send("probe", "tool-1", DEV_A)).ok).toBe(true);
  });

  it("a refused operation id is not remembered: the newer owner may run it (a takeover repeats step ids)", async () => {
    const refused = await send("probe", "step-x", DEV_A, fence(8, "coord-old"));
    expect(refused.ok ? "ok" : refused.error.kind).toBe("stale-epoch");
    const before = ops.runs.get(`probe:${DEV_A}`) ?? 0;
    const again = await send("probe", "step-x", DEV_A, fence(20, "coord-new"));
    expect(again.ok).toBe(true);
    expect(ops.runs.get(`probe:${DEV_A}`)).toBe(before + 1);
    // And a cached id repeated by an older owner is refused, not answered from the cache.
    const repeat = await send("probe", "new-1", DEV_A, fence(3, "coord-old"));
    expect(repeat.ok ? "ok" : repeat.error.kind).toBe("stale-epoch");
  });

  it("checks again under the device's lane: an older epoch queued behind a newer one is refused (op.failed)", async () => {
    // An unfenced reset holds DEV_B's lane; a newer and then an older owner queue behind it (both pass the
    // check at arrival: the table still says epoch 7). The newer one runs first and raises the epoch.
    let open: () => void = () => undefined;
    ops.gates.set(
      "hold-b",
      new Promise<void>((r) => {
        open = r;
      }),
    );
    const held = env.nc.request(
      subjects.agent(HOST, "reset"),
      JSON.stringify({ opId: "hold-b", bdf: DEV_B, method: "kernel", kernelMethod: "gate:hold-b" }),
      { timeout: 5000 },
    );
    await until(() => ops.started.has("hold-b"), "the held reset to start");
    const newer = send("probe", "lane-new", DEV_B, fence(30, "coord-new"));
    const older = send("save", "lane-old", DEV_B, fence(29, "coord-old"));
    await until(() => env.agent.stats().queued === 2, "both to queue");
    open();
    const [a, b] = await Promise.all([newer, older]);
    await held;
    expect(a.ok).toBe(true);
    expect(b.ok ? "ok" : b.error.kind).toBe("stale-epoch");
    expect(ops.runs.get(`save:${DEV_B}`) ?? 0).toBe(0);
    const failed = (await readEvents(env.jsm)).filter(
      (e) => e.event.kind === "op.failed" && e.event.opId === "lane-old",
    );
    expect(failed.map((f) => (f.event.data.error as { kind: string }).kind)).toEqual(["stale-epoch"]);
  });

  it("remembers the epochs across a restart (same state directory) and refuses the old owner again", async () => {
    expect(storedFences(stateDir)[DEV_A]?.[LEASE]).toMatchObject({ epoch: 20, owner: "coord-new" });

    await env.agent.stop();
    const restarted: AgentHandle = await startAgent({
      nc: env.agentNc,
      host: HOST,
      backend: fakeBackend(),
      operations: ops,
      stateDir,
      heartbeatMs: 60_000,
    });
    env.agent = restarted;
    const stale = await send("save", "after-restart-old", DEV_A, fence(19, "coord-old"));
    expect(stale.ok ? "ok" : stale.error.kind).toBe("stale-epoch");
    expect(restarted.stats().staleEpoch).toBe(1);
    // The newer owner (and a still newer one) go through.
    expect((await send("save", "after-restart-new", DEV_A, fence(20, "coord-new"))).ok).toBe(true);
    expect((await send("save", "after-restart-newer", DEV_A, fence(21, "coord-3"))).ok).toBe(true);
    expect((await send("save", "after-restart-back", DEV_A, fence(20, "coord-new"))).ok).toBe(false);
  });

  it("a read with a new epoch answers once the epoch is stored; a table that cannot be stored fails the read and issues no reset", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cxlrc-fence-write-"));
    const own = fakeOps();
    const e2 = await startEnv({
      host: "fence-write",
      backend: fakeBackend(),
      operations: own,
      stateDir: dir,
    });
    try {
      const lease = "fence-write.0000-01-00-0";
      const call = async (op: "probe" | "save" | "reset", opId: string, epoch: number) => {
        const body = JSON.stringify({
          opId,
          bdf: DEV_A,
          fence: { epoch, owner: "coord-w", lease },
          ...(op === "reset" ? { method: "flr" } : {}),
        });
        return (
          await e2.nc.request(subjects.agent("fence-write", op), body, { timeout: 5000 })
        ).json<AgentReply>();
      };
      // The read runs beside the table's write; its reply comes only once the new epoch is on disk.
      expect((await call("probe", "w-1", 40)).ok).toBe(true);
      expect(storedFences(dir)[DEV_A]?.[lease]?.epoch).toBe(40);
      // The state directory is gone: a read with a newer epoch fails naming the table, a reset is not issued.
      rmSync(dir, { recursive: true, force: true });
      const read = await call("save", "w-2", 41);
      expect(read.ok ? "ok" : read.error.message).toMatch(/cannot store the agent's fencing table/);
      const resetsBefore = own.runs.get(`reset:${DEV_A}`) ?? 0;
      const reset = await call("reset", "w-3", 42);
      expect(reset.ok ? "ok" : reset.error.message).toMatch(/cannot store the agent's fencing table/);
      expect(own.runs.get(`reset:${DEV_A}`) ?? 0).toBe(resetsBefore);
    } finally {
      await e2.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a corrupt table stops the agent from starting, with an error naming the file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cxlrc-fence-bad-"));
    const start = () =>
      startAgent({
        nc: env.agentNc,
        host: "fence-bad",
        backend: fakeBackend(),
        operations: ops,
        stateDir: dir,
      });
    try {
      // A complete line that is not JSON (a torn last line is dropped instead: fence-table.test.ts).
      writeFileSync(join(dir, FENCE_LOG_FILE), "{ not json\n");
      await expect(start()).rejects.toThrow(join(dir, FENCE_LOG_FILE));
      writeFileSync(join(dir, FENCE_LOG_FILE), `${JSON.stringify({ bdf: DEV_A, lease: "x", epoch: -1 })}\n`);
      await expect(start()).rejects.toThrow(/fencing table .* is malformed at line 1/);
      // An earlier agent's table, as corrupt.
      rmSync(join(dir, FENCE_LOG_FILE));
      writeFileSync(join(dir, LEGACY_FENCE_FILE), "{ not json");
      await expect(start()).rejects.toThrow(join(dir, LEGACY_FENCE_FILE));
      writeFileSync(
        join(dir, LEGACY_FENCE_FILE),
        JSON.stringify({ v: 1, devices: { [DEV_A]: { x: { epoch: -1 } } } }),
      );
      await expect(start()).rejects.toThrow(/fencing table .* is malformed/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
