// `cxlrc serve ui`: the fleet page as a process, from the built CLI (its page assets come with dist/), on a
// world with a coordinator: the page and its API answer, a bad flag or config is one line and exit 2, SIGTERM
// stops it (exit 0).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { simpleHost } from "../../shared/sim/index.ts";
import { type RunningCoordinator, startWorld, type World } from "../coordinator/helpers.ts";
import { runCli, startCli, waitForOutput } from "./run-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "cxlrc-serve-ui-"));
let w: World;
let c: RunningCoordinator;

beforeAll(async () => {
  w = await startWorld([simpleHost({ name: "ui1" })]);
  c = await w.coordinator({ hosts: ["ui1"] });
}, 30_000);
afterAll(async () => {
  await c?.stop();
  await w?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("cxlrc serve ui", () => {
  it("serves the page and the fleet from the bus; SIGTERM exits 0", async () => {
    const ui = startCli([
      "serve",
      "ui",
      "--listen",
      "127.0.0.1:0",
      "--server",
      w.server.url,
      "--log-level",
      "warn",
    ]);
    const err = await waitForOutput(
      ui,
      (e) => /the fleet page is at http:\/\/127\.0\.0\.1:\d+\//.test(e),
      "stderr",
    );
    const url = /the fleet page is at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(err)![1]!;
    const page = await fetch(url);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toMatch(/default-src 'self'/);
    expect(await page.text()).toMatch(/<script[^>]+src="[^"]+"/);
    const script = await fetch(new URL("assets/app.js", url));
    expect(script.status).toBe(200);
    let devices: Array<{ host: string; bdf: string }> = [];
    for (let i = 0; i < 100 && devices.length === 0; i++) {
      devices = ((await (await fetch(new URL("api/fleet", url))).json()) as { devices: typeof devices })
        .devices;
      if (devices.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(devices.map((d) => `${d.host} ${d.bdf}`)).toContain("ui1 0000:01:00.0");
    ui.child.kill("SIGTERM");
    expect((await ui.done).code).toBe(0);
  });

  it("a bad --listen, a bad config key: one line naming it, exit 2", async () => {
    const bad = await runCli(["serve", "ui", "--listen", "nowhere", "--server", w.server.url]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toMatch(/--listen "nowhere"/);
    const file = join(dir, "ui.json");
    writeFileSync(file, JSON.stringify({ listen: { host: "127.0.0.1", port: 0 }, histroyWindowMs: 5 }));
    const key = await runCli(["serve", "ui", "--config", file, "--server", w.server.url]);
    expect(key.code).toBe(2);
    expect(key.stderr).toMatch(/histroyWindowMs/);
    expect(key.stderr.trim().split("\n")).toHaveLength(1);
  });
});
