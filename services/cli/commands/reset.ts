// `cxlrc reset HOST BDF --scope io|full [...] [--wait]`: ask the coordinator for a reset, print its plan or
// refusal, and with --wait follow the device to its outcome.
import type { NatsConnection } from "@nats-io/transport-node";
import { subjects } from "../../../shared/bus/subjects.ts";
import { parseDuration } from "../args.ts";
import { control, resolveServer, withBus } from "../bus.ts";
import { eventFilter, nextEventSeq, openEvents } from "../events.ts";
import { EXIT } from "../exit.ts";
import { followRequests } from "../follow.ts";
import { LiveBoard } from "../format/board.ts";
import { type Colours, coloursFor } from "../format/colour.ts";
import { formatMs } from "../format/duration.ts";
import { eventJson, eventLine } from "../format/event.ts";
import { decisionsOf, formatDecision } from "../format/plan.ts";
import { parseRequestArgs, REQUEST_USAGE } from "../request.ts";
import { groupTimes, newTracked, outcomeOk, PHASE_GROUPS, type TrackedRequest, totalMs } from "../track.ts";

export const usage = `Usage: cxlrc reset HOST BDF --scope io|full [options]

Ask the coordinator to reset a CXL device. It answers with the plan (scope, method, every function it saves
and restores, deadlines) or a refusal naming the reason (device-busy, sibling-busy, in-progress, cooldown,
breaker-open, flr-unsupported...). With --wait, follow the reset to its end: a live line on a terminal
(phase, elapsed), one line per event otherwise.

BDF is function 0 of the device, e.g. 0000:0d:00.0 (or 0d:00.0).

Options:
${REQUEST_USAGE}
  --wait                follow the reset until verified, failed, quarantined or refused
  --timeout DURATION    with --wait: stop waiting after this long (default 10m; the reset goes on)
  -h, --help            this text

Exit codes: 0 planned (without --wait) or verified, 1 refused, failed or quarantined (or --timeout passed),
2 bad input, 3 bus or coordinator unavailable.`;

export async function run(argv: string[]): Promise<number> {
  const { values, request } = parseRequestArgs("reset", argv, {
    wait: { type: "boolean" },
    timeout: { type: "string" },
  });
  const server = resolveServer(values.server as string | undefined);
  const json = values.json === true;
  const wait = values.wait === true;
  const timeoutMs =
    values.timeout !== undefined ? parseDuration("--timeout", values.timeout as string) : 10 * 60_000;
  const c = coloursFor(process.stdout);

  return withBus("reset", server, async (nc) => {
    // Remember where the event stream stands before asking, so no event of this request is missed.
    const startSeq = wait ? await nextEventSeq(nc) : 0;
    const reply = await control(nc, subjects.submit(request.host), request);
    const [decision] = decisionsOf(reply, { requestId: request.requestId, bdf: request.bdf! });
    if (json) process.stdout.write(`${JSON.stringify(reply)}\n`);
    else if (decision) process.stdout.write(`${formatDecision(decision, c)}\n`);
    if (!decision) {
      process.stderr.write("cxlrc reset: the coordinator's reply holds no decision\n");
      return EXIT.failure;
    }
    if (decision.kind === "refused") return EXIT.failure;
    if (decision.kind === "rejected") return EXIT.usage;
    if (decision.kind === "duplicate") {
      const ended = outcomeOf(reply);
      if (ended !== null) return outcomeOk(ended) ? EXIT.ok : EXIT.failure;
    }
    if (!wait) return EXIT.ok;
    const t = newTracked(decision.requestId, request.host, request.bdf!);
    if (decision.kind === "plan") {
      t.scope = decision.plan.scope;
      t.method = decision.plan.method;
    }
    return follow(nc, t, startSeq, timeoutMs, json, c);
  });
}

/** The outcome a duplicate's reply reports, when the first request already ended. */
function outcomeOf(reply: unknown): string | null {
  const o = (reply as { outcome?: { outcome?: unknown } } | null)?.outcome?.outcome;
  return typeof o === "string" ? o : null;
}

async function follow(
  nc: NatsConnection,
  t: TrackedRequest,
  startSeq: number,
  timeoutMs: number,
  json: boolean,
  c: Colours,
): Promise<number> {
  const feed = await openEvents(nc, eventFilter(t.host), { from: "seq", seq: startSeq });
  const board = new LiveBoard(process.stdout, c, !json && process.stdout.isTTY === true);
  board.add({ tracked: t });
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once("SIGINT", onSigint);
  let ended: Awaited<ReturnType<typeof followRequests>>;
  try {
    ended = await followRequests(feed, [t], {
      timeoutMs,
      signal: abort.signal,
      onEvent: (e) => {
        if (json) process.stdout.write(`${eventJson(e)}\n`);
        else if (board.live) board.draw();
        else process.stdout.write(`${eventLine(e, c)}\n`);
      },
    });
  } finally {
    process.removeListener("SIGINT", onSigint);
    board.stop();
  }
  if (ended !== "done") {
    const why = ended === "timeout" ? `still running after ${formatMs(timeoutMs)}` : "interrupted";
    process.stderr.write(
      `cxlrc reset: ${why}; the reset goes on: cxlrc watch --host ${t.host} --device ${t.bdf} --since 1h\n`,
    );
    return EXIT.failure;
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(resultObject(t))}\n`);
  } else {
    process.stdout.write(`${resultLine(t, c)}\n`);
  }
  return outcomeOk(t.outcome) ? EXIT.ok : EXIT.failure;
}

export function resultObject(t: TrackedRequest) {
  return {
    requestId: t.requestId,
    host: t.host,
    bdf: t.bdf,
    scope: t.scope,
    method: t.method,
    outcome: t.outcome,
    reason: t.reason,
    repaired: t.repaired,
    scopeViolations: t.violations,
    totalMs: totalMs(t),
    phasesMs: groupTimes(t),
  };
}

function resultLine(t: TrackedRequest, c: Colours): string {
  const times = groupTimes(t);
  const phases = PHASE_GROUPS.filter((g) => times[g] !== null)
    .map((g) => `${g} ${formatMs(times[g]!)}`)
    .join(", ");
  const outcome = t.outcome === "verified" ? c.green("verified") : c.red(t.outcome ?? "?");
  const extra = [
    t.repaired ? `repaired a scope violation (${t.violations.join(", ")})` : null,
    t.outcome !== "verified" && t.reason ? t.reason : null,
  ].filter((x) => x !== null);
  return `${outcome} ${t.host} ${t.bdf} ${t.scope ?? "?"}/${t.method ?? "?"} in ${formatMs(totalMs(t) ?? 0)}${
    extra.length ? `: ${extra.join("; ")}` : ""
  }${phases ? ` (${phases})` : ""}`;
}
