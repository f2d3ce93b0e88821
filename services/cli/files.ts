// Files the CLI reads or writes (configs, scenarios, dumps, creds, NATS contexts), with one wording for every
// failure: `cannot read FILE: no such file`, `cannot write FILE: permission denied`, `FILE: not valid JSON
// (line 3, column 7)`. Errors are CxlrcError "bad-input" (exit 2); no raw runtime message reaches the user.
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { CxlrcError } from "../../shared/errors.ts";

const WHY: Record<string, string> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EISDIR: "is a directory",
  ENOTDIR: "a part of the path is not a directory",
  ELOOP: "too many symbolic links",
  ENAMETOOLONG: "name too long",
  EMFILE: "too many open files",
  EROFS: "read-only file system",
};

/** The short reason of a file system error (its errno code, worded). */
export function fileWhy(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  return (code && WHY[code]) ?? (code ? code.toLowerCase() : "unreadable");
}

/** `cannot read FILE: why` as bad input (exit 2). */
export function cannotRead(path: string, e: unknown): CxlrcError {
  return new CxlrcError("bad-input", `cannot read ${path}: ${fileWhy(e)}`, { path });
}

/** The bytes of a file. */
export function readFileBytes(path: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    throw cannotRead(path, e);
  }
}

export function readFileText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw cannotRead(path, e);
  }
}

/** Fail now, with the one wording, when a file named by a flag or variable cannot be read. */
export function checkReadable(path: string): void {
  try {
    if (statSync(path).isDirectory()) throw Object.assign(new Error("dir"), { code: "EISDIR" });
    accessSync(path, constants.R_OK);
  } catch (e) {
    throw cannotRead(path, e);
  }
}

/** Fail now when a file the command will write cannot be created: its directory is missing or not writable. */
export function checkWritable(path: string): void {
  try {
    const st = statSync(path, { throwIfNoEntry: false });
    if (st?.isDirectory()) throw Object.assign(new Error("dir"), { code: "EISDIR" });
    if (st) accessSync(path, constants.W_OK);
    else accessSync(dirname(path), constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such directory" : fileWhy(e);
    throw new CxlrcError("bad-input", `cannot write ${path}: ${why}`, { path });
  }
}

/** Where a JSON.parse error is ("line L, column C", from V8's "position N"), or the token it tripped on. */
function positionOf(text: string, e: unknown): string | null {
  const msg = (e as Error)?.message ?? "";
  const m = /position (\d+)/.exec(msg);
  const at = m ? Number(m[1]) : /end of JSON input/i.test(msg) ? text.length : null;
  if (at === null) {
    const token = /^Unexpected token '(.)'/.exec(msg)?.[1];
    return token ? `unexpected ${JSON.stringify(token)}` : null;
  }
  const before = text.slice(0, at).split("\n");
  return `line ${before.length}, column ${before.at(-1)!.length + 1}`;
}

/** The JSON in a file: unreadable or malformed is bad input naming the file and where it went wrong. */
export function readJsonFile(path: string): unknown {
  const text = readFileText(path);
  try {
    return JSON.parse(text);
  } catch (e) {
    const where = positionOf(text, e);
    throw new CxlrcError("bad-input", `${path}: not valid JSON${where ? ` (${where})` : ""}`, { path });
  }
}
