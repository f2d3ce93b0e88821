// `cxlrc watch [--host H] [--device BDF] [--since 1h|ISO] [--json]`: the live event stream, one line per event.

import { feedEvent } from "../../../client/feed-event.ts";
import { clientOn } from "../../../client/index.ts";
import { BUS_OPTIONS, checkBdfArg, checkHostArg, parseFlags, parseSince, takePositionals } from "../args.ts";
import { resolveServer, withBus } from "../bus.ts";
import { EXIT } from "../exit.ts";
import { coloursFor } from "../format/colour.ts";
import { eventJson, eventLine } from "../format/event.ts";

export const usage = `Usage: cxlrc watch [--host HOST] [--device BDF] [--since DURATION|ISO] [--json]

Follow the events of the fleet: plans, refusals, phase changes, agent steps, scope violations, outcomes.
Live events come as they are published; --since first replays the stored ones through the coordinator
(cxlrc.ctl.events). One line per event: time, host, device, publisher (coord or agent), kind and a short
summary (colours on a terminal only). Host, device, kind and publisher are read from the subject the event
came on, which only that publisher may use; an envelope that claims otherwise is flagged. Ctrl-C stops.

Options:
  --host HOST        only this host's events
  --device BDF       only this device's events (with or without --host)
  --since WHEN       start in the past: a duration back from now (30s, 30m, 1h, 2d) or an ISO time;
                     default: only new events
  --json             one JSON object per line: the subject it came on and the event envelope
                     ({subject,v,id,time,host,bdf,kind,requestId?,opId?,data})
  --heartbeats       also show agent heartbeats (hidden by default)
  --server URL       NATS server (default $CXLRC_NATS_URL or nats://127.0.0.1:4222)
  -h, --help         this text

Exit codes: 0 stopped with Ctrl-C, 2 bad input, 3 bus unavailable or no event stream yet.`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags("watch", argv, {
    ...BUS_OPTIONS,
    host: { type: "string" },
    device: { type: "string" },
    since: { type: "string" },
    json: { type: "boolean" },
    heartbeats: { type: "boolean" },
  });
  takePositionals("watch", positionals, []);
  const host = values.host !== undefined ? checkHostArg(values.host) : undefined;
  const device = values.device !== undefined ? checkBdfArg(values.device) : undefined;
  const since = values.since !== undefined ? parseSince(values.since) : undefined;
  const c = coloursFor(process.stdout);
  const json = values.json === true;

  return withBus("watch", resolveServer(values.server), async (nc) => {
    const stopping = new AbortController();
    const stop = () => stopping.abort();
    // A closed pipe (`cxlrc watch | head`) ends the watch quietly.
    process.stdout.on("error", stop);
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    // The connection closing (server gone for good) also ends the feed.
    void nc.closed().then(stop);
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
        process.stdout.write(json ? `${eventJson(e)}\n` : `${eventLine(e, c)}\n`);
      }
    } finally {
      process.removeListener("SIGINT", stop);
      process.removeListener("SIGTERM", stop);
    }
    return EXIT.ok;
  });
}
