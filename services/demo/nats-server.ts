// The demo's own nats-server: found on the machine (or installed with apt-get when run as root on
// Debian/Ubuntu), started on a random loopback port with JetStream in a fresh temp dir, and gone without a
// trace on stop(), on Ctrl-C and on process exit (child killed, temp dir removed).
import { spawn, spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { dieWithParent, killOnExit, removeOnExit } from "../../shared/children.ts";

export interface EmbeddedNats {
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  readonly pid: number;
  /** Temp dir holding the JetStream store (removed by stop()). */
  readonly dir: string;
  /** Stop the server (SIGTERM, SIGKILL after the grace time) and remove the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Resolves when the server process exits (for whatever reason). */
  readonly exited: Promise<void>;
}

/** nats-server is not installed and was not installed for us: the message says how. */
export class NatsServerMissing extends Error {
  override name = "NatsServerMissing";
}

export const INSTALL_HINT =
  "install it with `sudo apt-get install nats-server` (Debian/Ubuntu), or download it from " +
  "https://github.com/nats-io/nats-server/releases, or point NATS_SERVER_BIN at it";

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** $NATS_SERVER_BIN when set (nothing else is tried), else /usr/sbin, /usr/bin and $PATH. */
export function findNatsServer(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.NATS_SERVER_BIN) return executable(env.NATS_SERVER_BIN) ? env.NATS_SERVER_BIN : null;
  const candidates = [
    "/usr/sbin/nats-server",
    "/usr/bin/nats-server",
    "/usr/local/bin/nats-server",
    ...(env.PATH ?? "")
      .split(delimiter)
      .filter(Boolean)
      .map((d) => join(d, "nats-server")),
  ];
  return candidates.find(executable) ?? null;
}

/** Root on Debian or Ubuntu: the demo may install the package itself. */
export function canInstallWithApt(): boolean {
  return process.getuid?.() === 0 && existsSync("/etc/debian_version") && findOnPath("apt-get") !== null;
}

function findOnPath(name: string): string | null {
  for (const d of (process.env.PATH ?? "/usr/bin:/bin").split(delimiter)) {
    if (d && executable(join(d, name))) return join(d, name);
  }
  return null;
}

/**
 * The nats-server binary: found, or installed (`apt-get install -y nats-server`, output shown on stderr)
 * when allowed and possible; otherwise NatsServerMissing saying how to install it.
 */
export function ensureNatsServer(opts: { install: boolean; say: (line: string) => void }): string {
  const found = findNatsServer();
  if (found) return found;
  if (process.env.NATS_SERVER_BIN) {
    throw new NatsServerMissing(
      `NATS_SERVER_BIN=${process.env.NATS_SERVER_BIN} is not an executable file: unset it or ${INSTALL_HINT.replace(", or point NATS_SERVER_BIN at it", "")}`,
    );
  }
  if (!opts.install || !canInstallWithApt()) {
    throw new NatsServerMissing(`nats-server is not installed: ${INSTALL_HINT}`);
  }
  opts.say("nats-server is not installed; installing it: apt-get install -y nats-server");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const io = {
    stdio: ["ignore", process.stderr, process.stderr] as ["ignore", NodeJS.WriteStream, NodeJS.WriteStream],
    env,
  };
  let r = spawnSync("apt-get", ["install", "-y", "nats-server"], io);
  if (r.status !== 0) {
    // A fresh container often has no package lists yet.
    spawnSync("apt-get", ["update"], io);
    r = spawnSync("apt-get", ["install", "-y", "nats-server"], io);
  }
  const installed = findNatsServer();
  if (r.status !== 0 || !installed) {
    throw new NatsServerMissing(
      `apt-get install nats-server failed (exit ${String(r.status)}): ${INSTALL_HINT}`,
    );
  }
  return installed;
}

export interface StartOptions {
  bin: string;
  /** Default 10 s. */
  readyTimeoutMs?: number;
  /** SIGTERM → SIGKILL. Default 3 s. */
  stopGraceMs?: number;
  serverName?: string;
}

/** Start nats-server on a random loopback port (-p -1) and learn the port from its log. */
export async function startEmbeddedNats(opts: StartOptions): Promise<EmbeddedNats> {
  // Everything started here dies with this process, whatever way it ends.
  const dir = mkdtempSync(join(tmpdir(), "cxlrc-demo-"));
  const forgetDir = removeOnExit(dir);
  const args = [
    "-a",
    "127.0.0.1",
    "-p",
    "-1",
    "-js",
    "-sd",
    join(dir, "store"),
    "-n",
    opts.serverName ?? "cxlrc-demo",
  ];
  const child = spawn(...dieWithParent(opts.bin, args), { stdio: ["ignore", "pipe", "pipe"] });
  const forgetChild = killOnExit(child);
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", () => {
      forgetChild();
      resolve();
    });
  });
  const removeDir = () => {
    rmSync(dir, { recursive: true, force: true });
    forgetDir();
  };

  let log = "";
  const port = await new Promise<number>((resolve, reject) => {
    let found: number | null = null;
    const timer = setTimeout(
      () =>
        reject(
          new Error(
            `nats-server did not start within ${opts.readyTimeoutMs ?? 10_000} ms:\n${log.slice(-2000)}`,
          ),
        ),
      opts.readyTimeoutMs ?? 10_000,
    );
    const onData = (b: Buffer) => {
      log += b.toString("utf8");
      if (log.length > 32_768) log = log.slice(-32_768);
      const m = /Listening for client connections on [^\s]*:(\d+)/.exec(log);
      if (m) found = Number(m[1]);
      if (found !== null && /Server is ready/.test(log)) {
        clearTimeout(timer);
        resolve(found);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    void exited.then(() => {
      clearTimeout(timer);
      reject(
        new Error(
          `nats-server exited before it was ready (${opts.bin} ${args.join(" ")}):\n${log.slice(-2000)}`,
        ),
      );
    });
  }).catch(async (e: unknown) => {
    child.kill("SIGKILL");
    await exited;
    removeDir();
    throw e;
  });
  // Keep draining its output so the pipe never fills up.
  child.stdout?.resume();
  child.stderr?.resume();

  let stopping: Promise<void> | undefined;
  return {
    url: `nats://127.0.0.1:${port}`,
    pid: child.pid!,
    dir,
    exited,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM");
          const t = setTimeout(() => child.kill("SIGKILL"), opts.stopGraceMs ?? 3000);
          await exited;
          clearTimeout(t);
        }
        removeDir();
      })();
      return stopping;
    },
  };
}
