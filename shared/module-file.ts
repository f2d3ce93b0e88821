// A module's sibling file by its base name, in the form this build runs: `.ts` when running the sources
// (tsx, vitest), `.js` when running the compiled package in dist/. For what must be named by path at run time
// (a child process's entry, an optional backend), never for imports (tsc rewrites those).
import { fileURLToPath } from "node:url";

export function siblingModule(base: string, importMetaUrl: string): string {
  const ext = importMetaUrl.endsWith(".ts") ? ".ts" : ".js";
  return fileURLToPath(new URL(`${base}${ext}`, importMetaUrl));
}

/** True when the calling module runs from TypeScript sources (a child needs tsx's loader to run them). */
export function runningSources(importMetaUrl: string): boolean {
  return importMetaUrl.endsWith(".ts");
}
