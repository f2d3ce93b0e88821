// The conventions cxlrc's users know from their other tools (issue #21), with the real binary against a real
// nats-server, a coordinator and a simulated host: global flags before or after the command, NATS_URL, NATS CLI
// contexts and --creds, -V/--version, `breaker close`, `watch --request`, and one wording per error class.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientError, clientOn } from "../../client/index.ts";
import { COMMANDS, type CommandSpec } from "../../services/cli/command-table.ts";
import { encodeJson, makeEvent } from "../../shared/bus/codec.ts";
import { subjects } from "../../shared/bus/subjects.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { rootPortHost, startWorld, TEST_POLICY, until, type World } from "../coordinator/helpers.ts";
import { lines, ROOT, runCli, startCli } from "./run-cli.ts";

let world: World;
let url: string;
const dir = mkdtempSync(join(tmpdir(), "cxlrc-conventions-"));
const NOBODY = "nats://127.0.0.1:9";

beforeAll(async () => {
  world = await startWorld([rootPortHost("alpha", 3)]);
  url = world.server.url;
  // One failed outcome among the window's opens the breaker (the breaker test forges one).
  await world.coordinator({ policy: { ...TEST_POLICY, breakerMinSamples: 1, breakerFailureRatio: 0.01 } });
});
afterAll(async () => {
  await world?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A NATS CLI config dir (XDG_CONFIG_HOME) with these contexts, and optionally one selected. */
function natsConfig(contexts: Record<string, unknown>, selected?: string): string {
  const home = mkdtempSync(join(dir, "xdg-"));
  mkdirSync(join(home, "nats", "context"), { recursive: true });
  for (const [name, body] of Object.entries(contexts)) {
    const text = typeof body === "string" ? body : JSON.stringify(body, null, 2);
    writeFileSync(join(home, "nats", "context", `${name}.json`), text);
  }
  if (selected !== undefined) writeFileSync(join(home, "nats", "context.txt"), `${selected}\n`);
  return home;
}

/** Exit 2, exactly one line on stderr (no stack), nothing on stdout; the line. */
async function expectBadInput(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await runCli(args, { env });
  expect(r.code, `${args.join(" ")}\n${r.stderr}`).toBe(2);
  expect(lines(r.stderr), r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at |ENOENT|Error:/);
  expect(r.stdout).toBe("");
  return lines(r.stderr)[0]!;
}

describe("global flags anywhere", () => {
  it.each([
    [["--server", "URL", "status", "--json"]],
    [["status", "--server", "URL", "--json"]],
    [["--json", "status", "--server", "URL"]],
    [["--json", "--server=URL", "status"]],
    [["--server", "URL", "--json", "devices"]],
  ])("%j", async (template) => {
    const r = await runCli(template.map((a) => a.replace("URL", url)));
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toBeTruthy();
  });

  it("a global flag before a command with a sub-target reaches it", async () => {
    const r = await runCli(["--server", url, "--json", "breaker", "status"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: "closed" });
  });

  it("a command's own flag before the command is refused, naming it", async () => {
    expect(await expectBadInput(["--scope", "io", "reset"])).toBe(
      "cxlrc: unknown option --scope (see cxlrc --help)",
    );
  });
});

describe("where the server comes from: --server, CXLRC_NATS_URL, NATS_URL, the context", () => {
  it("NATS_URL is used when neither --server nor CXLRC_NATS_URL is given", async () => {
    const r = await runCli(["status", "--json"], { env: { NATS_URL: url } });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).breaker).toBeTruthy();
  });

  it("CXLRC_NATS_URL wins over NATS_URL, and --server over both", async () => {
    const env = { CXLRC_NATS_URL: NOBODY, NATS_URL: url };
    const r = await runCli(["status"], { env });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`cannot reach the NATS server at ${NOBODY}`);
    const flag = await runCli(["status", "--json", "--server", url], { env: { ...env, NATS_URL: NOBODY } });
    expect(flag.code, flag.stderr).toBe(0);
  });

  it("--context NAME reads $XDG_CONFIG_HOME/nats/context/NAME.json (its url; other fields ignored)", async () => {
    const xdg = natsConfig({ lab: { description: "test bus", url, nsc: "", jetstream_domain: "" } });
    const r = await runCli(["--context", "lab", "status", "--json"], { env: { XDG_CONFIG_HOME: xdg } });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).breaker).toBeTruthy();
    // NATS_CONTEXT names it too; the environment's URL wins over the context's.
    const byEnv = await runCli(["status", "--json"], { env: { XDG_CONFIG_HOME: xdg, NATS_CONTEXT: "lab" } });
    expect(byEnv.code, byEnv.stderr).toBe(0);
    const envWins = await runCli(["status"], {
      env: { XDG_CONFIG_HOME: xdg, NATS_CONTEXT: "lab", NATS_URL: NOBODY },
    });
    expect(envWins.code).toBe(3);
    expect(envWins.stderr).toContain(NOBODY);
  });

  it("without --context, the context selected in nats/context.txt is used", async () => {
    const xdg = natsConfig({ other: { url: NOBODY }, lab: { url } }, "lab");
    const r = await runCli(["devices", "--json"], { env: { XDG_CONFIG_HOME: xdg } });
    expect(r.code, r.stderr).toBe(0);
    const other = await runCli(["devices", "--context", "other"], { env: { XDG_CONFIG_HOME: xdg } });
    expect(other.code).toBe(3);
    expect(other.stderr).toContain(NOBODY);
  });

  describe("a server that wants a user and password", () => {
    let secure: NatsServerHandle;
    beforeAll(async () => {
      secure = await startNats({ jetstream: false, args: ["--user", "ops", "--pass", "s3cret"] });
    });
    afterAll(async () => {
      await secure?.stop();
    });

    it("gets them from the context's user and password", async () => {
      const xdg = natsConfig({ sec: { url: secure.url, user: "ops", password: "s3cret" } });
      const none = await runCli(["status", "--server", secure.url], { env: { XDG_CONFIG_HOME: xdg } });
      expect(none.code).toBe(3);
      expect(none.stderr).toMatch(/cannot reach the NATS server .*authorization/i);
      // Connected and authenticated: only the coordinator is missing on this bus.
      const r = await runCli(["status", "--context", "sec"], { env: { XDG_CONFIG_HOME: xdg } });
      expect(r.code).toBe(3);
      expect(lines(r.stderr)).toHaveLength(1);
      expect(r.stderr).toMatch(/^cxlrc status: no coordinator answers on cxlrc\.ctl\.status/);
    });
  });

  it("a missing or malformed context file is one line naming the file, exit 2", async () => {
    const xdg = natsConfig({ broken: '{ "url": "nats://x:4222", ' }, "gone");
    const file = (n: string) => join(xdg, "nats", "context", `${n}.json`);
    expect(await expectBadInput(["status"], { XDG_CONFIG_HOME: xdg })).toBe(
      `cxlrc status: cannot read ${file("gone")}: no such file`,
    );
    expect(await expectBadInput(["status", "--context", "broken"], { XDG_CONFIG_HOME: xdg })).toBe(
      `cxlrc status: ${file("broken")}: not valid JSON (line 1, column 27)`,
    );
    const bad = natsConfig({ num: { url: 4222 } });
    expect(await expectBadInput(["watch", "--context", "num"], { XDG_CONFIG_HOME: bad })).toBe(
      `cxlrc watch: ${join(bad, "nats", "context", "num.json")}: "url" must be a string`,
    );
  });

  it("--creds (and NATS_CREDS) with a missing file: one line naming it, exit 2, nothing sent", async () => {
    const missing = join(dir, "nope.creds");
    expect(await expectBadInput(["--creds", missing, "status"])).toBe(
      `cxlrc status: cannot read ${missing}: no such file`,
    );
    expect(await expectBadInput(["status"], { NATS_CREDS: missing })).toBe(
      `cxlrc status: cannot read ${missing}: no such file`,
    );
    // The flag wins over the variable.
    const other = join(dir, "other.creds");
    expect(await expectBadInput(["status", "--creds", other], { NATS_CREDS: missing })).toContain(other);
  });
});

