// `cxlrc watch [--host H] [--device BDF] [--request ID] [--since 1h|ISO] [--json]`: the live event stream, one
// line per event; with --request, one request's events until its outcome (exit code as `reset --wait`).

import { type FeedEvent, feedEvent, fromCoordinator } from "../../../client/feed-event.ts";
import { clientOn } from "../../../client/index.ts";
import { applyEvent, newTracked, outcomeOk, type TrackedRequest } from "../../../client/track.ts";
import {
  checkBdfArg,
  checkHostArg,
  parseDuration,
  parseFlags,
  parseSince,
  takePositionals,
} from "../args.ts";
import { busTarget, withBus } from "../bus.ts";
import { COMMANDS } from "../command-table.ts";
import { EXIT, UsageError } from "../exit.ts";
import { coloursFor } from "../format/colour.ts";
import { formatMs } from "../format/duration.ts";
import { eventJson, eventLine } from "../format/event.ts";
import { resultLine, resultObject } from "../format/result.ts";
import { BUS_USAGE } from "../help.ts";

/** How far back --request looks for the request's start when --since is not given. */
const REQUEST_LOOKBACK = "1d";

export const usage = `Usage: cxlrc watch [--host HOST] [--device BDF] [--since DURATION|ISO] [--json]
       cxlrc watch --request ID [--since DURATION|ISO] [--timeout DURATION] [--json]

Follow the events of the fleet: plans, refusals, phase changes, agent steps, scope violations, outcomes.
Live events come as they are published; --since first replays the stored ones through the coordinator
(cxlrc.ctl.events). One line per event: time, host, device, publisher (coord or agent), kind and a short
summary (colours on a terminal only). Host, device, kind and publisher are read from the subject the event
came on, which only that publisher may use; an envelope that claims otherwise is flagged. Ctrl-C stops.

With --request ID: only that request's events, from its start (the stored events of the last
${REQUEST_LOOKBACK}, or of --since, are read first), and the watch ends once its outcome arrives, with a result line
(or object) as \`cxlrc reset --wait\` prints. Only the coordinator's events say how it ended.

Options:
  --host HOST          only this host's events
  --device BDF         only this device's events (with or without --host)
  --request ID         only this request's events; exit when it ends
  --since WHEN         start in the past: a duration back from now (30s, 30m, 1h, 2d) or an ISO time;
                       default: only new events (with --request: the last ${REQUEST_LOOKBACK})
  --timeout DURATION   with --request: stop waiting after this long (the request goes on)
  --json               one JSON object per line: the subject it came on and the event envelope
                       ({subject,v,id,time,host,bdf,kind,requestId?,opId?,data}); with --request, a
                       result object last
  --heartbeats         also show agent heartbeats (hidden by default)
  -h, --help           this text

${BUS_USAGE}

Exit codes: 0 stopped with Ctrl-C (with --request: the request was verified), 1 with --request: it was
refused, failed or quarantined, or the watch stopped first, 2 bad input, 3 bus unavailable or no event
stream yet.`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("watch", argv, COMMANDS.watch.options);
  takePositionals("watch", positionals, []);
  const host = values.host !== undefined ? checkHostArg(values.host) : undefined;
  const device = values.device !== undefined ? checkBdfArg(values.device) : undefined;
  const requestId = values.request;
  if (requestId !== undefined && !/^[\x21-\x7e]{1,128}$/.test(requestId)) {
    throw new UsageError(
      `bad --request ${JSON.stringify(requestId)}: a request id (1-128 printable characters)`,
    );
  }
  if (values.timeout !== undefined && requestId === undefined)
    throw new UsageError("--timeout goes with --request");
  const timeoutMs = values.timeout !== undefined ? parseDuration("--timeout", values.timeout) : undefined;
  const sinceText = values.since ?? (requestId !== undefined ? REQUEST_LOOKBACK : undefined);
  const since = sinceText !== undefined ? parseSince(sinceText) : undefined;
  const c = coloursFor(process.stdout);
  const json = values.json === true;
  const target = busTarget(values);

  return withBus("watch", target, async (nc) => {
    const stopping = new AbortController();
    const stop = () => stopping.abort();
    // A closed pipe (`cxlrc watch | head`) ends the watch quietly.
    process.stdout.on("error", stop);
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    // The connection closing (server gone for good) also ends the feed.
    void nc.closed().then(stop);
    let timedOut = false;
    const timer =
      timeoutMs !== undefined
        ? setTimeout(() => {
            timedOut = true;
            stop();
          }, timeoutMs)
        : undefined;
    const request = requestId !== undefined ? requestWatch(requestId, host) : null;
    try {
      const events = clientOn(nc, { name: "cxlrc watch" }).watch({
        ...(host !== undefined ? { host } : {}),
        ...(device !== undefined ? { bdf: device } : {}),
        ...(since !== undefined ? { since } : {}),
        signal: stopping.signal,
      });
      for await (const ev of events) {
        const e = feedEvent(ev.subject, ev.envelope);
        if (!e) continue;
        if (!values.heartbeats && e.origin.kind === "heartbeat" && e.origin.device === "agent") continue;
        if (request && !request.accept(e)) continue;
        process.stdout.write(json ? `${eventJson(e)}\n` : `${eventLine(e, c)}\n`);
        if (request?.tracked()?.outcome) break;
      }
    } finally {
      if (timer) clearTimeout(timer);
      process.removeListener("SIGINT", stop);
      process.removeListener("SIGTERM", stop);
    }
    if (!request) return EXIT.ok;
    const t = request.tracked();
    if (!t?.outcome) {
      const why = timedOut ? `still running after ${formatMs(timeoutMs ?? 0)}` : "interrupted";
      process.stderr.write(`cxlrc watch: ${why}; ${requestId} goes on: cxlrc watch --request ${requestId}\n`);
      return EXIT.failure;
    }
    process.stdout.write(json ? `${JSON.stringify(resultObject(t))}\n` : `${resultLine(t, c)}\n`);
    return outcomeOk(t.outcome) ? EXIT.ok : EXIT.failure;
  });
}

/**
 * One request's events. Its host and device are those of the first coordinator event that names it (only a
 * coordinator publishes there), or --host; after that, events from other hosts' subjects are not its own.
 */
function requestWatch(requestId: string, host: string | undefined) {
  let t: TrackedRequest | null = null;
  return {
    tracked: () => t,
    accept(e: FeedEvent): boolean {
      if (e.event.requestId !== requestId) return false;
      if (t === null && fromCoordinator(e) && (host === undefined || e.origin.host === host)) {
        t = newTracked(requestId, e.origin.host, e.event.bdf ?? "?");
      }
      const knownHost = t?.host ?? host;
      if (knownHost !== undefined && e.origin.host !== knownHost) return false;
      if (t) applyEvent(t, e);
      return true;
    },
  };
}
