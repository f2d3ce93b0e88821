// An append-only log of JSON lines kept durably without blocking the event loop: each record is one line
// appended to the file, and the appends that come while one is being made go together in the next (group
// commit: one write and one fdatasync for a burst). A record resolves once it is on disk at the log's path:
// the file is opened for each burst, so a log whose directory was removed (or whose file was moved away) fails
// its appends instead of writing to a file nobody will read again. Compaction replaces
// the whole file atomically (durable-file.ts writeAtomic) with the lines the caller says are still live, between
// two appends. A crash mid-append leaves at most a last line without its newline, which reading drops.
import { close, fdatasync, open, write } from "node:fs";
import { promisify } from "node:util";
import { z } from "zod";
import { formatZodIssues } from "../../shared/bus/codec.ts";
import { CxlrcError, describeError } from "../../shared/errors.ts";
import { readStateText, writeAtomic } from "./durable-file.ts";

export interface AppendLog {
  readonly path: string;
  /** Resolves once `line` (one JSON text, no newline) is durable; rejects with its write's error. */
  append(line: string): Promise<void>;
  /** Replace the file with `lines` (the live state), after the appends asked for before it. */
  compact(lines: string[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * The complete lines of a log's text. The last line without its newline is a torn append (dropped, `torn`);
 * `bad` is the first complete line `parse` refuses (1-based), with its error.
 */
export function readLines<T>(
  text: string,
  parse: (line: string) => T,
): { items: T[]; torn: boolean; bad: { line: number; error: unknown } | null } {
  const parts = text.split("\n");
  const last = parts.pop() ?? "";
  const items: T[] = [];
  for (const [i, l] of parts.entries()) {
    if (l.trim() === "") continue;
    try {
      items.push(parse(l));
    } catch (error) {
      return { items, torn: false, bad: { line: i + 1, error } };
    }
  }
  return { items, torn: last.trim() !== "", bad: null };
}

/**
 * A state log's lines (`what` names it in errors: "fencing table") checked against `schema`, in order: none when
 * there is no file yet; `torn` when its last line was cut by a crash. A complete line that is not JSON or not a
 * `schema` value is a bad-input error naming the file and the line (`hint` added: what the operator may do).
 */
export function readLogLines<S extends z.ZodType>(
  path: string,
  schema: S,
  what: string,
  hint = "",
): { items: Array<z.output<S>>; torn: boolean } {
  const text = readStateText(path, what);
  if (text === null) return { items: [], torn: false };
  const { items, torn, bad } = readLines(text, (l) => schema.parse(JSON.parse(l)) as z.output<S>);
  if (bad) {
    throw new CxlrcError(
      "bad-input",
      `the agent's ${what} ${path} is malformed at line ${bad.line}: ${
        bad.error instanceof z.ZodError ? formatZodIssues(bad.error) : describeError(bad.error)
      }${hint}`,
      { path, line: bad.line },
    );
  }
  return { items, torn };
}

interface Pending {
  kind: "append" | "compact";
  text: string;
  resolve: () => void;
  reject: (e: unknown) => void;
}

const openFd = promisify(open);
const closeFd = promisify(close);
const datasyncFd = promisify(fdatasync);
/** All of `text` (a write may take fewer bytes than it was given). */
const writeFd = async (fd: number, text: string): Promise<void> => {
  const bytes = Buffer.from(text, "utf8");
  for (let at = 0; at < bytes.length; ) {
    at += await new Promise<number>((resolve, reject) => {
      write(fd, bytes, at, bytes.length - at, null, (err, n) => (err ? reject(err) : resolve(n)));
    });
  }
};

export function appendLog(dir: string, path: string): AppendLog {
  let running = false;
  /** The drain running now (close waits for it). */
  let draining: Promise<void> = Promise.resolve();
  const queue: Pending[] = [];

  /** Open, write, fdatasync, close: the callback API (a FileHandle and its promises cost a third more CPU). */
  const appendNow = async (text: string): Promise<void> => {
    const fd = await openFd(path, "a", 0o600);
    try {
      await writeFd(fd, text);
      await datasyncFd(fd);
    } finally {
      await closeFd(fd);
    }
  };

  const drain = async () => {
    running = true;
    while (queue.length > 0) {
      // A compaction runs alone; appends up to the next compaction go together.
      const first = queue[0]!;
      const nextCompact = queue.findIndex((p) => p.kind === "compact");
      const batch = queue.splice(
        0,
        first.kind === "compact" ? 1 : nextCompact < 0 ? queue.length : nextCompact,
      );
      try {
        if (first.kind === "compact") await writeAtomic(dir, path, first.text);
        else await appendNow(batch.map((p) => p.text).join(""));
        for (const p of batch) p.resolve();
      } catch (e) {
        for (const p of batch) p.reject(e);
      }
    }
    running = false;
  };

  const push = (kind: Pending["kind"], text: string) =>
    new Promise<void>((resolve, reject) => {
      queue.push({ kind, text, resolve, reject });
      if (!running) draining = drain();
    });

  return {
    path,
    append: (line) => push("append", `${line}\n`),
    compact: (lines) => push("compact", lines.map((l) => `${l}\n`).join("")),
    /** Resolves once the appends and compactions asked for so far are done (the file is open only meanwhile). */
    close: () => draining,
  };
}
