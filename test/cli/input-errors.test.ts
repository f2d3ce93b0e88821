// Bad input is one line on stderr and exit 2; an unreachable bus is one line naming the URL and exit 3.
// Nothing here needs a running server: input is checked before anything connects.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { lines, runCli } from "./run-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "cxlrc-cli-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** Exit 2 with exactly one line on stderr (no stack trace), nothing on stdout. */
async function expectUsage(args: string[], mentions: RegExp): Promise<string> {
  const r = await runCli(args);
  expect(r.code, `${args.join(" ")}\n${r.stderr}`).toBe(2);
  expect(lines(r.stderr)).toHaveLength(1);
  expect(r.stderr).toMatch(mentions);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stdout).toBe("");
  return r.stderr;
}

describe.concurrent("bad flags and arguments: exit 2, one line", () => {
  it("an unknown flag is named", async () => {
    await expectUsage(["reset", "alpha", "0000:01:00.0", "--scope", "io", "--frobnicate"], /--frobnicate/);
  });

  it("a missing HOST (and BDF) is named", async () => {
    await expectUsage(["reset", "--scope", "io"], /missing HOST and BDF/);
    await expectUsage(["plan", "alpha", "--scope", "io"], /missing BDF/);
  });

  it("a bad BDF is named", async () => {
    await expectUsage(["reset", "alpha", "0000:zz:00.0", "--scope", "io"], /bad BDF "0000:zz:00.0"/);
    await expectUsage(["image", "show", "alpha", "1:2:3"], /bad BDF/);
  });

  it("a bad or missing --scope is named", async () => {
    await expectUsage(["reset", "alpha", "0000:01:00.0", "--scope", "medium"], /bad --scope "medium"/);
    await expectUsage(["reset", "alpha", "0000:01:00.0"], /missing --scope/);
  });

  it("a bad host name, --since, --server and an unknown command", async () => {
    await expectUsage(["watch", "--host", "no.dots"], /bad HOST "no.dots"/);
    await expectUsage(["watch", "--since", "yesterday"], /bad --since "yesterday"/);
    await expectUsage(["status", "--server", "http://x:1"], /bad server URL/);
    await expectUsage(["frobnicate"], /unknown command "frobnicate"/);
  });
});

describe.concurrent("serve: bad config files are named, exit 2, before anything connects", () => {
  it("an unknown key in the agent config is named", async () => {
    const p = file("agent.json", JSON.stringify({ host: "alpha", backend: "sim", heartbeatMss: 10 }));
    await expectUsage(["serve", "agent", "--config", p], /unknown field "heartbeatMss"/);
  });

  it("an unknown key in the coordinator config is named", async () => {
    const p = file("coord.json", JSON.stringify({ id: "c1", leaseTtl: 5000 }));
    await expectUsage(["serve", "coordinator", "--config", p], /unknown field "leaseTtl"/);
  });

  it("a bad value names its key", async () => {
    const p = file("agent-bad.json", JSON.stringify({ host: "alpha", backend: "floppy" }));
    await expectUsage(["serve", "agent", "--config", p], /backend/);
  });

  it("invalid JSON names the file", async () => {
    const p = file("broken.json", '{ "host": "alpha", ');
    await expectUsage(["serve", "agent", "--config", p], /broken\.json: not valid JSON/);
  });

  it("a missing file names the file", async () => {
    const p = join(dir, "nope.json");
    await expectUsage(["serve", "coordinator", "--config", p], /nope\.json: no such file/);
  });

  it("an unknown service", async () => {
    await expectUsage(["serve", "broker"], /unknown service "broker"/);
  });
});

describe.concurrent("bus unavailable: exit 3, one line naming the URL", () => {
  // A port nothing listens on: bind-free ports below 1024 are refused at once on loopback.
  const url = "nats://127.0.0.1:9";

  it.each([
    [["status", "--server", url]],
    [["reset", "alpha", "0000:01:00.0", "--scope", "io", "--server", url]],
    [["watch", "--server", url]],
  ])("%j", async (args) => {
    const r = await runCli(args);
    expect(r.code).toBe(3);
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toContain("nats://127.0.0.1:9");
    expect(r.stderr).toMatch(/cannot reach the NATS server/);
  });

  it("CXLRC_NATS_URL is used when --server is not given", async () => {
    const r = await runCli(["devices"], { env: { CXLRC_NATS_URL: url } });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("nats://127.0.0.1:9");
  });
});
