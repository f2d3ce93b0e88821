// Writes docs/asyncapi.yaml, the bus contract, from the zod schemas (shared/bus/asyncapi.ts):
//   npx tsx scripts/asyncapi.ts
import { readFileSync, writeFileSync } from "node:fs";
import { renderAsyncApi } from "../shared/bus/asyncapi.ts";

const root = new URL("../", import.meta.url);
const { version } = JSON.parse(readFileSync(new URL("package.json", root), "utf8")) as { version: string };
const text = renderAsyncApi({ version });
const out = new URL("docs/asyncapi.yaml", root);
writeFileSync(out, text);
process.stdout.write(`${out.pathname}: ${text.split("\n").length - 1} lines, ${text.length} bytes\n`);
