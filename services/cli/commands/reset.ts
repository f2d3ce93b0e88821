// `cxlrc reset HOST BDF --scope io|full [...] [--wait]`: ask the coordinator for a reset, print its plan or
// refusal, and with --wait follow the device to its outcome.

import { feedEvent } from "../../../client/feed-event.ts";
import { ClientError, clientOn, type Outcome, type ResetHandle } from "../../../client/index.ts";
import { applyEvent, newTracked, outcomeOk } from "../../../client/track.ts";
import { parseDuration } from "../args.ts";
import { type BusFlags, busTarget, withBus } from "../bus.ts";
import { COMMANDS } from "../command-table.ts";
import { EXIT } from "../exit.ts";
import { LiveBoard } from "../format/board.ts";
import { type Colours, coloursFor } from "../format/colour.ts";
import { formatMs } from "../format/duration.ts";
import { eventJson, eventLine } from "../format/event.ts";
import { formatDecision } from "../format/plan.ts";
import { resultLine, resultObject } from "../format/result.ts";
import { BUS_USAGE } from "../help.ts";
import { parseRequestArgs, REQUEST_USAGE } from "../request.ts";

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

${BUS_USAGE}

Exit codes: 0 planned (without --wait) or verified, 1 refused, failed or quarantined (or --timeout passed),
2 bad input, 3 bus or coordinator unavailable.`;

export async function run(argv: string[]): Promise<number> {
  const { values, request } = parseRequestArgs("reset", argv, COMMANDS.reset.options);
  const server = busTarget(values as BusFlags);
  const json = values.json === true;
  const wait = values.wait === true;
  const timeoutMs =
    values.timeout !== undefined ? parseDuration("--timeout", values.timeout as string) : 10 * 60_000;
  const c = coloursFor(process.stdout);

  return withBus("reset", server, async (nc) => {
    const client = clientOn(nc, {
      name: "cxlrc reset",
      ...(request.requester ? { requester: request.requester } : {}),
    });
    const { requester: _r, dryRun: _d, ...input } = request;
    if (!wait) {
      const decision = await client.submit(input);
      if (json) process.stdout.write(`${JSON.stringify(decision)}\n`);
      else process.stdout.write(`${formatDecision(decision, c)}\n`);
      return decision.kind === "refused" ? EXIT.failure : decision.kind === "rejected" ? EXIT.usage : EXIT.ok;
    }
    const abort = new AbortController();
    const onSigint = () => abort.abort();
    process.once("SIGINT", onSigint);
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      const h = await client.reset(input, { signal: abort.signal });
      if (json) process.stdout.write(`${JSON.stringify(h.decision)}\n`);
      else process.stdout.write(`${formatDecision(h.decision, c)}\n`);
      if (h.decision.kind === "rejected") return EXIT.usage;
      return await follow(h, json, c, abort.signal, timeoutMs);
    } finally {
      clearTimeout(timer);
      process.removeListener("SIGINT", onSigint);
    }
  });
}

/** Show the request's events as they come (a live line on a terminal), then its outcome (the client's). */
async function follow(
  h: ResetHandle,
  json: boolean,
  c: Colours,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<number> {
  const t = newTracked(h.requestId, h.host, h.bdf);
  if (h.decision.kind === "plan") {
    t.scope = h.decision.plan.scope;
    t.method = h.decision.plan.method;
  }
  const board = new LiveBoard(process.stdout, c, !json && process.stdout.isTTY === true);
  board.add({ tracked: t });
  try {
    for await (const ev of h.events) {
      const e = feedEvent(ev.subject, ev.envelope);
      if (!e) continue;
      applyEvent(t, e);
      if (json) process.stdout.write(`${eventJson(e)}\n`);
      else if (board.live) board.draw();
      else process.stdout.write(`${eventLine(e, c)}\n`);
    }
  } finally {
    board.stop();
  }
  let outcome: Outcome;
  try {
    outcome = await h.outcome;
  } catch (e) {
    if (!(e instanceof ClientError) || e.kind !== "aborted") throw e;
    const why =
      signal.aborted && t.outcome === null
        ? `still running after ${formatMs(timeoutMs)} or interrupted`
        : "interrupted";
    process.stderr.write(
      `cxlrc reset: ${why}; the reset goes on: cxlrc watch --host ${h.host} --device ${h.bdf} --since 1h\n`,
    );
    return EXIT.failure;
  }
  // The client decided how it ended; the board's record agrees on what it saw.
  t.outcome = outcome.kind;
  t.reason ??= outcome.message ?? outcome.reason;
  if (json) process.stdout.write(`${JSON.stringify(resultObject(t))}\n`);
  else process.stdout.write(`${resultLine(t, c)}\n`);
  return outcomeOk(t.outcome) ? EXIT.ok : EXIT.failure;
}
