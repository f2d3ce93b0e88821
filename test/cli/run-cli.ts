// Runs the real `cxlrc` binary (bin/cxlrc.js: the compiled dist/, built by the global setup) as a child process and collects its output.
import { type ChildProcess, spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const BIN = fileURLToPath(new URL("../../bin/cxlrc.js", import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: NodeJS.ProcessEnv;
  /** Kill the child after this long (a safety net; tests assert on results, not on time). */
  killAfterMs?: number;
  input?: string;
}

/** Bus settings a CLI child never inherits from the machine running the tests (only when a test gives them). */
const BUS_ENV = ["CXLRC_NATS_URL", "NATS_URL", "NATS_CREDS", "NATS_CONTEXT"];

/**
 * The environment a CLI child gets: no colours, no inherited bus address or NATS context unless given (the
 * NATS CLI's config dir is one that does not exist, unless XDG_CONFIG_HOME is given).
 */
export function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1", ...extra };
  for (const v of BUS_ENV) if (!(v in extra)) delete env[v];
  if (!("XDG_CONFIG_HOME" in extra))
    env.XDG_CONFIG_HOME = join(tmpdir(), `cxlrc-test-no-config-${process.pid}`);
  delete env.FORCE_COLOR;
  return env;
}

export interface CliHandle {
  child: ChildProcess;
  /** Everything written so far. */
  readonly stdout: string;
  readonly stderr: string;
  readonly done: Promise<CliResult>;
}

export function startCli(args: string[], opts: CliOptions = {}): CliHandle {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: cliEnv(opts.env),
    stdio: ["pipe", "pipe", "pipe"],
  });
  const out = { stdout: "", stderr: "" };
  child.stdout!.setEncoding("utf8").on("data", (s: string) => {
    out.stdout += s;
  });
  child.stderr!.setEncoding("utf8").on("data", (s: string) => {
    out.stderr += s;
  });
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  else child.stdin!.end();
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.killAfterMs ?? 60_000);
  const done = new Promise<CliResult>((resolve) => {
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: out.stdout, stderr: out.stderr });
    });
  });
  return {
    child,
    get stdout() {
      return out.stdout;
    },
    get stderr() {
      return out.stderr;
    },
    done,
  };
}

export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return startCli(args, opts).done;
}

/**
 * Resolves when everything the CLI wrote so far (on `stream`) satisfies `test`; rejects if it exits first
 * (with what it wrote, to see why).
 */
export function waitForOutput(
  cli: CliHandle,
  test: (out: string) => boolean,
  stream: "stdout" | "stderr" = "stdout",
): Promise<string> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!test(cli[stream])) return false;
      cli.child[stream]!.off("data", onData);
      resolve(cli[stream]);
      return true;
    };
    // The collector in startCli runs first (it was attached first), so the text is complete here.
    const onData = () => {
      check();
    };
    if (check()) return;
    cli.child[stream]!.on("data", onData);
    void cli.done.then((r) => {
      if (!test(cli[stream]))
        reject(new Error(`the CLI exited (${r.code}) first; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`));
    });
  });
}

/** Non-empty lines. */
export function lines(s: string): string[] {
  return s.split("\n").filter((l) => l.trim().length > 0);
}