describe("help and version", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };

  it.each([[["-V"]], [["--version"]], [["status", "--version"]], [["--server", "nats://x:1", "-V"]]])(
    "%j prints cxlrc <version of package.json>",
    async (args) => {
      const r = await runCli(args);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`cxlrc ${pkg.version}\n`);
    },
  );

  it("every credential variable is in the top-level help and in each bus command's help", async () => {
    const source = readFileSync(join(ROOT, "shared/bus/credentials.ts"), "utf8");
    const vars = [...new Set(source.match(/CXLRC_NATS_[A-Z_]+/g))];
    expect(vars.length).toBeGreaterThan(8);
    vars.push("CXLRC_NATS_URL", "NATS_URL", "NATS_CREDS", "NATS_CONTEXT", "--creds", "--context", "--server");
    const top = await runCli(["--help"]);
    expect(top.code).toBe(0);
    for (const v of [...vars, "-V, --version", "completion"]) expect(top.stdout, v).toContain(v);
    for (const cmd of ["reset", "plan", "status", "devices", "image", "release", "watch", "breaker"]) {
      const r = await runCli([cmd, "--help"]);
      expect(r.code).toBe(0);
      for (const v of vars) expect(r.stdout, `${cmd}: ${v}`).toContain(v);
    }
  });
});

