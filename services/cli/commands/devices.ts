// `cxlrc devices [--host H] [--json]`: every device the coordinator knows, one line each.

import { clientOn } from "../../../client/index.ts";
import { checkHostArg, parseFlags, takePositionals } from "../args.ts";
import { busTarget, withBus } from "../bus.ts";
import { COMMANDS } from "../command-table.ts";
import { EXIT } from "../exit.ts";
import { coloursFor } from "../format/colour.ts";
import { devicesOf, formatDevices } from "../format/status.ts";
import { BUS_USAGE } from "../help.ts";

export const usage = `Usage: cxlrc devices [--host HOST] [--json]

Every device the coordinator knows, one line each: host, address, lifecycle state (ready, a reset phase,
quarantined, unavailable...), whether this coordinator holds its lease and for which request, how many scope
violations were counted against it, and why it is quarantined.

Options:
  --host HOST    only this host
  --json         the device list as JSON
  -h, --help     this text

${BUS_USAGE}

Exit codes: 0 shown, 2 bad input, 3 bus or coordinator unavailable.`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("devices", argv, COMMANDS.devices.options);
  takePositionals("devices", positionals, []);
  const host = values.host !== undefined ? checkHostArg(values.host) : undefined;
  return withBus("devices", busTarget(values), async (nc) => {
    const reply = await clientOn(nc, { name: "cxlrc devices" }).status(host ? { host } : {});
    const devices = devicesOf(reply).filter((d) => host === undefined || d.host === host);
    if (values.json) process.stdout.write(`${JSON.stringify(devices, null, 2)}\n`);
    else process.stdout.write(`${formatDevices(devices, coloursFor(process.stdout))}\n`);
    return EXIT.ok;
  });
}
