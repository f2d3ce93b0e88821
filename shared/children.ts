// Child processes, temp dirs and clean-ups that must not outlive this process (nats-server and QEMU in tests,
// the chaos cluster and coordinators, the demo's bus, the lab's VM), however it ends:
//  - a normal exit (process.exit, the event loop running dry): SIGKILLed and removed synchronously, as an
//    'exit' handler must;
//  - SIGINT, SIGTERM or SIGHUP, where a CLI entry called exitOnSignals(): Node's default for these is to die
//    without an 'exit' event, leaving every child behind. The handler stops the children (SIGTERM, SIGKILL
//    after a grace), runs the async clean-ups, and exits with 128 + the signal's number;
//  - SIGKILL of this process, where nothing runs: a child spawned through dieWithParent() gets SIGKILL too.
// Libraries register (killOnExit, removeOnExit, onSignalExit); only a CLI entry decides what a signal does.
import type { ChildProcess } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { constants } from "node:os";

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
const cleanups = new Set<() => unknown>();
let hooked = false;

/** Synchronous last word: every child still registered SIGKILLed (SIGCONT first: it may be paused), dirs removed. */
function sweep(): void {
  for (const child of children) {
    try {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const dir of dirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", sweep);
}

const running = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

/** Kill `child` when this process exits or is stopped by a signal. Returns: forget it (it ended). */
export function killOnExit(child: ChildProcess): () => void {
  hook();
  children.add(child);
  child.once("exit", () => children.delete(child));
  return () => {
    children.delete(child);
  };
}

/** Remove `dir` when this process exits. Returns: forget it (removed already, or kept on purpose). */
export function removeOnExit(dir: string): () => void {
  hook();
  dirs.add(dir);
  return () => {
    dirs.delete(dir);
  };
}

/**
 * Run `fn` when a signal stops this process (after its children are stopped, before it exits): what only
 * async code can do, such as closing a connection. Returns: forget it.
 */
export function onSignalExit(fn: () => unknown): () => void {
  cleanups.add(fn);
  return () => {
    cleanups.delete(fn);
  };
}

/** The registered children still running (a snapshot). */
export function registeredChildren(): ChildProcess[] {
  return [...children].filter(running);
}

/**
 * Stop every registered child: SIGCONT (a paused one cannot act on SIGTERM) and SIGTERM, then SIGKILL for
 * those still running after graceMs. Resolves once all have exited.
 */
export async function stopChildren(graceMs: number): Promise<void> {
  const live = registeredChildren();
  const exited = live.map((c) => new Promise<void>((r) => (running(c) ? c.once("exit", () => r()) : r())));
  for (const c of live) {
    try {
      c.kill("SIGCONT");
      c.kill("SIGTERM");
    } catch {
      // gone meanwhile
    }
  }
  const timer = setTimeout(() => {
    for (const c of live) if (running(c)) c.kill("SIGKILL");
  }, graceMs);
  await Promise.all(exited);
  clearTimeout(timer);
}

/**
 * [file, args] that spawn `file` so that the kernel SIGKILLs it when this process dies, also by SIGKILL
 * (setpriv --pdeathsig, util-linux; it execs the program, so the pid is the program's). Unchanged where
 * setpriv is missing. Only from the main thread: the signal follows the spawning thread's death.
 */
export function dieWithParent(file: string, args: readonly string[]): [string, string[]] {
  if (process.platform === "linux" && existsSync(SETPRIV)) {
    return [SETPRIV, ["--pdeathsig", "KILL", "--", file, ...args]];
  }
  return [file, [...args]];
}
const SETPRIV = "/usr/bin/setpriv";

export interface SignalExitOptions {
  /** SIGTERM → SIGKILL for the children. Default 2 s. */
  graceMs?: number;
  /** The async clean-ups get this long in all. Default 5 s. */
  cleanupMs?: number;
  /**
   * The program's own handling of the signal (a graceful stop that then exits by itself) gets this long
   * before the children are stopped here; a second signal cuts it short. Default 0: at once.
   */
  patienceMs?: number;
  /**
   * Only where nothing in this process listens to these signals yet (their default would end it without an
   * 'exit', orphaning the children): a program that handles its signals itself keeps doing so. Default false.
   */
  onlyIfUnclaimed?: boolean;
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
let installed: ((signal: NodeJS.Signals) => void) | null = null;

/**
 * For a CLI entry that spawns children (never a library: it decides how the process ends): on SIGINT,
 * SIGTERM or SIGHUP stop the registered children, run the clean-ups, then exit with 128 + the signal's number.
 * Idempotent; returns: uninstall.
 */
export function exitOnSignals(opts: SignalExitOptions = {}): () => void {
  const graceMs = opts.graceMs ?? 2000;
  const cleanupMs = opts.cleanupMs ?? 5000;
  const patienceMs = opts.patienceMs ?? 0;
  hook();
  if (installed) return uninstall;
  if (opts.onlyIfUnclaimed && SIGNALS.some((s) => process.listenerCount(s) > 0)) return () => undefined;
  let stopping = false;
  const code = (signal: NodeJS.Signals) => 128 + (constants.signals[signal] ?? 0);
  const finish = async (signal: NodeJS.Signals) => {
    await stopChildren(graceMs);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...cleanups].map(async (fn) => fn())),
      new Promise((r) => {
        timer = setTimeout(r, cleanupMs);
      }),
    ]);
    clearTimeout(timer);
    process.exit(code(signal));
  };
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      // Asked again: no more waiting.
      sweep();
      process.exit(code(signal));
    }
    stopping = true;
    if (patienceMs <= 0) void finish(signal);
    else setTimeout(() => void finish(signal), patienceMs).unref();
  };
  installed = handler;
  for (const s of SIGNALS) process.on(s, handler);
  return uninstall;
}

function uninstall(): void {
  if (!installed) return;
  for (const s of SIGNALS) process.removeListener(s, installed);
  installed = null;
}