describe("breaker close", () => {
  it("an open breaker refuses resets; breaker close (an operator) lets them in again", async () => {
    // An outcome the breaker counts, as the coordinator publishes it (test/coordinator/admission.test.ts).
    const failed = makeEvent({
      host: "alpha",
      bdf: "0000:03:00.0",
      kind: "failed",
      requestId: "conv-breaker-failed",
      source: "coordinator",
    });
    await world.js.publish(subjects.event("alpha", "0000:03:00.0", "failed"), encodeJson(failed));
    const breakerOf = async () =>
      (await clientOn(world.nc).status()).breaker as { status?: string } | undefined;
    expect(await until(async () => (await breakerOf())?.status === "open")).toBe(true);

    const st = await runCli(["breaker", "status", "--server", url]);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(/^breaker open since \S+ \(.+\): 1 of \d+ resets failed/);
    const refused = await runCli([
      "reset",
      "alpha",
      "0000:03:00.0",
      "--scope",
      "full",
      "--request-id",
      "conv-refused",
      "--server",
      url,
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toMatch(/^refused conv-refused: alpha 0000:03:00\.0: breaker-open: /m);
    // watch --request on a refused request: its outcome, exit 1.
    const w = await runCli(["watch", "--request", "conv-refused", "--server", url, "--timeout", "20s"]);
    expect(w.code, w.stderr).toBe(1);
    expect(lines(w.stdout).at(-1)).toMatch(/^refused alpha 0000:03:00\.0 .*breaker-open/);

    const closed = await runCli([
      "breaker",
      "close",
      "--operator",
      "sre-1",
      "--reason",
      "disk replaced",
      "--json",
      "--server",
      url,
    ]);
    expect(closed.code, closed.stderr).toBe(0);
    expect(JSON.parse(closed.stdout)).toMatchObject({
      breaker: { status: "closed", reason: null, closedBy: { operator: "sre-1" } },
    });
    const text = await runCli(["--server", url, "breaker", "status"]);
    expect(text.stdout).toMatch(/^breaker closed; last closed by sre-1 \S+( \S+)* ago$/m);
    const plan = await runCli(["plan", "alpha", "0000:03:00.0", "--scope", "full", "--server", url]);
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/pass\s+breaker/);
  });

  it("the client's breakerClose checks the request before sending it", async () => {
    const client = clientOn(world.nc);
    const e = await client.breakerClose({ operator: "", reason: "x" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ClientError);
    expect(e).toMatchObject({ kind: "bad-request", field: "operator" });
  });
});

describe("watch --request", () => {
  it("follows only that request, ends at its outcome (exit 0 when verified), --json last a result object", async () => {
    const id = "conv-watch-1";
    const w = startCli(["watch", "--request", id, "--json", "--server", url], { killAfterMs: 60_000 });
    // Another request at the same time: none of its events may show.
    const [mine, other] = await Promise.all([
      runCli(["reset", "alpha", "0000:01:00.0", "--scope", "full", "--request-id", id, "--server", url]),
      runCli([
        "reset",
        "alpha",
        "0000:02:00.0",
        "--scope",
        "full",
        "--request-id",
        "conv-watch-2",
        "--server",
        url,
      ]),
    ]);
    expect(mine.code, mine.stderr).toBe(0);
    expect(other.code, other.stderr).toBe(0);
    const r = await w.done;
    expect(r.code, r.stderr).toBe(0);
    const objs = lines(r.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    const result = objs.at(-1)!;
    expect(result).toMatchObject({ requestId: id, host: "alpha", bdf: "0000:01:00.0", outcome: "verified" });
    const events = objs.slice(0, -1);
    expect(events.map((e) => e.kind)).toContain("verified");
    expect(events.every((e) => e.requestId === id)).toBe(true);
  });

  it("a request that already ended: its stored events, the result line, at once", async () => {
    const r = await runCli(["--server", url, "watch", "--request", "conv-watch-1"], { killAfterMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(lines(r.stdout).at(-1)).toMatch(/^verified alpha 0000:01:00\.0 full\/\S+ in \S+ (ms|s)/);
  });

  it("--timeout before the outcome: exit 1 and one line saying the request goes on", async () => {
    const r = await runCli(["watch", "--request", "never-sent", "--timeout", "1s", "--server", url]);
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual([
      "cxlrc watch: still running after 1.0 s; never-sent goes on: cxlrc watch --request never-sent",
    ]);
  });
});

describe("one wording per error class", () => {
  it("a missing file reads `cannot read FILE: no such file` for every command that reads one", async () => {
    const f = join(dir, "missing.json");
    const want = (cmd: string) => `cxlrc ${cmd}: cannot read ${f}: no such file`;
    expect(await expectBadInput(["chaos", f])).toBe(want("chaos"));
    expect(await expectBadInput(["decode", f])).toBe(want("decode"));
    expect(
      await expectBadInput(["decode", join(ROOT, "docs/samples/type2-device.lspci"), "--component", f]),
    ).toBe(want("decode"));
    expect(await expectBadInput(["serve", "coordinator", "--config", f])).toBe(want("serve"));
    expect(await expectBadInput(["serve", "agent", "--creds", f, "--host", "a"])).toBe(want("serve"));
    expect(await expectBadInput(["status", "--creds", f])).toBe(want("status"));
    expect(await expectBadInput(["status"], { CXLRC_NATS_CREDS_FILE: f })).toBe(want("status"));
  });

  it("a file that cannot be written: `cannot write FILE: no such directory`", async () => {
    const scenario = join(dir, "s.json");
    writeFileSync(scenario, JSON.stringify({ name: "x", fleet: "default" }));
    const out = join(dir, "no-dir", "events.jsonl");
    expect(await expectBadInput(["chaos", scenario, "--events", out])).toBe(
      `cxlrc chaos: cannot write ${out}: no such directory`,
    );
  });

  it("chaos --sweep: a scenario without a fault on a step, or with --events, is refused before anything runs", async () => {
    const scenario = join(dir, "s-sweep.json");
    writeFileSync(scenario, JSON.stringify({ name: "x", fleet: "default" }));
    expect(await expectBadInput(["chaos", scenario, "--sweep"])).toBe(
      "cxlrc chaos: scenario x: --sweep moves the faults that fire on a step (on.step), and it has none",
    );
    expect(await expectBadInput(["chaos", scenario, "--sweep", "--events", join(dir, "e.jsonl")])).toBe(
      "cxlrc chaos: --events writes one run's events: not with --sweep",
    );
  });

  it("a config that is not JSON says where", async () => {
    const f = join(dir, "broken.json");
    writeFileSync(f, '{\n  "host": "alpha",\n}');
    expect(await expectBadInput(["serve", "agent", "--config", f])).toBe(
      `cxlrc serve: ${f}: not valid JSON (line 3, column 1)`,
    );
  });

  it.each(Object.keys(COMMANDS))(
    "%s: an unknown option reads `unknown option --jsn (see cxlrc CMD --help)`",
    async (cmd) => {
      const targets = Object.keys((COMMANDS as Record<string, CommandSpec>)[cmd]!.targets ?? {});
      const args = [cmd, ...targets.slice(0, 1), "--jsn"];
      expect(await expectBadInput(args)).toBe(`cxlrc ${cmd}: unknown option --jsn (see cxlrc ${cmd} --help)`);
    },
  );

  it("every duration flag takes units; a bad one reads the same everywhere", async () => {
    const hint = "a duration like 500ms, 90s, 10m, 1h or 2d";
    expect(
      await expectBadInput(["reset", "alpha", "0000:01:00.0", "--scope", "io", "--deadline", "soon"]),
    ).toContain(`bad --deadline "soon": ${hint}`);
    expect(
      await expectBadInput(["reset", "alpha", "0000:01:00.0", "--scope", "io", "--wait", "--timeout", "10"]),
    ).toContain(`bad --timeout "10": ${hint}`);
    expect(await expectBadInput(["watch", "--since", "a while"])).toContain(`bad --since "a while": ${hint}`);
    expect(await expectBadInput(["demo", "--pace", "slow"])).toContain(`bad --pace "slow": ${hint}`);
    // --deadline 1h is a time an hour from now: the coordinator plans it.
    const r = await runCli([
      "plan",
      "alpha",
      "0000:03:00.0",
      "--scope",
      "full",
      "--deadline",
      "1h",
      "--server",
      url,
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  });
});
