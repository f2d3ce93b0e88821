// Small sysfs attribute helpers: read a text attribute, the basename of a link, and write an attribute
// in one write() (the kernel acts on each write; O_TRUNC matters only to the regular files of tests).
import { constants } from "node:fs";
import { open, readFile, readlink } from "node:fs/promises";
import { basename } from "node:path";
import { CxlrcError } from "../../../../shared/errors.ts";
import type { Logger } from "../../../../shared/log.ts";

interface NodeFsError {
  code?: string;
  errno?: number;
  message: string;
}

/** The errno of a node fs error as a positive number (node reports it negated). */
export function fsErrno(e: unknown): number | undefined {
  const n = (e as NodeFsError).errno;
  return typeof n === "number" ? Math.abs(n) : undefined;
}

export const isNotFound = (e: unknown) => (e as NodeFsError).code === "ENOENT";

export function fsError(what: string, path: string, cause: unknown): CxlrcError {
  const e = cause as NodeFsError;
  const errno = fsErrno(e);
  const code = e.code ?? "E?";
  return new CxlrcError(
    "backend",
    `${what} ${path}: ${code}${errno === undefined ? "" : ` (${errno})`}`,
    { path, errno, errnoName: code },
    { cause },
  );
}

/** Attribute text without the trailing newline, or null when the file does not exist. */
export async function readAttr(path: string): Promise<string | null> {
  try {
    return (await readFile(path, "utf8")).replace(/\n$/, "");
  } catch (e) {
    if (isNotFound(e)) return null;
    throw fsError("read", path, e);
  }
}

/** Basename of a symlink's target (driver, iommu_group), or null when there is no link. */
export async function readLinkName(path: string): Promise<string | null> {
  try {
    return basename(await readlink(path));
  } catch (e) {
    if (isNotFound(e)) return null;
    throw fsError("readlink", path, e);
  }
}

/** Parses "0x1af4" style attributes; null when missing or not a number. */
export async function readHexAttr(path: string): Promise<number | null> {
  const text = await readAttr(path);
  if (text === null || !/^0x[0-9a-fA-F]+$/.test(text.trim())) return null;
  return Number.parseInt(text.trim(), 16);
}

/** One write() of text to an existing attribute (never creates it). Logged at debug so the order shows. */
export async function writeAttr(path: string, text: string, log: Logger): Promise<void> {
  log.debug({ path, value: text }, "sysfs write");
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(path, constants.O_WRONLY | constants.O_TRUNC);
    const { bytesWritten } = await handle.write(text);
    if (bytesWritten !== Buffer.byteLength(text)) {
      throw new CxlrcError("backend", `short write to ${path}: ${bytesWritten} of ${text.length} bytes`, {
        path,
      });
    }
  } catch (e) {
    if (e instanceof CxlrcError) throw e;
    throw fsError(`write ${JSON.stringify(text)} to`, path, e);
  } finally {
    await handle?.close();
  }
}

export type AttrIo = {
  readAttr: typeof readAttr;
  writeAttr: typeof writeAttr;
};

export const realAttrIo: AttrIo = { readAttr, writeAttr };
