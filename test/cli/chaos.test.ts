// `cxlrc chaos` as a user runs it: the real binary, its own bus (one nats-server here), a coordinator killed
// mid-reset and restarted; the report's figures and the exit code. A bad scenario file is named, exit 2.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { lines, runCli } from "./run-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "cxlrc-chaos-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function scenario(name: string, body: unknown): string {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(body, null, 2));
  return p;
}

const SMALL = {
  name: "cli-kill-mid-reset",
  seed: 3,
  deadlineMs: 40_000,
  cluster: { size: 1 },
  coordinators: { count: 2, leaseTtlMs: 3000 },
  fleet: "default",
  requests: [{ requestId: "cli-1", host: "alpha", bdf: "0000:01:00.0", scope: "full" }],
  faults: [
    {
      name: "kill the driver mid-reset",
      on: { step: "resetting", point: "after", requestId: "cli-1" },
      action: "kill",
      target: { coordinator: "driver" },
      durationMs: 500,
    },
  ],
};

describe("cxlrc chaos", () => {
  it("runs a scenario, kills a coordinator mid-reset, reports violations=0 (JSON) and exits 0", async () => {
    const events = join(dir, "events.jsonl");
    const r = await runCli(["chaos", scenario("small.json", SMALL), "--json", "--events", events], {
      killAfterMs: 120_000,
    });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const report = JSON.parse(r.stdout) as {
      scenario: string;
      ok: boolean;
      violations: unknown[];
      requests: { sent: number; outcomes: Record<string, number> };
      resets: { total: number };
      faults: { injected: number; unfired: string[] };
    };
    expect(report).toMatchObject({ scenario: "cli-kill-mid-reset", ok: true, violations: [] });
    expect(report.requests.sent).toBe(1);
    expect(report.requests.outcomes).toEqual({ verified: 1 });
    expect(report.resets.total).toBe(1);
    expect(report.faults.unfired).toEqual([]);
    expect(report.faults.injected).toBeGreaterThanOrEqual(1);
    // The events file holds the whole run: the reset was taken over and verified once.
    const all = lines(readFileSync(events, "utf8")).map(
      (l) => JSON.parse(l) as { kind: string; requestId?: string },
    );
    const mine = all.filter((e) => e.requestId === "cli-1");
    expect(mine.filter((e) => e.kind === "verified")).toHaveLength(1);
    expect(mine.some((e) => e.kind === "recovered")).toBe(true);
  }, 150_000);

  it("a bad scenario file is named with its bad key: exit 2, one line", async () => {
    const bad = scenario("bad.json", { ...SMALL, faults: [{ ...SMALL.faults[0], action: "explode" }] });
    const r = await runCli(["chaos", bad]);
    expect(r.code).toBe(2);
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/faults\[0\]\.action: Invalid option/);
    expect(r.stdout).toBe("");
  });
});
