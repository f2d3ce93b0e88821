// An SRE's follower: every reset outcome on the bus as it happens, with the time spent in each phase of it.
//   node sre-outcomes.mjs [--host HOST] [--since MINUTES] [--count N]
import { connect } from "cxlrc/client";

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i < 0 ? undefined : args[i + 1];
};
const host = opt("--host");
const since = opt("--since");
const count = Number(opt("--count") ?? Number.POSITIVE_INFINITY);

const client = await connect();
const stop = new AbortController();
process.on("SIGINT", () => stop.abort());
const OUTCOMES = new Set(["verified", "failed", "quarantined", "refused"]);
// Per request: when each state was entered (the coordinator's state.entered events).
const entered = new Map();
let seen = 0;
for await (const e of client.watch({
  ...(host ? { host } : {}),
  ...(since ? { since: new Date(Date.now() - Number(since) * 60_000) } : {}),
  signal: stop.signal,
})) {
  if (e.source !== "coordinator" || !e.requestId) continue;
  const t = Date.parse(e.time);
  if (e.kind === "state.entered") {
    const states = entered.get(e.requestId) ?? [];
    states.push([e.data.state, t]);
    entered.set(e.requestId, states);
    continue;
  }
  if (!OUTCOMES.has(e.kind)) continue;
  const states = entered.get(e.requestId) ?? [];
  entered.delete(e.requestId);
  const phases = states.map(([name, at], i) => `${name} ${(states[i + 1]?.[1] ?? t) - at} ms`);
  const total = states.length > 0 ? `${t - states[0][1]} ms` : "-";
  console.log(`${e.time} ${e.host} ${e.bdf} ${e.requestId} ${e.kind} in ${total}: ${phases.join(", ")}`);
  if (++seen >= count) stop.abort();
}
await client.close();
