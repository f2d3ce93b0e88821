// A client for QEMU's qtest protocol: a Unix socket we listen on, QEMU connects to it, then one text
// line per command ("readl 0xb0000000") and one answer line ("OK 0x00000000", "FAIL ...", "ERR ...").
// Facts: ../../../../../shared/docs/qemu-qtest.md. The QEMU process never outlives this client: it is
// killed on close(), on errors during start, and synchronously when the Node process exits.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killOnExit, removeOnExit } from "../../../../shared/children.ts";
import { CxlrcError } from "../../../../shared/errors.ts";
import { type Logger, silentLogger } from "../../../../shared/log.ts";

export const DEFAULT_QEMU_BINARY = "qemu-system-x86_64";
/** QEMU 7.2 connects within ~20 ms; this bounds a start that hangs (bad args exit at once instead). */
export const QTEST_CONNECT_TIMEOUT_MS = 10_000;
/** How long close() waits for QEMU to exit after SIGKILL before giving up on reaping it. */
export const QEMU_EXIT_WAIT_MS = 5_000;
/** Keep at most this much of QEMU's stderr for error messages. */
const STDERR_KEEP_CHARS = 4096;
/** After QEMU closes the socket, how long to wait for its exit status before reporting the failure. */
const SOCKET_CLOSE_GRACE_MS = 1000;

/** Arguments every qtest QEMU gets (the socket argument is added by start()). */
export const QTEST_BASE_ARGS = [
  "-qtest-log",
  "/dev/null",
  "-accel",
  "tcg",
  "-S",
  "-display",
  "none",
  "-nodefaults",
];

export interface QtestStartOptions {
  /** Machine and device arguments (topology). */
  args: readonly string[];
  binary?: string;
  /** Directory for the socket; a fresh temp dir (removed on close) when absent. */
  dir?: string;
  connectTimeoutMs?: number;
  /**
   * Have the kernel SIGKILL QEMU when this process dies without running exit hooks (default true; Linux
   * with setpriv only). Off only to test the exit hook on its own.
   */
  killOnParentDeath?: boolean;
  log?: Logger;
}

/** Remove this temp dir if the process exits before its owner does (the owner calls forget on cleanup). */
export function removeDirOnExit(dir: string): { forget: () => void } {
  return { forget: removeOnExit(dir) };
}

/** Linux: have the kernel kill QEMU if this process dies without running its exit hooks (SIGKILL, crash). */
function deathSignalWrapper(
  binary: string,
  args: readonly string[],
  enabled: boolean,
): { file: string; argv: string[] } {
  if (enabled && process.platform === "linux" && existsSync("/usr/bin/setpriv")) {
    // setpriv execs QEMU in place: the child's pid is QEMU's pid.
    return { file: "/usr/bin/setpriv", argv: ["--pdeathsig", "KILL", "--", binary, ...args] };
  }
  return { file: binary, argv: [...args] };
}

interface Pending {
  lines: string[];
  answers: string[];
  resolve: (answers: string[]) => void;
  reject: (e: unknown) => void;
  /** First FAIL/ERR of the batch; reported once every line of the batch is answered. */
  error?: CxlrcError;
}

export class QtestClient {
  /** QEMU's process id. */
  readonly pid: number;
  private readonly child: ChildProcess;
  private readonly socket: Socket;
  private readonly dir: string;
  /** Set when this client created the temp dir and removes it. */
  private readonly dirGuard: { forget: () => void } | null;
  private readonly log: Logger;
  private buffer = "";
  private readonly queue: Pending[] = [];
  private inFlight: Pending | null = null;
  private closed = false;
  private failure: CxlrcError | null = null;
  private readonly exited: Promise<void>;
  private stderrTail: () => string;
  /** Round trips (lines answered) since start, for figures. */
  commandCount = 0;

