// `cxlrc release HOST BDF [--reason TEXT] [--restore]`: an operator takes a device out of quarantine,
// optionally restoring it from its last known good image first.
import { hostname, userInfo } from "node:os";
import { clientOn } from "../../../client/index.ts";
import { checkBdfArg, checkHostArg, parseFlags, takePositionals } from "../args.ts";
import { busTarget, withBus } from "../bus.ts";
import { COMMANDS } from "../command-table.ts";
import { EXIT } from "../exit.ts";
import { BUS_USAGE } from "../help.ts";

export const usage = `Usage: cxlrc release HOST BDF [--reason TEXT] [--operator NAME] [--restore] [--json]

Take a quarantined device out of quarantine: it accepts reset requests again and its count of scope
violations starts from zero. Look at \`cxlrc image show HOST BDF --verified\` and
\`cxlrc watch --device BDF --since 1d\` first: a device is quarantined because a restore could not be verified,
and a failed restore leaves it disabled (memory and DMA off, decoders possibly wiped).

Options:
  --restore         first put the device back from its last known good image (the last image a reset
                    verified): full-scope restore, then verify. Released only if the verify passes; otherwise
                    it stays quarantined with the reason (exit 1)
  --reason TEXT     why (kept in the released event; default "released by operator")
  --operator NAME   who (default: user@host)
  --json            the coordinator's reply as JSON
  -h, --help        this text

${BUS_USAGE}

Exit codes: 0 released, 1 the restore did not verify (still quarantined), 2 bad input (also: the device is
not quarantined, or --restore without a verified image), 3 bus or coordinator unavailable.`;

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : {});

/** One line per restored function: decoders as left by the restore, and the verify. */
function restoreLines(restore: unknown): string[] {
  const r = obj(restore);
  const img = obj(r.image);
  const out = [
    `restored from the last known good image (revision ${String(img.revision ?? "?")}, request ${String(img.requestId ?? "-")}, verified ${String(img.verifiedAt ?? "?")})`,
  ];
  for (const f of Array.isArray(r.functions) ? r.functions.map(obj) : []) {
    const decoders = (Array.isArray(f.decoders) ? f.decoders.map(obj) : [])
      .map((d) => `decoder${String(d.index)} ${String(d.action)}`)
      .join(", ");
    out.push(
      `  ${String(f.bdf)}: ${decoders || "no decoders"}; verify ${f.passed === true ? "passed" : "FAILED"}`,
    );
  }
  return out;
}

function operatorName(): string {
  try {
    return `${userInfo().username}@${hostname()}`;
  } catch {
    return `unknown@${hostname()}`;
  }
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("release", argv, COMMANDS.release.options);
  const [h, b] = takePositionals("release", positionals, ["HOST", "BDF"]);
  const host = checkHostArg(h!);
  const bdf = checkBdfArg(b!);
  const body = {
    host,
    bdf,
    operator: (values.operator ?? operatorName()).slice(0, 128),
    reason: values.reason ?? "released by operator",
    ...(values.restore ? { restore: true } : {}),
  };
  return withBus("release", busTarget(values), async (nc) => {
    const reply = await clientOn(nc, { name: "cxlrc release" }).release(body);
    if (values.json) process.stdout.write(`${JSON.stringify(reply)}\n`);
    else {
      const r = obj(reply);
      const lines = r.restore ? restoreLines(r.restore) : [];
      lines.push(`released ${host} ${bdf} from quarantine (now ${String(r.state ?? "?")})`);
      process.stdout.write(`${lines.join("\n")}\n`);
    }
    return EXIT.ok;
  });
}
