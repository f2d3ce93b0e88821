// Spawns a real nats-server for tests, benchmarks and `cxlrc chaos`: free loopback port, JetStream in a
// temp store dir, readiness by reading the server's INFO greeting, and stop/restart/kill/pause/resume.
// Every spawned server is SIGKILLed when the test process exits (shared/children.ts), also when it is killed.
//
// Built around one `spawnServer(spec)` so a later `startCluster(n)` only has to compute n specs (ports,
// cluster block in `config`) and call it n times.
import { type ChildProcess, spawn } from "node:child_process";
import {
  accessSync,
  constants,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { dieWithParent, killOnExit, removeOnExit } from "../children.ts";
import { retry } from "../retry.ts";

export interface StartNatsOptions {
  /** Enable JetStream (-js). Default true. */
  jetstream?: boolean;
  /** JetStream store dir; default a fresh temp dir (removed by stop() unless keepStoreDir). */
  storeDir?: string;
  /** Client port; default a free loopback port (retried on EADDRINUSE). */
  port?: number;
  /** Extra command-line arguments, appended last. */
  args?: string[];
  /** Config file text: written to the temp dir and passed with -c (command-line flags still win). */
  config?: string;
  /** Server name (-n). Default "cxlrc-test-<port>". */
  serverName?: string;
  /** Keep the temp dir (store + config + log) after stop(). Default false. */
  keepStoreDir?: boolean;
  /** How long to wait for the server to accept connections. Default 10 s. */
  readyTimeoutMs?: number;
  /** SIGTERM → SIGKILL grace period in stop(). Default 5 s. */
  stopGraceMs?: number;
}

export interface NatsServerHandle {
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** JetStream store dir ("" when JetStream is off and none was given). */
  readonly storeDir: string;
  /** Process id of the current server process (changes on restart), or null when not running. */
  readonly pid: number | null;
  readonly running: boolean;
  /** The last ~64 KiB of the server's log output (stdout + stderr), across restarts. */
  logs(): string;
  /** SIGTERM, then SIGKILL after the grace period; removes the temp dir unless kept. Idempotent. */
  stop(): Promise<void>;
  /**
   * Stop (graceful SIGTERM, or SIGKILL with graceful: false) if running, run `whileDown` (an outage
   * scenario) if given, then start again on the same port and store: JetStream data survives.
   */
  restart(opts?: { graceful?: boolean; whileDown?: () => Promise<void> }): Promise<void>;
  /** SIGKILL and wait for the exit (the store is kept: restart() recovers it). */
  kill(): Promise<void>;
  /**
   * SIGSTOP: the process stays, sockets stay open, nothing answers. Resolves once every thread of the
   * server reads as stopped in /proc (a loaded machine can take a few ms to stop them all).
   */
  pause(): Promise<void>;
  /** SIGCONT. */
  resume(): void;
}

let cachedBinary: string | undefined;

/** Path of nats-server: $NATS_SERVER_BIN, /usr/sbin/nats-server, or the first one on PATH. */
export function natsServerBinary(): string {
  if (cachedBinary) return cachedBinary;
  const candidates = [
    process.env.NATS_SERVER_BIN,
    "/usr/sbin/nats-server",
    "/usr/bin/nats-server",
    ...(process.env.PATH ?? "").split(delimiter).map((d) => (d ? join(d, "nats-server") : undefined)),
  ].filter((c): c is string => typeof c === "string" && c.length > 0);
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      cachedBinary = c;
      return c;
    } catch {
      // try the next one
    }
  }
  throw new Error(
    "nats-server not found (looked at $NATS_SERVER_BIN, /usr/sbin, /usr/bin and PATH): " +
      "install it with `apt-get install nats-server` or set NATS_SERVER_BIN",
  );
}

/** A loopback port that was free a moment ago (bind :0, read the port, close). */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("could not get a free port"))));
    });
  });
}

