// `cxlrc status [--host H] [--json]`: the fleet as the coordinator sees it.

import { clientOn } from "../../../client/index.ts";
import { checkHostArg, parseFlags, takePositionals } from "../args.ts";
import { busTarget, withBus } from "../bus.ts";
import { COMMANDS } from "../command-table.ts";
import { EXIT } from "../exit.ts";
import { coloursFor } from "../format/colour.ts";
import { formatStatus } from "../format/status.ts";
import { BUS_USAGE } from "../help.ts";

export const usage = `Usage: cxlrc status [--host HOST] [--json]

The fleet as the coordinator sees it: per host, how many devices are ready, being reset, failed or
quarantined (devices driven by other coordinators included, with their state as stored and their owner); the device leases held right now (which request, which coordinator); the fleet circuit
breaker (closed, or open since when and why: it closes only by operator action).

Options:
  --host HOST    only this host
  --json         the coordinator's status reply as JSON
  -h, --help     this text

${BUS_USAGE}

Exit codes: 0 shown, 2 bad input, 3 bus or coordinator unavailable.`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("status", argv, COMMANDS.status.options);
  takePositionals("status", positionals, []);
  const host = values.host !== undefined ? checkHostArg(values.host) : undefined;
  return withBus("status", busTarget(values), async (nc) => {
    const reply = await clientOn(nc, { name: "cxlrc status" }).status(host ? { host } : {});
    if (values.json) process.stdout.write(`${JSON.stringify(reply, null, 2)}\n`);
    else process.stdout.write(`${formatStatus(reply, coloursFor(process.stdout), host)}\n`);
    return EXIT.ok;
  });
}
