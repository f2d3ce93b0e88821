// Child processes for the fleet benchmarks: the agents and the coordinator each run in a process of their own
// (forked through tsx), so the coordinator's CPU and resident memory are its own, and it can be killed like a
// crashed process. Parent and child talk over the IPC channel: { id, cmd, args } → { id, ok, result | error }.
import { type ChildProcess, fork } from "node:child_process";
import { mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";

export const SUPPORT_DIR = dirname(fileURLToPath(import.meta.url));

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

export interface ChildOptions {
  /** Extra environment (merged over process.env). */
  env?: Record<string, string>;
  /** Write a V8 CPU profile (.cpuprofile) here when the child exits normally. */
  cpuProfDir?: string;
  /** Write a V8 heap profile (.heapprofile) here when the child exits normally. */
  heapProfDir?: string;
  /** How long to wait for the child's "ready" message. Default 120 s. */
  readyTimeoutMs?: number;
}

export interface Child<Ready = unknown> {
  readonly pid: number;
  /** What the child sent with its ready message. */
  readonly ready: Ready;
  call<T = unknown>(cmd: string, args?: unknown, timeoutMs?: number): Promise<T>;
  /** CPU time (user + system) the process has used so far, in ms, from /proc (works while it is busy). */
  cpuMs(): Promise<number>;
  /** Resident set size in bytes, from /proc. */
  rssBytes(): Promise<number>;
  /** SIGKILL (a crash) and wait for the exit. */
  kill(): Promise<void>;
  /** Ask the child to stop ("stop" command, which ends in process.exit) and wait for the exit. */
  stop(timeoutMs?: number): Promise<void>;
}

/** Fork `bench/support/<file>` under tsx; resolves once the child reports ready. */
export async function startChild<Ready = unknown>(
  file: string,
  opts: ChildOptions = {},
): Promise<Child<Ready>> {
  const execArgv = ["--import", "tsx", "--expose-gc"];
  // BENCH_COORD_FLAGS: node flags for the coordinator's process only (a slower one: "--single-threaded-gc").
  const coordFlags = process.env.BENCH_COORD_FLAGS?.trim();
  if (file.startsWith("coordinator") && coordFlags) execArgv.push(...coordFlags.split(/\s+/));
  if (opts.cpuProfDir) {
    mkdirSync(opts.cpuProfDir, { recursive: true });
    execArgv.push("--cpu-prof", `--cpu-prof-dir=${opts.cpuProfDir}`);
  }
  if (opts.heapProfDir) {
    mkdirSync(opts.heapProfDir, { recursive: true });
    execArgv.push("--heap-prof", `--heap-prof-dir=${opts.heapProfDir}`);
  }
  const child: ChildProcess = fork(join(SUPPORT_DIR, file), [], {
    execArgv,
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const pid = child.pid ?? 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let exitInfo: string | null = null;
  const exited = new Promise<void>((resolve) => {
    child.on("exit", (code, signal) => {
      exitInfo = `exited (${code ?? signal})`;
      for (const p of pending.values()) p.reject(new Error(`${file}: child ${exitInfo}`));
      pending.clear();
      resolve();
    });
  });
  const ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${file}: not ready within ${opts.readyTimeoutMs ?? 120_000} ms`)),
      opts.readyTimeoutMs ?? 120_000,
    );
    child.on("message", (m: unknown) => {
      const msg = m as { ready?: unknown; failed?: string } & Partial<Reply>;
      if (msg.failed !== undefined) {
        clearTimeout(timer);
        reject(new Error(`${file}: ${msg.failed}`));
        return;
      }
      if (msg.ready !== undefined) {
        clearTimeout(timer);
        resolve(msg.ready as Ready);
        return;
      }
      if (typeof msg.id === "number") {
        const p = pending.get(msg.id);
        pending.delete(msg.id);
        if (!p) return;
        if (msg.ok) p.resolve(msg.result);
        else p.reject(new Error(`${file}: ${msg.error}`));
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${file}: child ${exitInfo} before it was ready`));
    });
  });

  const procStat = async () => {
    const s = await readFile(`/proc/${pid}/stat`, "utf8");
    return s.slice(s.lastIndexOf(")") + 2).split(" ");
  };
  const ticks = 100; // USER_HZ on Linux

  return {
    pid,
    ready,
    call<T>(cmd: string, args?: unknown, timeoutMs = 600_000): Promise<T> {
      if (exitInfo) return Promise.reject(new Error(`${file}: child ${exitInfo}`));
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`${file}: ${cmd} took longer than ${timeoutMs} ms`));
        }, timeoutMs);
        pending.set(id, {
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v as T);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        child.send({ id, cmd, args });
      });
    },
    async cpuMs() {
      const f = await procStat();
      // Fields after the command: state(0) … utime(11) stime(12).
      return ((Number(f[11]) + Number(f[12])) / ticks) * 1000;
    },
    async rssBytes() {
      const status = await readFile(`/proc/${pid}/status`, "utf8");
      const m = /VmRSS:\s+(\d+) kB/.exec(status);
      return m ? Number(m[1]) * 1024 : Number.NaN;
    },
    async kill() {
      if (exitInfo) return;
      child.kill("SIGKILL");
      await exited;
    },
    async stop(timeoutMs = 60_000) {
      if (exitInfo) return;
      const t = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      child.send({ id: 0, cmd: "stop" });
      await exited;
      clearTimeout(t);
    },
  };
}

/** CPU ms of any process (nats-server) from /proc. */
export async function processCpuMs(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) / 100) * 1000;
}

export async function processRssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

// ---------------------------------------------------------------------------------------------------
// Child side

export type Handlers = Record<string, (args: unknown) => Promise<unknown> | unknown>;

export interface LoopDelay {
  /** Event-loop delay since the last reading (perf_hooks.monitorEventLoopDelay, 10 ms resolution), ms. */
  p99Ms: number;
  maxMs: number;
}

/** In the child: answer the parent's commands; "stop" runs handlers.stop (if any), then exits. */
export function serveParent(handlers: Handlers): void {
  // How late this process runs what is due (a timer, a socket read): its own backlog, read by "loopDelay".
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const builtIn: Handlers = {
    loopDelay: () => {
      const r: LoopDelay = { p99Ms: delay.percentile(99) / 1e6, maxMs: delay.max / 1e6 };
      delay.reset();
      return r;
    },
  };
  process.on("message", (m: unknown) => {
    const { id, cmd, args } = m as { id: number; cmd: string; args?: unknown };
    void (async () => {
      try {
        const h = handlers[cmd] ?? builtIn[cmd];
        if (!h) throw new Error(`unknown command ${cmd}`);
        const result = await h(args);
        if (cmd === "stop") process.exit(0);
        process.send?.({ id, ok: true, result });
      } catch (e) {
        if (cmd === "stop") process.exit(1);
        process.send?.({ id, ok: false, error: (e as Error)?.stack ?? String(e) });
      }
    })();
  });
  process.on("disconnect", () => process.exit(0));
}

export function sendReady(ready: unknown): void {
  process.send?.({ ready });
}

export function sendFailed(e: unknown): void {
  process.send?.({ failed: (e as Error)?.stack ?? String(e) });
}

/** Full GC where --expose-gc is on (children are started with it). */
export function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}
