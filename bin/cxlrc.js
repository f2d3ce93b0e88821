#!/usr/bin/env node
// `cxlrc`: the CLI compiled to dist/ (`npm run build`; `npm ci` and `npm pack` run it), run by plain node:
// no TypeScript loader and no cache written anywhere at run time.
let cli;
try {
  cli = await import("../dist/services/cli/main.js");
} catch (e) {
  if (e?.code === "ERR_MODULE_NOT_FOUND" && String(e.message).includes("dist/services/cli/main.js")) {
    process.stderr.write("cxlrc: this checkout is not built: run `npm run build` (npm ci does it)\n");
    process.exit(1);
  }
  throw e;
}
process.exitCode = await cli.main(process.argv.slice(2));
