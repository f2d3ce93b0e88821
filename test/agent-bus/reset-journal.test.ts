// The agent's reset journal: a reset operation id is issued once, also across a restart of the agent (same
// state directory). Seen in the chaos runs: an agent killed in the middle of a CXL Reset came back without its
// opId cache, the coordinator's copy of the request reached it, and the device was reset a second time.
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  LEGACY_RESET_JOURNAL_FILE,
  openResetJournal,
  RESET_JOURNAL_FILE,
} from "../../services/agent/reset-journal.ts";
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
    // Two lines appended: the reset about to be issued, then its reply.
    const lines = readFileSync(join(stateDir, RESET_JOURNAL_FILE), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toEqual([
      { op: "journal-1", bdf: DEV_A, at: expect.any(String) },
      { op: "journal-1", reply: expect.objectContaining({ ok: true, opId: "journal-1" }) },
    ]);

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
    appendFileSync(
      path,
      `${JSON.stringify({ op: "journal-cut", bdf: DEV_A, at: "2026-12-05T00:16:04.636Z" })}\n`,
    );
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
      writeFileSync(
        join(dir, RESET_JOURNAL_FILE),
        '{ "op": "a", "bdf": "x", "at": "y" }\n{ nope\n{ "op": "b" }\n',
      );
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
  it("a line torn by a crash mid-append is dropped and cut off before the next append", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cxlrc-journal-torn-"));
    try {
      const path = join(dir, RESET_JOURNAL_FILE);
      writeFileSync(
        path,
        `${JSON.stringify({ op: "t-1", bdf: DEV_A, at: "2026-12-06T00:00:00.000Z" })}\n{"op":"t-2","bd`,
      );
      const j = openResetJournal(dir);
      expect(j.repeat("t-1")).toMatchObject({
        ok: false,
        error: { details: { reason: "reset-interrupted" } },
      });
      expect(j.repeat("t-2")).toBeNull();
      await j.begin("t-3", DEV_A);
      await j.close();
      const lines = readFileSync(path, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(lines.map((l) => l.op)).toEqual(["t-1", "t-3"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an earlier agent's single-file journal is read, folded into the log and removed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cxlrc-journal-legacy-"));
    try {
      const reply = { ok: true, opId: "old-1", result: null };
      writeFileSync(
        join(dir, LEGACY_RESET_JOURNAL_FILE),
        JSON.stringify({ v: 1, resets: { "old-1": { bdf: DEV_A, at: "2026-12-05T00:00:00.000Z", reply } } }),
      );
      const j = openResetJournal(dir);
      expect(j.repeat("old-1")).toEqual(reply);
      await j.begin("new-1", DEV_A);
      await j.close();
      expect(existsSync(join(dir, LEGACY_RESET_JOURNAL_FILE))).toBe(false);
      const again = openResetJournal(dir);
      expect(again.repeat("old-1")).toEqual(reply);
      expect(again.repeat("new-1")).toMatchObject({ ok: false });
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("keeps the last 512 resets, compacting the log as it grows", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cxlrc-journal-compact-"));
    try {
      const j = openResetJournal(dir);
      const reply = (opId: string) => ({ ok: true as const, opId, result: null });
      for (let i = 0; i < 1100; i++) {
        await j.begin(`c-${i}`, DEV_A);
        await j.end(`c-${i}`, reply(`c-${i}`));
      }
      await j.close();
      const lines = readFileSync(join(dir, RESET_JOURNAL_FILE), "utf8").trim().split("\n");
      // Compacted at 2,048 lines to the 512 kept, then 152 appended since.
      expect(lines.length).toBeLessThan(2048);
      const again = openResetJournal(dir);
      expect(again.repeat("c-1099")).toEqual(reply("c-1099"));
      expect(again.repeat("c-588")).toEqual(reply("c-588"));
      expect(again.repeat("c-100")).toBeNull();
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
