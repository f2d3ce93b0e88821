// The page's script and style sheet, served from files beside this module (services/ui/assets/; the build
// copies them to dist/). Read once at start: a missing file fails the start, not a browser's request.
import { readFileSync } from "node:fs";
import { CxlrcError } from "../../shared/errors.ts";

export interface Asset {
  type: string;
  body: Buffer;
}

const FILES: Record<string, string> = {
  "/assets/app.js": "text/javascript; charset=utf-8",
  "/assets/app.css": "text/css; charset=utf-8",
};

export function loadAssets(dir: URL = new URL("./assets/", import.meta.url)): Map<string, Asset> {
  const out = new Map<string, Asset>();
  for (const [path, type] of Object.entries(FILES)) {
    const file = new URL(path.slice("/assets/".length), dir);
    try {
      out.set(path, { type, body: readFileSync(file) });
    } catch (e) {
      throw new CxlrcError(
        "internal",
        `the fleet page's ${path} is missing at ${file.pathname} (a build without services/ui/assets?)`,
        { path: file.pathname },
        { cause: e },
      );
    }
  }
  return out;
}