/** Resolves when a TCP connect to 127.0.0.1:port gets the NATS "INFO {...}" greeting line. */
function probeInfo(port: number, timeoutMs: number): Promise<Record<string, unknown> | null> {
  return new Promise((resolve) => {
    let buf = "";
    let done = false;
    const sock = createConnection({ host: "127.0.0.1", port });
    const finish = (v: Record<string, unknown> | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf("\r\n");
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      if (!line.startsWith("INFO ")) return finish(null);
      try {
        finish(JSON.parse(line.slice(5)) as Record<string, unknown>);
      } catch {
        finish(null);
      }
    });
    sock.on("error", () => finish(null));
    sock.on("close", () => finish(null));
  });
}

/** Wait until every thread of pid is in state T (stopped) per /proc; no-op where /proc is missing. */
async function untilStopped(pid: number, maxMs: number): Promise<void> {
  const end = Date.now() + maxMs;
  while (Date.now() < end) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      return;
    }
    const states = tids.map((t) => {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8");
        return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
      } catch {
        return "T";
      }
    });
    if (states.every((st) => st === "T" || st === "t")) return;
    await sleep(1);
  }
  throw new Error(`nats-server ${pid} did not stop within ${maxMs} ms of SIGSTOP`);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Everything needed to (re)spawn one server process. Cluster support computes several of these. */
export interface ServerSpec {
  port: number;
  args: string[];
  readyTimeoutMs: number;
  /** Called with each chunk of log output. */
  onLog: (text: string) => void;
  /** Added to this process's environment for the server (a config's $VARIABLES). */
  env?: Record<string, string>;
}

export interface Spawned {
  child: ChildProcess;
  exited: Promise<number | string | null>;
}

export class AddressInUse extends Error {}

/** Between tries of a port whose old listener lingers after its process exited (about 100 ms a try). */
export const PORT_REUSE_BACKOFF = { baseMs: 50, maxMs: 200, jitter: "equal" } as const;

/** Spawn one nats-server and wait until it greets on its client port. */
export async function spawnServer(spec: ServerSpec): Promise<Spawned> {
  const bin = natsServerBinary();
  const child = spawn(...dieWithParent(bin, spec.args), {
    stdio: ["ignore", "pipe", "pipe"],
    ...(spec.env ? { env: { ...process.env, ...spec.env } } : {}),
  });
  const forget = killOnExit(child);
  let out = "";
  const onData = (b: Buffer) => {
    const s = b.toString("utf8");
    if (out.length < 16_384) out += s;
    spec.onLog(s);
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  let exitCode: number | string | null | undefined;
  const exited = new Promise<number | string | null>((resolve) => {
    child.on("exit", (code, signal) => {
      exitCode = code ?? signal;
      resolve(exitCode);
    });
    child.on("error", (err) => {
      forget();
      exitCode = `spawn error: ${err.message}`;
      resolve(exitCode);
    });
  });
  const deadline = Date.now() + spec.readyTimeoutMs;
  let delay = 5;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) break;
    const info = await probeInfo(spec.port, 500);
    if (info && exitCode === undefined) return { child, exited };
    await sleep(delay);
    delay = Math.min(100, delay * 2);
  }
  if (exitCode === undefined) {
    child.kill("SIGKILL");
    await exited;
    throw new Error(
      `nats-server on port ${spec.port} did not accept connections within ${spec.readyTimeoutMs} ms; ` +
        `args: ${spec.args.join(" ")}; log:\n${out.slice(-4000)}`,
    );
  }
  if (/address already in use/i.test(out)) {
    throw new AddressInUse(`port ${spec.port} is already in use`);
  }
  throw new Error(
    `nats-server exited (${String(exitCode)}) before it was ready; args: ${spec.args.join(" ")}; log:\n${out.slice(-4000)}`,
  );
}

/**
 * Spawn a server on `count` free loopback ports (client, then monitoring, cluster...), picked afresh when
 * another process took one between the pick and the listen.
 */
