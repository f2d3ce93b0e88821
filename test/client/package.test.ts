// The client as a user of the package gets it: built (npm run build; the suite's global setup), imported as "cxlrc/client" by plain
// Node without tsx, its types resolved by TypeScript, and the README's example (examples/reset-device.mjs,
// quoted in the README word for word) run against a real bus.
import { execFile } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { simpleHost } from "../../shared/sim/index.ts";
import { type RunningCoordinator, startWorld, type World } from "../coordinator/helpers.ts";

const run = promisify(execFile);
const REPO = new URL("../../", import.meta.url).pathname;
const EXAMPLE = join(REPO, "examples/reset-device.mjs");
const BDF = "0000:01:00.0";

describe("cxlrc/client as a package", () => {
  let dir: string;
  let w: World;
  let c: RunningCoordinator;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "cxlrc-client-user-"));
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(REPO, join(dir, "node_modules/cxlrc"));
    w = await startWorld([simpleHost({ name: "pkg1" })]);
    c = await w.coordinator();
  }, 60_000);
  afterAll(async () => {
    await c?.stop();
    await w?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the README quotes the example word for word", () => {
    const readme = readFileSync(join(REPO, "README.md"), "utf8");
    const code = readFileSync(EXAMPLE, "utf8");
    expect(readme).toContain(`\`\`\`js\n${code}\`\`\``);
  });

  it("plain node imports cxlrc/client (no tsx) and the example resets a device to verified", async () => {
    copyFileSync(EXAMPLE, join(dir, "reset-device.mjs"));
    const { stdout } = await run(process.execPath, ["reset-device.mjs", "pkg1", BDF], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "", CXLRC_NATS_URL: w.server.url },
      timeout: 30_000,
    });
    const lines = stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^client-\S+: plan$/);
    expect(lines).toContain("  resetting");
    expect(lines.at(-1)).toBe("verified");
    expect(w.sims.get("pkg1")!.counters(BDF).cxlReset).toBe(1);
  });

  it("TypeScript resolves the package's types (a caller's compile error is a real one)", async () => {
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          module: "nodenext",
          moduleResolution: "nodenext",
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: [],
        },
        files: ["use.ts"],
      }),
    );
    const tsc = join(REPO, "node_modules/typescript/bin/tsc");
    writeFileSync(
      join(dir, "use.ts"),
      `import { ClientError, type CxlrcClient, type Outcome } from "cxlrc/client";
export async function f(c: CxlrcClient): Promise<Outcome["kind"]> {
  const h = await c.reset({ host: "a", bdf: "0000:01:00.0", scope: "io", reason: "r" });
  return (await h.outcome).kind;
}
export const isDenied = (e: unknown) => e instanceof ClientError && e.kind === "permission-denied";
`,
    );
    await run(process.execPath, [tsc, "-p", dir]);
    writeFileSync(
      join(dir, "use.ts"),
      `import type { CxlrcClient } from "cxlrc/client";
export const g = (c: CxlrcClient) => c.reset({ host: "a", bdf: "0000:01:00.0", scope: "sideways", reason: "r" });
`,
    );
    const failed = await run(process.execPath, [tsc, "-p", dir]).catch((e: { stdout: string }) => e);
    expect((failed as { stdout: string }).stdout).toMatch(/sideways/);
  }, 60_000);
});
