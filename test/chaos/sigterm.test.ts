// A CLI that spawns children (cxlrc chaos: nats-server and coordinator processes; cxlrc demo: nats-server)
// killed by SIGTERM takes them with it: Node's default death on a signal runs no 'exit' handler, so without
// shared/children.ts's signal handling they outlived it.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { type CliHandle, startCli, waitForOutput } from "../cli/run-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "cxlrc-sigterm-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Alive: /proc has it and it is not a zombie (a reparented zombie waits for an init that may never reap). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

const comm = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
};

/** Every descendant of pid, from /proc/<pid>/task/<tid>/children, recursively. */
function descendants(pid: number): number[] {
  const out: number[] = [];
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    let kids: number[] = [];
    try {
      kids = readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8")
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
    } catch {
      // the thread ended
    }
    for (const k of kids) out.push(k, ...descendants(k));
  }
  return out;
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGTERM the CLI; resolves with how it ended and how long that took. */
async function terminate(cli: CliHandle) {
  const t0 = performance.now();
  cli.child.kill("SIGTERM");
  const r = await cli.done;
  return { ...r, tookMs: performance.now() - t0 };
}

const alivePids = (pids: number[]) => pids.filter(alive).map((p) => `${p} (${comm(p)})`);

describe("SIGTERM to a CLI that spawned children", () => {
  it("cxlrc chaos: exits at once with 128+15 and leaves no nats-server or coordinator behind", async () => {
    const file = join(dir, "long.json");
    // Long enough that the signal lands mid-run: a request, a coordinator paused for most of the run.
    writeFileSync(
      file,
      JSON.stringify({
        name: "sigterm-mid-run",
        seed: 1,
        deadlineMs: 60_000,
        cluster: { size: 1 },
        coordinators: { count: 2, leaseTtlMs: 3000 },
        fleet: "default",
        requests: [{ at: 0, requestId: "st-1", host: "alpha", bdf: "0000:01:00.0", scope: "full" }],
        faults: [{ at: 0, action: "pause", target: { coordinator: 0 }, durationMs: 50_000 }],
      }),
    );
    const cli = startCli(["chaos", file, "--quiet"], { killAfterMs: 90_000 });
    const pid = cli.child.pid!;
    // Its children: the nats-server and both coordinators (node) up.
    const kids = await until(
      "a nats-server and two coordinators below the CLI",
      () => {
        const d = descendants(pid);
        const nats = d.filter((p) => comm(p).startsWith("nats-server"));
        const nodes = d.filter((p) => comm(p).startsWith("node"));
        return nats.length >= 1 && nodes.length >= 2 ? d : undefined;
      },
      45_000,
    );
    // Give the paused coordinator's pause a moment to land (a stopped child must be woken to die).
    await new Promise((r) => setTimeout(r, 500));
    const all = [...new Set([...kids, ...descendants(pid)])];

    const r = await terminate(cli);
    expect(r.code ?? r.signal, cli.stderr).toBe(143);
    expect(r.tookMs).toBeLessThan(8000);
    await until("every descendant gone", () => (alivePids(all).length === 0 ? true : undefined), 3000).catch(
      () => undefined,
    );
    expect(alivePids(all)).toEqual([]);
  }, 120_000);

  it("cxlrc demo --keep-running: stops its bus and exits; nothing it started stays", async () => {
    const cli = startCli(["demo", "--keep-running", "--no-install", "--pace", "0ms"], {
      killAfterMs: 90_000,
    });
    const pid = cli.child.pid!;
    await waitForOutput(cli, (e) => /the bus stays up at nats:\/\/127\.0\.0\.1:\d+/.test(e), "stderr");
    const all = descendants(pid);
    expect(all.some((p) => comm(p).startsWith("nats-server"))).toBe(true);

    const r = await terminate(cli);
    // The demo's own stop runs (keep-running ends with the summary's status).
    expect(r.code, cli.stderr).toBe(0);
    expect(r.tookMs).toBeLessThan(8000);
    expect(alivePids(all)).toEqual([]);
  }, 120_000);

  it("exitOnSignals: a child that ignores SIGTERM is SIGKILLed after the grace, clean-ups run, exit 128+15", async () => {
    const marker = join(dir, "cleaned");
    const script = join(dir, "spawner.ts");
    const children = fileURLToPath(new URL("../../shared/children.ts", import.meta.url));
    writeFileSync(
      script,
      `import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { exitOnSignals, killOnExit, onSignalExit } from ${JSON.stringify(children)};
exitOnSignals({ graceMs: 300 });
const stubborn = spawn(process.execPath, ["-e", "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"]);
killOnExit(stubborn);
onSignalExit(async () => writeFileSync(${JSON.stringify(marker)}, "done"));
console.log(\`ready \${stubborn.pid}\`);
setInterval(() => {}, 1000);
`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      out += s;
    });
    const done = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    const stubborn = await until("the spawner ready", () => /ready (\d+)/.exec(out)?.[1], 20_000).then(
      Number,
    );
    // Its SIGTERM handler must be installed before the signal counts as ignored.
    await new Promise((r) => setTimeout(r, 300));
    expect(alive(stubborn)).toBe(true);
    const t0 = performance.now();
    child.kill("SIGTERM");
    expect(await done).toBe(143);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(250);
    expect(alive(stubborn)).toBe(false);
    expect(existsSync(marker)).toBe(true);
  }, 30_000);
});
