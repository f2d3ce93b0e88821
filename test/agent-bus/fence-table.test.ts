// The agent's fencing table on disk (services/agent/fence-table.ts): an append-only log with one line per raise,
// read back after a restart; a line torn by a crash is dropped; an earlier agent's single-file table is folded
// in and removed; the log is compacted to one line per entry as it grows. The table's behaviour on the bus
// (stale epochs refused, also after a restart) is fencing.test.ts.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FENCE_LOG_FILE, LEGACY_FENCE_FILE, openFenceTable } from "../../services/agent/fence-table.ts";
import type { Fence } from "../../shared/bus/agent-messages.ts";

const DEV = "0000:01:00.0";
const LEASE = "fence-unit";
const fence = (epoch: number, owner = "coord-a"): Fence => ({ epoch, owner, lease: LEASE });

const dirs: string[] = [];
function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), "cxlrc-fence-table-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const logLines = (dir: string) =>
  readFileSync(join(dir, FENCE_LOG_FILE), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { bdf: string; lease: string; epoch: number; owner: string });

describe("agent fencing table on disk", () => {
  it("appends one line per raise, none for the same epoch again, and reads them back after a restart", async () => {
    const dir = stateDir();
    const t = openFenceTable(dir);
    await t.admit(DEV, fence(5));
    await t.admit(DEV, fence(5));
    await t.admit(DEV, fence(9, "coord-b"));
    await Promise.all([
      t.admit("0000:02:00.0", fence(9, "coord-b")),
      t.admit("0000:03:00.0", fence(9, "coord-b")),
    ]);
    await expect(t.admit(DEV, fence(7))).rejects.toMatchObject({ kind: "stale-epoch" });
    await t.close();
    expect(logLines(dir).map((l) => `${l.bdf}@${l.epoch}`)).toEqual([
      `${DEV}@5`,
      `${DEV}@9`,
      "0000:02:00.0@9",
      "0000:03:00.0@9",
    ]);
    const again = openFenceTable(dir);
    expect(again.check(DEV, fence(8))).toMatchObject({
      kind: "stale-epoch",
      details: { epoch: 8, servedEpoch: 9, servedOwner: "coord-b" },
    });
    expect(again.check(DEV, fence(9, "coord-b"))).toBeNull();
    // Another lease of the same function has its own epochs.
    expect(again.check(DEV, { epoch: 1, owner: "coord-c", lease: "other" })).toBeNull();
    await again.close();
  });

  it("answers an operation at an epoch another one is raising only once the raise is stored", async () => {
    const dir = stateDir();
    const t = openFenceTable(dir);
    const order: string[] = [];
    const first = t.admit(DEV, fence(21)).then(() => order.push("first"));
    const second = t.admit(DEV, fence(21)).then(() => order.push("second"));
    await Promise.all([first, second]);
    expect(order).toEqual(["first", "second"]);
    // Stored once by the first; the second, at the same epoch, needed no line of its own.
    expect(logLines(dir).map((l) => l.epoch)).toEqual([21]);
    // A raise that fails fails the operations waiting for it.
    rmSync(dir, { recursive: true, force: true });
    const a = t.admit(DEV, fence(22));
    const b = t.admit(DEV, fence(22));
    await expect(a).rejects.toThrow(/cannot store/);
    await expect(b).rejects.toThrow(/cannot store/);
    await t.close();
  });

  it("drops a line torn by a crash mid-append and cuts it off before the next raise", async () => {
    const dir = stateDir();
    const path = join(dir, FENCE_LOG_FILE);
    const whole = JSON.stringify({
      bdf: DEV,
      lease: LEASE,
      epoch: 12,
      owner: "coord-a",
      at: "2026-12-07T00:00:00Z",
    });
    writeFileSync(path, `${whole}\n{"bdf":"${DEV}","lease":"${LEASE}","epo`);
    const t = openFenceTable(dir);
    expect(t.check(DEV, fence(11))).toMatchObject({ kind: "stale-epoch" });
    await t.admit(DEV, fence(13));
    await t.close();
    expect(logLines(dir).map((l) => l.epoch)).toEqual([12, 13]);
  });

  it("folds an earlier agent's single-file table in, removes it, and still refuses its older epochs", async () => {
    const dir = stateDir();
    writeFileSync(
      join(dir, LEGACY_FENCE_FILE),
      JSON.stringify({
        v: 1,
        devices: { [DEV]: { [LEASE]: { epoch: 40, owner: "coord-old", at: "2026-12-05T00:00:00Z" } } },
      }),
    );
    const t = openFenceTable(dir);
    expect(t.check(DEV, fence(39))).toMatchObject({
      kind: "stale-epoch",
      details: { servedOwner: "coord-old" },
    });
    await t.admit(DEV, fence(41));
    await t.close();
    expect(existsSync(join(dir, LEGACY_FENCE_FILE))).toBe(false);
    expect(logLines(dir).map((l) => `${l.owner}@${l.epoch}`)).toEqual(["coord-old@40", "coord-a@41"]);
    const again = openFenceTable(dir);
    expect(again.check(DEV, fence(40, "coord-old"))).toMatchObject({ kind: "stale-epoch" });
    await again.close();
  });

  it("compacts the log to one line per entry as it grows, keeping the highest epochs", async () => {
    const dir = stateDir();
    const t = openFenceTable(dir);
    for (let epoch = 1; epoch <= 1100; epoch++) await t.admit(DEV, fence(epoch));
    await t.admit("0000:02:00.0", fence(3));
    await t.close();
    const lines = logLines(dir);
    // Compacted at 1,024 lines beyond its one entry, then appended to since.
    expect(lines.length).toBeLessThan(1024);
    expect(lines.at(-1)).toMatchObject({ bdf: "0000:02:00.0", epoch: 3 });
    const again = openFenceTable(dir);
    expect(again.check(DEV, fence(1099))).toMatchObject({
      kind: "stale-epoch",
      details: { servedEpoch: 1100 },
    });
    expect(again.check("0000:02:00.0", fence(2))).toMatchObject({ kind: "stale-epoch" });
    await again.close();
  });

  it("a raise that cannot be stored fails naming the table, and its epoch is not served until it is stored", async () => {
    const dir = stateDir();
    const t = openFenceTable(dir);
    await t.admit(DEV, fence(3));
    rmSync(dir, { recursive: true, force: true });
    await expect(t.admit(DEV, fence(4))).rejects.toThrow(/cannot store the agent's fencing table/);
    // The same epoch again is not taken as served: it tries the write again (and fails while it cannot).
    await expect(t.admit(DEV, fence(4))).rejects.toThrow(/cannot store the agent's fencing table/);
    await expect(t.admit("0000:02:00.0", fence(4))).rejects.toThrow(/cannot store/);
    expect(t.check(DEV, fence(3))).toBeNull();
    mkdirSync(dir, { recursive: true });
    await t.admit(DEV, fence(4));
    await t.close();
    expect(logLines(dir).map((l) => `${l.bdf}@${l.epoch}`)).toEqual([`${DEV}@4`]);
  });
});
