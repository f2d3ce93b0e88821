// `cxlrc breaker status|close [--operator NAME] [--reason TEXT] [--json]`: the fleet circuit breaker. It opens
// by itself when too many resets fail and closes only by an operator (cxlrc.ctl.breaker).
import { hostname, userInfo } from "node:os";
import { clientOn } from "../../../client/index.ts";
import { parseFlags, takePositionals, takeTarget } from "../args.ts";
import { busTarget, withBus } from "../bus.ts";
import { COMMANDS, optionsOf } from "../command-table.ts";
import { EXIT } from "../exit.ts";
import { type Colours, coloursFor } from "../format/colour.ts";
import { formatMs } from "../format/duration.ts";
import { BUS_USAGE } from "../help.ts";

export const usage = `Usage: cxlrc breaker status [--json]
       cxlrc breaker close [--operator NAME] [--reason TEXT] [--json]

The fleet circuit breaker: when too large a share of the resets in the policy's window failed or ended
quarantined, every coordinator refuses new resets (breaker-open) until an operator closes it. Look at
\`cxlrc status\` and \`cxlrc watch --since 1h\` first: the breaker opened for a reason.

  status    open or closed; since when and why it opened; who closed it last
  close     close it (operators): new resets are accepted again; the outcomes counted so far are dropped.
            Closing a closed breaker changes nothing but who closed it last

Options:
  --operator NAME   who closes it (default: user@host)
  --reason TEXT     why (kept in the breaker.closed event; default "closed by operator")
  --json            the coordinator's reply as JSON
  -h, --help        this text

${BUS_USAGE}

Exit codes: 0 shown or closed, 2 bad input, 3 bus or coordinator unavailable.`;

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : {});

function operatorName(): string {
  try {
    return `${userInfo().username}@${hostname()}`;
  } catch {
    return `unknown@${hostname()}`;
  }
}

/** The breaker in a line (and who closed it last), from a status or close reply's `breaker`. */
export function breakerLine(breaker: unknown, c: Colours, nowMs = Date.now()): string {
  const b = obj(breaker);
  const closedBy = obj(b.closedBy);
  const last =
    typeof closedBy.operator === "string" && typeof closedBy.atMs === "number"
      ? `; last closed by ${closedBy.operator} ${formatMs(nowMs - closedBy.atMs)} ago`
      : "";
  if (b.status === "open") {
    const since =
      typeof b.openedAtMs === "number"
        ? ` since ${new Date(b.openedAtMs).toISOString()} (${formatMs(nowMs - b.openedAtMs)})`
        : "";
    return `breaker ${c.red("open")}${since}: ${String(b.reason ?? "?")} (new resets are refused: cxlrc breaker close)`;
  }
  return `breaker ${c.green("closed")}${last}`;
}

export async function run(argv: string[]): Promise<number> {
  const spec = COMMANDS.breaker;
  const { target, rest } = takeTarget("breaker", argv, Object.keys(spec.targets), optionsOf(spec, "close"));
  return target === "close" ? close(rest) : status(rest);
}

async function status(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("breaker", argv, COMMANDS.breaker.options);
  takePositionals("breaker", positionals, []);
  return withBus("breaker", busTarget(values), async (nc) => {
    const reply = await clientOn(nc, { name: "cxlrc breaker" }).status();
    if (values.json) process.stdout.write(`${JSON.stringify(reply.breaker ?? null)}\n`);
    else process.stdout.write(`${breakerLine(reply.breaker, coloursFor(process.stdout))}\n`);
    return EXIT.ok;
  });
}

async function close(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("breaker", argv, {
    ...COMMANDS.breaker.options,
    ...COMMANDS.breaker.targets.close,
  });
  takePositionals("breaker", positionals, []);
  const request = {
    operator: (values.operator ?? operatorName()).slice(0, 128),
    reason: values.reason ?? "closed by operator",
  };
  return withBus("breaker", busTarget(values), async (nc) => {
    const reply = await clientOn(nc, { name: "cxlrc breaker" }).breakerClose(request);
    if (values.json) process.stdout.write(`${JSON.stringify(reply)}\n`);
    else process.stdout.write(`${breakerLine(reply.breaker, coloursFor(process.stdout))}\n`);
    return EXIT.ok;
  });
}
