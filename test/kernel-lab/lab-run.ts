// One boot per test file: the scenario runs in beforeAll (all its checks in one guest run), each test then
// asserts on what one check read back. A check that failed in the guest, or never ran, fails its test with
// the guest's error and the console's tail. The VM is killed in afterAll whatever happened.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll } from "vitest";
import {
  describeRun,
  type LabHandle,
  type LabRun,
  PROJECT_DIR,
  startLabScenario,
} from "../../services/lab/lab.ts";
import type { LabScenario } from "../../services/lab/protocol.ts";

/** Preparing the kernel and initramfs (first run: apt download + unpack + build) and the boot itself. */
export const LAB_HOOK_TIMEOUT_MS = 420_000;

/**
 * Boots every scenario at once in one beforeAll (each VM is one TCG thread: on two cores they overlap) and
 * returns a getter per scenario. A scenario that could not run makes each of its tests fail with the reason.
 */
export function useLabRuns<S extends LabScenario>(scenarios: readonly S[]): Record<S, () => LabRun> {
  const runs = new Map<S, LabRun>();
  const failures = new Map<S, unknown>();
  const handles: LabHandle[] = [];
  beforeAll(async () => {
    await Promise.all(
      scenarios.map(async (scenario) => {
        const handle = startLabScenario(scenario);
        handles.push(handle);
        try {
          const run = await handle.done;
          runs.set(scenario, run);
          console.log(describeRun(run));
          if (!run.completed) {
            console.log(`guest did not finish; console tail:\n${run.boot.console.slice(-4000)}`);
          }
        } catch (e) {
          // Not rethrown: every test of the scenario then fails on its own with this message.
          failures.set(scenario, e);
          console.log(
            `kernel lab (${scenario}) could not run: ${e instanceof Error ? e.message : String(e)}`,
          );
        }
      }),
    );
  }, LAB_HOOK_TIMEOUT_MS);
  afterAll(() => {
    for (const h of handles) h.kill();
  });
  const getters = {} as Record<S, () => LabRun>;
  for (const scenario of scenarios) {
    getters[scenario] = () => {
      const run = runs.get(scenario);
      if (run) return run;
      const f = failures.get(scenario);
      throw new Error(
        `the kernel lab could not run ${scenario}: ${f instanceof Error ? f.message : String(f ?? "not started")}`,
      );
    };
  }
  return getters;
}

/** The data a check recorded; fails with the guest's error (and console tail) when it did not complete. */
export function checkData<T>(run: LabRun, name: string): T {
  const c = run.checks.get(name);
  const tail = () => run.boot.console.split("\n").slice(-40).join("\n");
  if (!c) {
    throw new Error(
      `check ${name} did not report (ran: ${[...run.checks.keys()].join(", ") || "none"}; timed out: ${run.boot.timedOut}); console:\n${tail()}`,
    );
  }
  if (!c.ok) {
    throw new Error(
      `check ${name} failed in the guest: ${c.error?.kind ?? c.error?.name}: ${c.error?.message}\n${JSON.stringify(c.error?.details ?? {})}\nrecorded: ${JSON.stringify(c.data).slice(0, 2000)}\nconsole:\n${tail()}`,
    );
  }
  return c.data as T;
}

/** `cxlrc decode FILE --json` on config bytes saved where sysfs keeps them (the CLI takes the BDF from the path). */
export async function cxlrcDecode(bdf: string, bytes: Buffer): Promise<unknown> {
  const dir = mkdtempSync(join(tmpdir(), "cxlrc-lab-decode-"));
  try {
    const file = join(dir, bdf, "config");
    mkdirSync(join(dir, bdf));
    writeFileSync(file, bytes);
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["bin/cxlrc.js", "decode", file, "--json"],
      {
        cwd: PROJECT_DIR,
        maxBuffer: 16 * 1024 * 1024,
      },
    );
    return JSON.parse(stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
