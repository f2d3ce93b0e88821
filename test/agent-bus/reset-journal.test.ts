// The agent's reset journal: a reset operation id is issued once, also across a restart of the agent (same
// state directory). Seen in the chaos runs: an agent killed in the middle of a CXL Reset came back without its
// opId cache, the coordinator's copy of the request reached it, and the device was reset a second time.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RESET_JOURNAL_FILE } from "../../services/agent/reset-journal.ts";
import { startAgent } from "../../services/agent/service.ts";
import type { AgentReply } from "../../shared/bus/agent-messages.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { DEV_A, type Env, fakeBackend, fakeOps, startEnv } from "./fixtures.ts";

const HOST = "journal-host";

describe("agent reset journal", () => {
  let env: Env;
  let stateDir: string;
  const ops = fakeOps();
  const reset = async (opId: string): Promise<AgentReply> => {
    const body = JSON.stringify({ opId, bdf: DEV_A, method: "flr" });
    return (await env.nc.request(subjects.agent(HOST, "reset"), body, { timeout: 5000 })).json<AgentReply>();
  };
  const restart = async () => {
    await env.agent.stop();
    env.agent = await startAgent({
      nc: env.agentNc,
      host: HOST,
      backend: fakeBackend(),
      operations: ops,
      stateDir,
      heartbeatMs: 60_000,
    });
  };

  beforeAll(async () => {
    stateDir = mkdtempSync(join(tmpdir(), "cxlrc-journal-"));
    env = await startEnv({ host: HOST, backend: fakeBackend(), operations: ops, stateDir });
  });
  afterAll(async () => {
    await env?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("a reset repeated after a restart gets its first reply, and the device is reset once", async () => {
    const first = await reset("journal-1");
    expect(first.ok).toBe(true);
    expect(ops.runs.get(`reset:${DEV_A}`)).toBe(1);
    const stored = JSON.parse(readFileSync(join(stateDir, RESET_JOURNAL_FILE), "utf8"));
    expect(stored.resets["journal-1"]).toMatchObject({ bdf: DEV_A, reply: { ok: true, opId: "journal-1" } });

    await restart();
    const again = await reset("journal-1");
    expect(again).toEqual(first);
    expect(ops.runs.get(`reset:${DEV_A}`)).toBe(1);
    // A new operation id is a new reset.
    expect((await reset("journal-2")).ok).toBe(true);
    expect(ops.runs.get(`reset:${DEV_A}`)).toBe(2);
  });

  it("a reset the agent died in the middle of is not issued again: its outcome is unknown", async () => {
    // What a kill between "issued" and "ended" leaves: the entry without its reply.
    const path = join(stateDir, RESET_JOURNAL_FILE);
    const stored = JSON.parse(readFileSync(path, "utf8"));
    stored.resets["journal-cut"] = { bdf: DEV_A, at: "2026-12-05T00:16:04.636Z" };
    writeFileSync(path, JSON.stringify(stored));
    await restart();
    const before = ops.runs.get(`reset:${DEV_A}`);
    const r = await reset("journal-cut");
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.kind).toBe("backend");
    expect(r.error.message).toMatch(/outcome is unknown and it is not issued again/);
    expect(r.error.details).toMatchObject({ reason: "reset-interrupted", opId: "journal-cut" });
    expect(ops.runs.get(`reset:${DEV_A}`)).toBe(before);
  });

  it("a corrupt journal stops the agent from starting, naming the file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cxlrc-journal-bad-"));
    try {
      writeFileSync(join(dir, RESET_JOURNAL_FILE), "{ nope");
      await expect(
        startAgent({
          nc: env.agentNc,
          host: "journal-bad",
          backend: fakeBackend(),
          operations: ops,
          stateDir: dir,
        }),
      ).rejects.toThrow(join(dir, RESET_JOURNAL_FILE));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