export async function spawnOnFreePorts(
  count: number,
  spec: (ports: number[]) => ServerSpec,
): Promise<{ spawned: Spawned; ports: number[] }> {
  return retry(
    async () => {
      const ports: number[] = [];
      for (let i = 0; i < count; i++) ports.push(await findFreePort());
      return { spawned: await spawnServer(spec(ports)), ports };
    },
    { attempts: 6, ...PORT_REUSE_BACKOFF, retryIf: (e) => e instanceof AddressInUse },
  );
}

/** Start one nats-server on a free loopback port. */
export async function startNats(opts: StartNatsOptions = {}): Promise<NatsServerHandle> {
  const jetstream = opts.jetstream ?? true;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 10_000;
  const stopGraceMs = opts.stopGraceMs ?? 5_000;
  const workDir = mkdtempSync(join(tmpdir(), "cxlrc-nats-"));
  const forgetDir = removeOnExit(workDir);
  const storeDir = opts.storeDir ?? (jetstream ? join(workDir, "store") : "");
  let configPath: string | undefined;
  if (opts.config !== undefined) {
    configPath = join(workDir, "server.conf");
    writeFileSync(configPath, opts.config);
  }
  let logTail = "";
  const onLog = (s: string) => {
    logTail += s;
    if (logTail.length > 65_536) logTail = logTail.slice(-65_536);
  };
  const argsFor = (port: number): string[] => [
    ...(configPath ? ["-c", configPath] : []),
    "-a",
    "127.0.0.1",
    "-p",
    String(port),
    "-n",
    opts.serverName ?? `cxlrc-test-${port}`,
    ...(jetstream ? ["-js"] : []),
    ...(storeDir ? ["-sd", storeDir] : []),
    ...(opts.args ?? []),
  ];

  const specFor = (port: number): ServerSpec => ({ port, args: argsFor(port), readyTimeoutMs, onLog });
  let port = opts.port ?? 0;
  let current: Spawned | undefined;
  try {
    if (opts.port) current = await spawnServer(specFor(port));
    else {
      const fresh = await spawnOnFreePorts(1, ([p]) => specFor(p!));
      current = fresh.spawned;
      port = fresh.ports[0]!;
    }
  } catch (e) {
    cleanupDir();
    throw e;
  }

  let stopped = false;
  function cleanupDir(): void {
    if (opts.keepStoreDir) return;
    rmSync(workDir, { recursive: true, force: true });
    forgetDir();
  }

  async function terminate(graceful: boolean): Promise<void> {
    const s = current;
    if (!s) return;
    current = undefined;
    if (s.child.exitCode !== null || s.child.signalCode !== null) return;
    s.child.kill("SIGCONT"); // a paused server cannot act on SIGTERM
    if (graceful) {
      s.child.kill("SIGTERM");
      const timer = setTimeout(() => s.child.kill("SIGKILL"), stopGraceMs);
      await s.exited;
      clearTimeout(timer);
    } else {
      s.child.kill("SIGKILL");
      await s.exited;
    }
  }

  const handle: NatsServerHandle = {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    get pid() {
      return current?.child.pid ?? null;
    },
    get running() {
      return current !== undefined;
    },
    logs: () => logTail,
    async stop() {
      if (stopped) return;
      stopped = true;
      await terminate(true);
      cleanupDir();
    },
    async restart(ropts) {
      if (stopped) throw new Error("restart() after stop(): the store dir is gone");
      await terminate(ropts?.graceful ?? true);
      if (ropts?.whileDown) await ropts.whileDown();
      // The old listener can linger for a moment after exit; retry the same port briefly.
      current = await retry(() => spawnServer({ port, args: argsFor(port), readyTimeoutMs, onLog }), {
        attempts: 21,
        ...PORT_REUSE_BACKOFF,
        retryIf: (e) => e instanceof AddressInUse,
      });
    },
    async kill() {
      await terminate(false);
    },
    async pause() {
      const pid = current?.child.pid;
      if (!current || pid === undefined) return;
      current.child.kill("SIGSTOP");
      await untilStopped(pid, 2000);
    },
    resume() {
      current?.child.kill("SIGCONT");
    },
  };
  return handle;
}
