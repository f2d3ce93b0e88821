// The guest runner and the cxlrc sources it imports (agent ops, sysfs backend, shared/, machines/) as one ES
// module, bundled on the host with the esbuild that tsx ships. Under TCG, tsx transpiling each file inside
// the guest costs ~20 s of every boot; the bundle is the same code and starts in about two.
// koffi stays external (its native binary is loaded from node_modules beside the bundle).
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { LabSetupError } from "./host.ts";

/** Packages left out of the bundle and shipped in node_modules instead. */
export const BUNDLE_EXTERNALS = ["koffi"] as const;

// CommonJS dependencies bundled into an ES module still call require() and may read __dirname.
const BANNER = [
  'import { createRequire as __labCreateRequire } from "node:module";',
  'import { fileURLToPath as __labFileURLToPath } from "node:url";',
  "const require = __labCreateRequire(import.meta.url);",
  "const __filename = __labFileURLToPath(import.meta.url);",
  'const __dirname = __filename.slice(0, __filename.lastIndexOf("/"));',
].join("\n");

interface EsbuildApi {
  build(options: Record<string, unknown>): Promise<{
    outputFiles?: { text: string }[];
    warnings: { text: string }[];
  }>;
}

async function loadEsbuild(projectDir: string): Promise<EsbuildApi> {
  try {
    // esbuild is tsx's dependency: resolve it from there rather than relying on hoisting.
    const fromProject = createRequire(join(projectDir, "package.json"));
    const tsxMain = fromProject.resolve("tsx/package.json");
    const path = createRequire(tsxMain).resolve("esbuild");
    return (await import(pathToFileURL(path).href)) as EsbuildApi;
  } catch (e) {
    throw new LabSetupError(
      `esbuild (installed with tsx) is needed to bundle the guest runner: ${(e as Error).message}`,
    );
  }
}

/** The bundled runner as text. */
export async function bundleGuestRunner(projectDir: string, entry: string): Promise<string> {
  if (!existsSync(join(projectDir, entry))) {
    throw new LabSetupError(
      `the kernel lab builds its guest from the sources (${entry}), which the installed package does not hold: run it from a cxlrc checkout`,
    );
  }
  const esbuild = await loadEsbuild(projectDir);
  const result = await esbuild.build({
    absWorkingDir: projectDir,
    entryPoints: [entry],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    external: [...BUNDLE_EXTERNALS],
    banner: { js: BANNER },
    write: false,
    logLevel: "silent",
    legalComments: "none",
  });
  const text = result.outputFiles?.[0]?.text;
  if (!text) throw new LabSetupError(`esbuild produced no output for ${entry}`);
  return text;
}
