// A fleet controller: reset every device of a host, a few at a time, honouring the coordinator's refusals
// (a refusal with retryAfterMs is tried again after that long, under a new request id; any other is final),
// and print a summary.   node fleet-controller.mjs HOST [--batch N] [--scope io|full] [BDF...]
import { connect } from "cxlrc/client";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i < 0 ? dflt : args.splice(i, 2)[1];
};
const batch = Number(opt("--batch", "4"));
const scope = opt("--scope", "full");
const [host, ...named] = args;
if (!host || !(batch > 0)) {
  console.error("usage: fleet-controller.mjs HOST [--batch N] [--scope io|full] [BDF...]");
  process.exit(2);
}

const client = await connect();
// The devices: as named, or every device the coordinator knows on the host.
const bdfs =
  named.length > 0
    ? named
    : (await client.status({ host })).devices.filter((d) => d.host === host).map((d) => d.bdf);
const results = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function resetOne(bdf) {
  for (let attempt = 1; attempt <= 5; attempt++) {
    const started = Date.now();
    const h = await client.reset({ host, bdf, scope, reason: `fleet controller: ${scope} reset of ${host}` });
    const out = await h.outcome;
    const retryAfterMs = h.decision.kind === "refused" ? h.decision.refusal.retryAfterMs : undefined;
    if (out.kind === "refused" && retryAfterMs !== undefined && attempt < 5) {
      console.log(`${bdf}: refused ${out.reason}, trying again in ${retryAfterMs} ms`);
      await sleep(retryAfterMs);
      continue;
    }
    return { bdf, outcome: out.kind, reason: out.reason, ms: Date.now() - started, attempts: attempt };
  }
}

for (let i = 0; i < bdfs.length; i += batch) {
  const group = bdfs.slice(i, i + batch);
  for (const r of await Promise.all(group.map(resetOne))) {
    results.push(r);
    console.log(`${r.bdf}: ${r.outcome}${r.reason ? ` (${r.reason})` : ""} in ${r.ms} ms`);
  }
}
const by = {};
for (const r of results) by[r.outcome] = (by[r.outcome] ?? 0) + 1;
console.log(
  `summary ${host}: ${results.length} device(s), ${Object.entries(by)
    .map(([k, n]) => `${n} ${k}`)
    .join(", ")}`,
);
await client.close();
process.exitCode = results.every((r) => r.outcome === "verified") ? 0 : 1;
