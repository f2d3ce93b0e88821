// `cxlrc plan HOST BDF --scope io|full [...]`: the dry run. The coordinator computes scope, method,
// functions, siblings, gates and deadlines and touches nothing.
import { clientOn } from "../../../client/index.ts";
import { type BusFlags, busTarget, withBus } from "../bus.ts";
import { COMMANDS } from "../command-table.ts";
import { EXIT } from "../exit.ts";
import { coloursFor } from "../format/colour.ts";
import { formatDecision, formatGates } from "../format/plan.ts";
import { BUS_USAGE } from "../help.ts";
import { parseRequestArgs, REQUEST_USAGE } from "../request.ts";

export const usage = `Usage: cxlrc plan HOST BDF --scope io|full [options]

Dry run of a reset: what the coordinator would do (scope, method, functions saved and restored, siblings,
cache flush, CONFIG_LOCK handling, deadlines) and every gate it checks, without touching the device.

Options:
${REQUEST_USAGE}
  -h, --help            this text

${BUS_USAGE}

Exit codes: 0 the reset would run, 1 it would be refused, 2 bad input, 3 bus or coordinator unavailable.`;

export async function run(argv: string[]): Promise<number> {
  const { values, request } = parseRequestArgs("plan", argv, COMMANDS.plan.options);
  const server = busTarget(values as BusFlags);
  const c = coloursFor(process.stdout);
  return withBus("plan", server, async (nc) => {
    const { requester, dryRun: _d, ...input } = request;
    const d = await clientOn(nc, { name: "cxlrc plan", ...(requester ? { requester } : {}) }).plan(input);
    if (values.json === true) process.stdout.write(`${JSON.stringify(d, null, 2)}\n`);
    else {
      process.stdout.write(`${formatDecision(d, c)}\n`);
      const gates = d.kind === "plan" ? d.plan.gates : null;
      if (gates && gates.length > 0) process.stdout.write(`${formatGates(gates, c)}\n`);
    }
    return d.kind === "plan" ? EXIT.ok : EXIT.failure;
  });
}