  private constructor(p: {
    child: ChildProcess;
    socket: Socket;
    dir: string;
    dirGuard: { forget: () => void } | null;
    log: Logger;
    exited: Promise<void>;
    stderrTail: () => string;
  }) {
    this.child = p.child;
    this.pid = p.child.pid!;
    this.socket = p.socket;
    this.dir = p.dir;
    this.dirGuard = p.dirGuard;
    this.log = p.log;
    this.exited = p.exited;
    this.stderrTail = p.stderrTail;
    this.socket.setEncoding("latin1");
    this.socket.on("data", (chunk: string) => this.onData(chunk));
    this.socket.on("error", (e) => this.fail(`qtest socket error: ${e.message}`, e));
    // QEMU closing the socket usually means it is exiting: give it a moment so the failure carries its
    // exit status and stderr rather than just "socket closed".
    this.socket.on("close", () => {
      let timer: NodeJS.Timeout | undefined;
      void Promise.race([
        this.exited,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, SOCKET_CLOSE_GRACE_MS);
        }),
      ]).then(() => {
        clearTimeout(timer);
        this.fail("qtest socket closed by QEMU");
      });
    });
    this.child.once("close", (code, signal) => this.fail(`QEMU exited (code ${code}, signal ${signal})`));
  }

  /** Spawn QEMU with `-qtest unix:SOCK` and wait for it to connect. Kills it on any failure. */
  static async start(opts: QtestStartOptions): Promise<QtestClient> {
    const log = opts.log ?? silentLogger;
    const ownsDir = opts.dir === undefined;
    const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), "cxlrc-qtest-")));
    const dirGuard = ownsDir ? removeDirOnExit(dir) : null;
    const sockPath = join(dir, "qtest.sock");
    const binary = opts.binary ?? DEFAULT_QEMU_BINARY;
    let server: Server | null = null;
    let child: ChildProcess | null = null;
    try {
      server = createServer();
      const srv = server;
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(sockPath, () => {
          srv.off("error", reject);
          resolve();
        });
      });
      const qemuArgs = [...QTEST_BASE_ARGS, "-qtest", `unix:${sockPath}`, ...opts.args];
      const { file, argv } = deathSignalWrapper(binary, qemuArgs, opts.killOnParentDeath ?? true);
      log.debug({ binary, args: qemuArgs }, "starting QEMU");
      child = spawn(file, argv, { stdio: ["ignore", "ignore", "pipe"] });
      const proc = child;
      // Killed synchronously if this process exits with it still running.
      killOnExit(proc);
      let stderr = "";
      proc.stderr?.setEncoding("utf8");
      proc.stderr?.on("data", (s: string) => {
        stderr = (stderr + s).slice(-STDERR_KEEP_CHARS);
      });
      // "close" comes after "exit" once stderr is drained, so error messages carry all of it.
      const exited = new Promise<void>((resolve) => proc.once("close", () => resolve()));
      const spawnError = new Promise<never>((_, reject) => {
        proc.once("error", (e) => reject(e));
      });
      const timeoutMs = opts.connectTimeoutMs ?? QTEST_CONNECT_TIMEOUT_MS;
      let timer: NodeJS.Timeout | undefined;
      const socket = await Promise.race([
        new Promise<Socket>((resolve) => srv.once("connection", resolve)),
        spawnError,
        exited.then(() => {
          throw new Error(`QEMU exited before connecting: ${stderr.trim() || "(no stderr)"}`);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`QEMU did not connect within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      srv.close();
      const client = new QtestClient({
        child: proc,
        socket,
        dir,
        dirGuard,
        log,
        exited,
        stderrTail: () => stderr,
      });
      log.debug({ pid: client.pid }, "QEMU connected");
      return client;
    } catch (e) {
      server?.close();
      if (child) {
        const c = child;
        if (c.exitCode === null && c.signalCode === null) {
          c.kill("SIGKILL");
          await new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) resolve();
            else c.once("exit", () => resolve());
          });
        }
      }
      if (ownsDir) await rm(dir, { recursive: true, force: true });
      dirGuard?.forget();
      throw new CxlrcError(
        "backend",
        `could not start QEMU (${binary}): ${e instanceof Error ? e.message : String(e)}`,
        { binary, ...(child?.pid !== undefined ? { pid: child.pid } : {}) },
        { cause: e },
      );
    }
  }

  /** One command; resolves to the text after "OK" ("" when there is none). */
  async command(line: string): Promise<string> {
    const [answer] = await this.batch([line]);
    return answer!;
  }

  /**
   * Several commands sent together and answered in order (QEMU handles qtest lines one at a time, so
   * pipelining them is the same as sending them one by one, without a round trip each). Batches are
   * queued: one batch in flight at a time.
   */
  batch(lines: readonly string[]): Promise<string[]> {
    if (lines.length === 0) return Promise.resolve([]);
    for (const l of lines) {
      if (l.includes("\n")) throw new CxlrcError("internal", `qtest command contains a newline: ${l}`);
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new CxlrcError("backend", "qtest client is closed"));
    return new Promise<string[]>((resolve, reject) => {
      this.queue.push({ lines: [...lines], answers: [], resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    if (this.inFlight || this.queue.length === 0 || this.failure) return;
    const next = this.queue.shift()!;
    this.inFlight = next;
    this.socket.write(`${next.lines.join("\n")}\n`);
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl = this.buffer.indexOf("\n");
    while (nl >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      this.onLine(line);
      nl = this.buffer.indexOf("\n");
    }
  }

  private onLine(line: string): void {
    // Asynchronous interrupt notifications (only after irq_intercept_*): not answers.
    if (line === "" || line.startsWith("IRQ ")) return;
    const p = this.inFlight;
    if (!p) {
      this.log.warn({ line }, "unexpected qtest line with no command in flight");
      return;
    }
    const cmd = p.lines[p.answers.length]!;
    this.commandCount++;
    if (line === "OK" || line.startsWith("OK ")) {
      p.answers.push(line.slice(3));
    } else {
      // FAIL / ERR: the rest of the batch is still answered by QEMU; drain it, then reject.
      const err = new CxlrcError("backend", `qtest command "${cmd}" answered "${line}"`, {
        command: cmd,
        answer: line,
      });
      p.answers.push("");
      p.error ??= err;
    }
    if (p.answers.length === p.lines.length) {
      this.inFlight = null;
      if (p.error) p.reject(p.error);
      else p.resolve(p.answers);
      this.pump();
    }
  }

  private fail(reason: string, cause?: unknown): void {
    if (this.failure || this.closed) return;
    const tail = this.stderrTail().trim();
    this.failure = new CxlrcError(
      "backend",
      tail ? `${reason}: ${tail}` : reason,
      { pid: this.pid },
      { cause },
    );
    this.log.error({ err: this.failure.message }, "qtest failed");
    const pending = [...(this.inFlight ? [this.inFlight] : []), ...this.queue];
    this.inFlight = null;
    this.queue.length = 0;
    for (const p of pending) p.reject(this.failure);
  }

  /** True while QEMU runs and the socket works. */
  get alive(): boolean {
    return !this.closed && this.failure === null;
  }

  /** Kill QEMU, wait for it to exit, remove the temp dir. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) {
      await this.exited;
      return;
    }
    this.closed = true;
    const pending = [...(this.inFlight ? [this.inFlight] : []), ...this.queue];
    this.inFlight = null;
    this.queue.length = 0;
    for (const p of pending) p.reject(new CxlrcError("backend", "qtest client closed"));
    this.socket.destroy();
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.exited,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, QEMU_EXIT_WAIT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    if (this.dirGuard) {
      await rm(this.dir, { recursive: true, force: true });
      this.dirGuard.forget();
    }
  }
}

const hex = (v: number) => `0x${(v >>> 0).toString(16)}`;

/** qtest memory read of 1, 2 or 4 bytes at a physical address (MMIO and ECAM alike). */
export function memReadCommand(addr: number, width: 1 | 2 | 4): string {
  return `${width === 4 ? "readl" : width === 2 ? "readw" : "readb"} ${hex(addr)}`;
}

/** qtest memory write; the value is masked to the width. */
export function memWriteCommand(addr: number, width: 1 | 2 | 4, value: number): string {
  const mask = width === 4 ? 0xffffffff : width === 2 ? 0xffff : 0xff;
  return `${width === 4 ? "writel" : width === 2 ? "writew" : "writeb"} ${hex(addr)} ${hex(value & mask)}`;
}

/** Parse a qtest numeric answer ("0x0000abcd"). */
export function parseQtestNumber(answer: string, command: string): number {
  const v = Number(answer.trim());
  if (!Number.isFinite(v) || answer.trim() === "") {
    throw new CxlrcError("backend", `qtest command "${command}" answered a non-number: "${answer}"`, {
      command,
      answer,
    });
  }
  return v >>> 0;
}
