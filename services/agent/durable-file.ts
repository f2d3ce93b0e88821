// The agent's small state files (fencing table, reset journal), kept durably without blocking the event loop:
// the whole text replaced atomically (temp file, fsync, rename, fsync of the directory: a crash leaves the old
// file or the new one, never half). Saves that come while one is being written are coalesced (group commit):
// each text is the whole state at the time of its save, so only the latest is written, once, and everyone who
// asked meanwhile is answered when it is durable. Ten devices of a host raising their epochs together cost
// two writes, not ten in a row, and the other devices' operations and events keep running meanwhile.
import { readFileSync } from "node:fs";
import { open, rename } from "node:fs/promises";
import type { z } from "zod";
import { formatZodIssues } from "../../shared/bus/codec.ts";
import { CxlrcError, describeError } from "../../shared/errors.ts";

export interface DurableFile {
  readonly path: string;
  /** Resolves once `text`, or a later text, is durable; rejects with the error of the write that held it. */
  save(text: string): Promise<void>;
  /** Writes made so far (a burst of saves coalesces into two). */
  readonly writes: number;
}

/** Write temp + fsync + rename + fsync(dir), asynchronously. */
export async function writeAtomic(dir: string, path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  const file = await open(tmp, "w", 0o600);
  try {
    await file.writeFile(text);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(tmp, path);
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** A state file's text (null: there is none yet); `what` names it in the error ("fencing table"). */
export function readStateText(path: string, what: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new CxlrcError("backend", `cannot read the agent's ${what} ${path}`, { path }, { cause: e });
  }
}

/**
 * A state file's JSON document checked against `schema` (null: there is none yet). Bad JSON or a bad document is
 * a bad-input error naming the file (`notJsonHint` added to the first: what the operator may do about it).
 */
export function readStateJson<S extends z.ZodType>(
  path: string,
  schema: S,
  what: string,
  notJsonHint = "",
): z.output<S> | null {
  const text = readStateText(path, what);
  if (text === null) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CxlrcError(
      "bad-input",
      `the agent's ${what} ${path} is not valid JSON (${describeError(e)})${notJsonHint}`,
      { path },
    );
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    throw new CxlrcError(
      "bad-input",
      `the agent's ${what} ${path} is malformed: ${formatZodIssues(r.error)}`,
      { path },
    );
  }
  return r.data;
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

export function durableFile(dir: string, path: string): DurableFile {
  let running = false;
  let writes = 0;
  /** The latest text asked for while a write ran, and who waits for it. */
  let next: { text: string; waiters: Waiter[] } | null = null;

  const run = (text: string, waiters: Waiter[]) => {
    running = true;
    writes++;
    void writeAtomic(dir, path, text)
      .then(
        () => {
          for (const w of waiters) w.resolve();
        },
        (e: unknown) => {
          for (const w of waiters) w.reject(e);
        },
      )
      .finally(() => {
        running = false;
        const n = next;
        next = null;
        if (n) run(n.text, n.waiters);
      });
  };

  return {
    path,
    get writes() {
      return writes;
    },
    save(text) {
      return new Promise<void>((resolve, reject) => {
        const w = { resolve, reject };
        if (!running) run(text, [w]);
        else if (next) {
          next.text = text;
          next.waiters.push(w);
        } else next = { text, waiters: [w] };
      });
    },
  };
}
