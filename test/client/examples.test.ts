// The examples in examples/ as a user runs them: plain Node against the built package ("cxlrc/client"), on a
// demo bus (nats-server, a coordinator, simulated agents). The fleet controller resets every device of a host
// in batches and waits out a cooldown refusal's retryAfterMs; the SRE follower prints each outcome with its
// phases.
import { execFile, spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientOn } from "../../client/index.ts";
import { generateFleet } from "../../services/chaos/scenario.ts";
import { type RunningCoordinator, startWorld, type World } from "../coordinator/helpers.ts";

const run = promisify(execFile);
const REPO = new URL("../../", import.meta.url).pathname;
const fleet = generateFleet({
  hosts: 2,
  devicesPerHost: 3,
  prefix: "ex",
  noFlrEvery: 0,
  twoDecodersEvery: 0,
  driver: null,
});

describe("examples on a demo bus", () => {
  let dir: string;
  let w: World;
  let c: RunningCoordinator;
  const env = () => ({ PATH: process.env.PATH ?? "", CXLRC_NATS_URL: w.server.url });
  beforeAll(async () => {
    await run(process.execPath, [
      join(REPO, "node_modules/typescript/bin/tsc"),
      "-p",
      join(REPO, "tsconfig.build.json"),
    ]);
    dir = mkdtempSync(join(tmpdir(), "cxlrc-examples-"));
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(REPO, join(dir, "node_modules/cxlrc"));
    for (const f of ["fleet-controller.mjs", "sre-outcomes.mjs"])
      copyFileSync(join(REPO, "examples", f), join(dir, f));
    w = await startWorld(fleet.hosts);
    // One reset per device per 1.5 s: a second one is refused "cooldown" with retryAfterMs.
    c = await w.coordinator({
      hosts: ["ex1", "ex2"],
      policy: { maxAttemptsPerWindow: 1, attemptWindowMs: 1500, cooldownMs: 1500 },
    });
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
    await w?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the fleet controller resets a host in batches, waits out a cooldown, and sums up", async () => {
    // The SRE follower runs alongside, until it printed four outcomes.
    const sre = spawn(process.execPath, ["sre-outcomes.mjs", "--count", "4"], { cwd: dir, env: env() });
    let sreOut = "";
    sre.stdout.on("data", (b: Buffer) => {
      sreOut += b.toString();
    });
    const sreDone = new Promise<number>((resolve) => sre.on("exit", (code) => resolve(code ?? -1)));
    await new Promise((r) => setTimeout(r, 500)); // its subscription is in place
    // One device was reset just now: its budget is spent for 1.5 s.
    const first = fleet.hosts[0]!.devices[0]!.bdf;
    const pre = await clientOn(w.nc).reset({
      host: "ex1",
      bdf: first,
      scope: "full",
      reason: "spend the budget",
    });
    expect((await pre.outcome).kind).toBe("verified");

    const { stdout } = await run(process.execPath, ["fleet-controller.mjs", "ex1", "--batch", "2"], {
      cwd: dir,
      env: env(),
      timeout: 60_000,
    });
    expect(stdout).toMatch(new RegExp(`${first}: refused cooldown, trying again in \\d+ ms`));
    expect(stdout.trim().split("\n").at(-1)).toBe("summary ex1: 3 device(s), 3 verified");
    for (const d of fleet.hosts[0]!.devices) {
      expect(w.sims.get("ex1")!.counters(d.bdf).cxlReset).toBe(d.bdf === first ? 2 : 1);
    }

    expect(await sreDone).toBe(0);
    const lines = sreOut.trim().split("\n");
    expect(lines).toHaveLength(4);
    for (const l of lines) expect(l).toMatch(/ ex1 0000:0\d:00\.0 \S+ (verified|refused) in /);
    expect(lines.some((l) => / verified in \d+ ms: .*resetting \d+ ms/.test(l))).toBe(true);
  }, 90_000);
});
