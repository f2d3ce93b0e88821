// The cxlrc package's version, read from its package.json. Found by walking up from this file, not by a fixed
// relative path: the same module runs from the source tree (shared/) and compiled (dist/shared/, one deeper).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const PACKAGE_NAME = "cxlrc";

/** When no package.json of cxlrc is found (a bundle copied without it). Semver, as the micro-service needs. */
export const UNKNOWN_VERSION = "0.0.0";

/**
 * The nearest package.json above `from` (a directory) whose name is `name`, with its version; null when
 * there is none up to the filesystem root. Other packages' package.json files on the way are passed over.
 */
export function findPackageJson(
  from: string,
  name: string = PACKAGE_NAME,
): { path: string; version: string } | null {
  for (let dir = from; ; ) {
    const path = join(dir, "package.json");
    const pkg = readJson(path);
    if (pkg?.name === name)
      return { path, version: typeof pkg.version === "string" ? pkg.version : UNKNOWN_VERSION };
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

let cached: string | undefined;

/** cxlrc's version (package.json "version"), or 0.0.0 when its package.json cannot be found. */
export function packageVersion(): string {
  cached ??= findPackageJson(dirname(fileURLToPath(import.meta.url)))?.version ?? UNKNOWN_VERSION;
  return cached;
}

function readJson(path: string): { name?: unknown; version?: unknown } | null {
  try {
    const v: unknown = JSON.parse(readFileSync(path, "utf8"));
    return v !== null && typeof v === "object" ? (v as { name?: unknown; version?: unknown }) : null;
  } catch {
    return null; // absent, unreadable or not JSON: keep walking up
  }
}
