// Messages on the bus during one full reset, by subject prefix (count, bytes), after warm-up: what a reset costs
// the bus. `npx tsx bench/messages.ts [device index]`
import { request, startWorld } from "./support/world.ts";

const w = await startWorld({ hosts: 100, perHost: 10 });
const coord = await w.coordinator();
for (let i = 0; i < 3; i++) {
  const id = `warm-${i}`;
  await w.driver.request(request(id, w.devices[i]!, "full"));
  await w.driver.outcomes([id], 60_000);
}
const counts = new Map<string, number>();
const sizes = new Map<string, number>();
let bytes = 0;
const sub = w.driver.nc.subscribe(">", {
  callback: (_e, m) => {
    const t = m.subject.split(".");
    const k =
      t[0] === "_INBOX" ? "_INBOX" : t[0] === "$JS" ? t.slice(0, 4).join(".") : t.slice(0, 3).join(".");
    counts.set(k, (counts.get(k) ?? 0) + 1);
    bytes += m.data.length;
    sizes.set(k, (sizes.get(k) ?? 0) + m.data.length);
  },
});
const id = "probe-1";
await w.driver.request(request(id, w.devices[Number(process.argv[2] ?? 0)]!, "full"));
await w.driver.outcomes([id], 60_000);
await new Promise((r) => setTimeout(r, 300));
sub.unsubscribe();
let total = 0;
for (const v of counts.values()) total += v;
console.log(`one reset: ${total} messages, ${bytes} bytes`);
for (const [k, v] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, 30))
  console.log(String(v).padStart(7), String(sizes.get(k)).padStart(8), "B", k);
await coord.stop(30_000);
await w.close();
