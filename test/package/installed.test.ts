// The package as an operator installs it: `npm pack` (only what runs), unpacked and installed with its lock
// file and no dev dependencies (what deploy/Dockerfile does), then run by plain node. The services and the CLI
// start and serve as a non-root user with the whole root file system read-only (temp dir and home included),
// only the agent's state directory writable: the conditions of the containers (read_only: true,
// readOnlyRootFilesystem: true), made here with a private mount namespace since no Docker engine runs.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "../../client/index.ts";
import { type NatsServerHandle, startNats } from "../../shared/natsd/server.ts";
import { sleep } from "../coordinator/helpers.ts";

const run = promisify(execFile);
const REPO = new URL("../../", import.meta.url).pathname;
const VERSION = (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string }).version;
const NOBODY = 65534;
const BDF = "0000:01:00.0";

interface Packed {
  files: Array<{ path: string }>;
  filename: string;
}

/** Run argv as user nobody, everything mounted read-only except `writable`, HOME and TMPDIR unwritable. */
function sandboxed(argv: string[], writable: string[], env: Record<string, string>): ChildProcess {
  const script = [
    ...writable.map((d) => `mount --bind '${d}' '${d}'`),
    "for m in $(findmnt -rno TARGET); do",
    `  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/pts|/dev/mqueue${writable.map((d) => `|${d}`).join("")}) ;;`,
    '  *) mount -o remount,bind,ro "$m" || exit 97 ;;',
    "  esac",
    "done",
    // Proof that the sandbox holds: the temp dir and the home directory cannot be written.
    "touch /tmp/cxlrc-probe 2>/dev/null && exit 98",
    `exec setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups --inh-caps=-all "$@"`,
  ].join("\n");
  return spawn("unshare", ["-m", "--propagation", "private", "sh", "-c", script, "sandbox", ...argv], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: "/nonexistent", TMPDIR: "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
}

function collect(child: ChildProcess): { out: () => string } {
  let out = "";
  child.stdout?.on("data", (b: Buffer) => {
    out += b.toString("utf8");
  });
  child.stderr?.on("data", (b: Buffer) => {
    out += b.toString("utf8");
  });
  return { out: () => out };
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((r) => child.once("exit", (code) => r(code)));
}

async function get(url: string): Promise<{ status: number; body: string } | null> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return { status: r.status, body: await r.text() };
  } catch {
    return null;
  }
}

async function waitFor(url: string, status: number, ms = 30_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if ((await get(url))?.status === status) return true;
    await sleep(100);
  }
  return false;
}

