// `cxlrc release HOST BDF [--reason TEXT]`: an operator takes a device out of quarantine.
import { hostname, userInfo } from "node:os";
import { subjects } from "../../../shared/bus/subjects.ts";
import { BUS_OPTIONS, checkBdfArg, checkHostArg, parseFlags, takePositionals } from "../args.ts";
import { control, resolveServer, withBus } from "../bus.ts";
import { EXIT } from "../exit.ts";

export const usage = `Usage: cxlrc release HOST BDF [--reason TEXT] [--operator NAME] [--json]

Take a quarantined device out of quarantine: it accepts reset requests again and its count of scope
violations starts from zero. Look at \`cxlrc image show HOST BDF\` and \`cxlrc watch --device BDF --since 1d\`
first: a device is quarantined because a restore could not be verified.

Options:
  --reason TEXT     why (kept in the released event; default "released by operator")
  --operator NAME   who (default: user@host)
  --json            the coordinator's reply as JSON
  --server URL      NATS server (default $CXLRC_NATS_URL or nats://127.0.0.1:4222)
  -h, --help        this text

Exit codes: 0 released, 2 bad input (also: the device is not quarantined), 3 bus or coordinator
unavailable.`;

function operatorName(): string {
  try {
    return `${userInfo().username}@${hostname()}`;
  } catch {
    return `unknown@${hostname()}`;
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("release", argv, {
    ...BUS_OPTIONS,
    reason: { type: "string" },
    operator: { type: "string" },
    json: { type: "boolean" },
  });
  const [h, b] = takePositionals("release", positionals, ["HOST", "BDF"]);
  const host = checkHostArg(h!);
  const bdf = checkBdfArg(b!);
  const body = {
    host,
    bdf,
    operator: (values.operator ?? operatorName()).slice(0, 128),
    reason: values.reason ?? "released by operator",
  };
  return withBus("release", resolveServer(values.server), async (nc) => {
    const reply = await control(nc, subjects.release, body);
    if (values.json) process.stdout.write(`${JSON.stringify(reply)}\n`);
    else process.stdout.write(`released ${host} ${bdf} from quarantine\n`);
    return EXIT.ok;
  });
}
