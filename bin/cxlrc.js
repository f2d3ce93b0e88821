#!/usr/bin/env node
// Entry point for `npx cxlrc`: load the TypeScript sources through tsx's ESM loader.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../services/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