describe("the packed, installed package", () => {
  let dir: string;
  let pkg: string;
  let packed: Packed;
  let server: NatsServerHandle;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "cxlrc-installed-"));
    chmodSync(dir, 0o755);
    // dist/ is built by the suite's global setup; --ignore-scripts keeps prepare from building it again.
    const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", dir], {
      cwd: REPO,
    });
    packed = (JSON.parse(stdout) as Packed[])[0]!;
    pkg = join(dir, "cxlrc");
    mkdirSync(pkg);
    await run("tar", ["-xzf", join(dir, packed.filename), "-C", pkg, "--strip-components=1"]);
    copyFileSync(join(REPO, "package-lock.json"), join(pkg, "package-lock.json"));
    await run(
      "npm",
      ["ci", "--omit=dev", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund"],
      { cwd: pkg, timeout: 120_000 },
    );
    await run("chmod", ["-R", "a+rX", dir]);
    server = await startNats();
  }, 180_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("npm pack holds only what runs: bin, dist, README, LICENSE, CHANGELOG, package.json", () => {
    const paths = packed.files.map((f) => f.path).sort();
    const outside = paths.filter(
      (p) =>
        !p.startsWith("bin/") &&
        !p.startsWith("dist/") &&
        !["README.md", "LICENSE", "CHANGELOG.md", "package.json"].includes(p),
    );
    expect(outside).toEqual([]);
    const sources = paths.filter((p) => p.endsWith(".ts") && !p.endsWith(".d.ts"));
    expect(sources).toEqual([]);
    expect(paths).not.toContain("dist/.built");
    for (const p of [
      "bin/cxlrc.js",
      "LICENSE",
      "CHANGELOG.md",
      "dist/services/cli/main.js",
      "dist/services/coordinator/main.js",
      "dist/services/agent/main.js",
      "dist/services/chaos/coordinator-process.js",
      "dist/client/index.js",
      "dist/client/index.d.ts",
      "dist/shared/sim/fleets/default.json",
      "dist/services/chaos/scenarios/fleet-random.json",
    ])
      expect(paths).toContain(p);
    // No dev-only dependency at run time: tsx is not installed with --omit=dev.
    const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    expect(Object.keys(manifest.dependencies)).not.toContain("tsx");
  });

  it("plain node: the bin prints its version; a user's project imports cxlrc/client", async () => {
    const v = await run(process.execPath, [join(pkg, "bin/cxlrc.js"), "--version"], { env: { PATH: "" } });
    expect(v.stdout.trim()).toBe(`cxlrc ${VERSION}`);
    const user = join(dir, "user");
    mkdirSync(join(user, "node_modules"), { recursive: true });
    // A dependency installed in the user's node_modules, as npm install ./cxlrc-x.tgz would place it.
    await run("cp", ["-a", pkg, join(user, "node_modules/cxlrc")]);
    const { stdout } = await run(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        'const m = await import("cxlrc/client"); console.log(Object.keys(m).sort().join(" "));',
      ],
      { cwd: user, env: { PATH: "" } },
    );
    expect(stdout.trim().split(" ")).toEqual(expect.arrayContaining(["ClientError", "connect", "clientOn"]));
    // Only the client is exported: the services' internals are not an API.
    const denied = await run(
      process.execPath,
      ["--input-type=module", "-e", 'await import("cxlrc/dist/services/coordinator/service.js")'],
      { cwd: user, env: { PATH: "" } },
    ).catch((e: { stderr: string }) => e);
    expect((denied as { stderr: string }).stderr).toMatch(/ERR_PACKAGE_PATH_NOT_EXPORTED/);
  }, 60_000);

  it("coordinator, agent and CLI start and serve as nobody on a read-only root with no writable temp dir or home", async () => {
    const state = join(dir, "agent-state");
    mkdirSync(state);
    chownSync(state, NOBODY, NOBODY);
    const coordinatorPort = 19000 + Math.floor(Math.random() * 500);
    const agentPort = coordinatorPort + 500;
    const coordinatorConfig = join(dir, "coordinator.json");
    const agentConfig = join(dir, "agent.json");
    writeFileSync(
      coordinatorConfig,
      JSON.stringify({
        id: "ro-1",
        nats: { servers: [server.url] },
        hosts: ["alpha"],
        metrics: { port: coordinatorPort, host: "127.0.0.1" },
      }),
    );
    writeFileSync(
      agentConfig,
      JSON.stringify({
        host: "alpha",
        servers: [server.url],
        backend: "sim",
        simClock: "real",
        stateDir: state,
        metrics: { port: agentPort, host: "127.0.0.1" },
      }),
    );
    chmodSync(coordinatorConfig, 0o644);
    chmodSync(agentConfig, 0o644);
    const bin = join(pkg, "bin/cxlrc.js");
    const coordinator = sandboxed(
      [process.execPath, bin, "serve", "coordinator", "--config", coordinatorConfig],
      [],
      {},
    );
    const agent = sandboxed([process.execPath, bin, "serve", "agent", "--config", agentConfig], [state], {});
    children.push(coordinator, agent);
    const logs = { coordinator: collect(coordinator), agent: collect(agent) };

    const coordinatorUp = await waitFor(`http://127.0.0.1:${coordinatorPort}/readyz`, 200);
    const agentUp = await waitFor(`http://127.0.0.1:${agentPort}/readyz`, 200);
    expect({
      coordinatorUp,
      agentUp,
      logs: coordinatorUp && agentUp ? "" : logs.coordinator.out() + logs.agent.out(),
    }).toEqual({ coordinatorUp: true, agentUp: true, logs: "" });
    expect((await get(`http://127.0.0.1:${coordinatorPort}/healthz`))?.status).toBe(200);
    expect((await get(`http://127.0.0.1:${agentPort}/metrics`))?.body).toMatch(/^cxlrc_build_info\{/m);

    // A full reset end to end: the agent writes its fencing table in the one writable path.
    const client = await connect({ servers: server.url });
    try {
      const h = await client.reset({ host: "alpha", bdf: BDF, scope: "full", reason: "read-only root" });
      expect((await h.outcome).kind).toBe("verified");
    } finally {
      await client.close();
    }

    // The CLI under the same conditions (it used to die creating a tsx cache in the temp dir).
    const cli = sandboxed([process.execPath, bin, "status", "--server", server.url], [], {});
    const cliOut = collect(cli);
    expect(await exited(cli)).toBe(0);
    expect(cliOut.out()).toMatch(/alpha/);

    coordinator.kill("SIGTERM");
    agent.kill("SIGTERM");
    expect(await exited(coordinator)).toBe(0);
    expect(await exited(agent)).toBe(0);
    const all = logs.coordinator.out() + logs.agent.out() + cliOut.out();
    expect(all).not.toMatch(/EACCES|EROFS|read-only file system/i);
  }, 90_000);
});
