// Reset one device and wait for its outcome (README, "Use it from code"): node reset-device.mjs HOST BDF
import { connect } from "cxlrc/client";

const [host, bdf] = process.argv.slice(2);
const client = await connect(); // $CXLRC_NATS_URL, else nats://127.0.0.1:4222
const reset = await client.reset({ host, bdf, scope: "full", reason: "GPU hang" });
console.log(`${reset.requestId}: ${reset.decision.kind}`);
for await (const e of reset.events) if (e.kind === "state.entered") console.log(`  ${e.data.state}`);
const outcome = await reset.outcome;
console.log(`${outcome.kind}${outcome.message ? `: ${outcome.message}` : ""}`);
await client.close();
process.exitCode = outcome.kind === "verified" ? 0 : 1;
