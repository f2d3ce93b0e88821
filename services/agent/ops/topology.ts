// Who is who around a function: the functions of its device, the bridge above, everything below a bridge
// (recursively: a secondary bus reset reaches through switches) and the siblings a bus reset would hit.
import { CxlrcError } from "../../../shared/errors.ts";
import {
  formatBdf,
  type HardwareBackend,
  type PciFunctionInfo,
  parseBdf,
} from "../../../shared/hw/backend.ts";

/** "DDDD:BB:DD": the device part of a BDF. */
export function deviceKey(bdf: string): string {
  return bdf.slice(0, bdf.lastIndexOf("."));
}

export function function0(bdf: string): string {
  return formatBdf({ ...parseBdf(bdf), fn: 0 });
}

const byBdf = (a: { bdf: string }, b: { bdf: string }) => (a.bdf < b.bdf ? -1 : a.bdf > b.bdf ? 1 : 0);

/** Every function of the device `bdf` belongs to, sorted (function 0 first). */
export function functionsOf(all: readonly PciFunctionInfo[], bdf: string): PciFunctionInfo[] {
  const key = deviceKey(bdf);
  return all.filter((f) => deviceKey(f.bdf) === key).sort(byBdf);
}

/** Every function below a bridge, through any bridges below it. */
export function below(all: readonly PciFunctionInfo[], bridge: string): PciFunctionInfo[] {
  const out: PciFunctionInfo[] = [];
  const queue = [bridge];
  const seen = new Set<string>(queue);
  while (queue.length > 0) {
    const p = queue.shift()!;
    for (const f of all) {
      if (f.parent !== p || seen.has(f.bdf)) continue;
      seen.add(f.bdf);
      out.push(f);
      if (f.headerType === 1) queue.push(f.bdf);
    }
  }
  return out.sort(byBdf);
}

/** Functions a bus reset of `bdf`'s parent bridge would reach that are not part of `bdf`'s device. */
export function siblingsOf(all: readonly PciFunctionInfo[], bdf: string): PciFunctionInfo[] {
  const me = all.find((f) => f.bdf === bdf);
  if (!me?.parent) return [];
  const key = deviceKey(bdf);
  return below(all, me.parent).filter((f) => deviceKey(f.bdf) !== key);
}

/** The function's listing entry, or a "device-absent" error. */
export async function describeFunction(
  b: HardwareBackend,
  bdf: string,
): Promise<{ me: PciFunctionInfo; all: PciFunctionInfo[] }> {
  const all = await b.listFunctions();
  const me = all.find((f) => f.bdf === bdf);
  if (!me) throw new CxlrcError("device-absent", `no PCI function ${bdf} on this host`, { bdf });
  return { me, all };
}
