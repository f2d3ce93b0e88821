// Host-side plumbing of the kernel lab: where the cache lives, running host tools with clear errors, a lock
// so that two test workers preparing the same cache do not race, and content hashes for cache keys.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { killOnExit } from "../../shared/children.ts";

/** Cache root: CXLRC_LAB_CACHE, else $XDG_CACHE_HOME/cxlrc/kernel-lab, else ~/.cache/cxlrc/kernel-lab. */
export function labCacheDir(): string {
  const explicit = process.env.CXLRC_LAB_CACHE;
  if (explicit) return explicit;
  const xdg = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(xdg, "cxlrc", "kernel-lab");
}

/** A host step that could not be done; the message says what is missing and how to get it. */
export class LabSetupError extends Error {
  override name = "LabSetupError";
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a host command (no shell); rejects with its stderr tail on a non-zero exit. */
export function run(
  file: string,
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      [...args],
      {
        cwd: opts.cwd,
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs ?? 300_000,
        maxBuffer: 64 * 1024 * 1024,
        encoding: "utf8",
      },
      (err, stdout, stderr) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException).code;
          const why =
            code === "ENOENT"
              ? "not installed"
              : `${err.message.split("\n")[0]}${stderr ? `: ${stderr.trim().split("\n").slice(-5).join(" | ")}` : ""}`;
          reject(new LabSetupError(`${file} ${args.join(" ")}: ${why}`));
        } else resolve({ stdout, stderr });
      },
    );
    // A download or build under way dies with the lab (shared/children.ts).
    killOnExit(child);
  });
}

export const sha256 = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");

/** Hash of files' contents (in the given order, names included). */
export function hashFiles(paths: readonly string[], extra = ""): string {
  const h = createHash("sha256").update(extra);
  for (const p of paths) {
    h.update(`\0${p}\0`);
    h.update(readFileSync(p));
  }
  return h.digest("hex");
}

const LOCK_POLL_MS = 200;
const LOCK_GIVE_UP_MS = 10 * 60_000;

function lockHolderAlive(dir: string): boolean {
  try {
    const pid = Number(readFileSync(join(dir, "pid"), "utf8"));
    if (!Number.isInteger(pid) || pid <= 0) return false;
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: alive but not ours; anything else (ENOENT of the pid file, ESRCH): stale.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Runs fn while holding the lock directory `dir` (mkdir is atomic); a lock whose holder died is taken over. */
export async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const start = Date.now();
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, "pid"), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      // A holder that has not written its pid yet is given a moment before it counts as stale.
      const young = existsSync(dir) && Date.now() - statSync(dir).mtimeMs < 5_000;
      if (!young && !lockHolderAlive(dir)) {
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() - start > LOCK_GIVE_UP_MS) throw new LabSetupError(`lock ${dir} held too long`);
      await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
