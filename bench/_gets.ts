import { request, startWorld } from "./support/world.ts";
const w = await startWorld({ hosts: 10, perHost: 10 });
const coord = await w.coordinator();
const counts = new Map<string, number>();
let on = false;
w.driver.nc.subscribe("$JS.API.>", { callback: (_e, m) => { if (!on) return; const k = m.subject.split(".").slice(0, 5).join(".") + (m.subject.includes("images") ? " images" : m.subject.includes("actors") ? " actors" : m.subject.includes("admission") ? " admission" : m.subject.includes("decisions") ? " decisions" : m.subject.includes("leases") ? " leases": ""); counts.set(k, (counts.get(k) ?? 0) + 1); } });
const kv = new Map<string, number>();
w.driver.nc.subscribe("$KV.>", { callback: (_e, m) => { if (!on) return; const k = m.subject.split(".").slice(0, 2).join("."); kv.set(k, (kv.get(k) ?? 0) + 1); } });
for (let r = 0; r < 3; r++) {
  if (r === 2) on = true;
  const ids = w.devices.map((d, i) => `g-${r}-${i}`);
  await Promise.all(w.devices.map((d, i) => w.driver.request(request(ids[i]!, d, "full"))));
  await w.driver.outcomes(ids, 120000);
  await new Promise((x) => setTimeout(x, 1500));
  on = false;
}
console.log("per reset, round 3 of 100 devices:");
for (const [k, v] of [...counts, ...kv].sort()) console.log(String((v / 100).toFixed(2)).padStart(6), k);
await coord.stop(30000); await w.close();
