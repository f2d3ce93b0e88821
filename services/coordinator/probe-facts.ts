// The agent's view of a device (probe + inventory) mapped onto what the policy plans from (DeviceFacts).
// machines/ never sees the wire format; this is the one place that knows both.
import type { DeviceFacts } from "../../machines/facts.ts";
import type { InventoryResult, ProbeResult } from "../../shared/bus/agent-contract.ts";

/** "0x1000-0x1fff" (inclusive end, as holders report online memory) → { base, size }. */
function rangeOf(detail: string): { base: string; size: string } | null {
  const m = /^(0x[0-9a-f]+)-(0x[0-9a-f]+)$/i.exec(detail.trim());
  if (!m) return null;
  const start = BigInt(m[1]!);
  const end = BigInt(m[2]!);
  if (end < start) return null;
  return { base: `0x${start.toString(16)}`, size: `0x${(end - start + 1n).toString(16)}` };
}

/**
 * The switch a port belongs to: a device hangs off a root port (no switch) or a switch downstream port, whose
 * parent is the switch's upstream port. That upstream port's BDF names the switch.
 */
export function switchOf(inv: InventoryResult | null, bridge: string | null): string | null {
  if (!inv || !bridge) return null;
  const port = inv.bridges.find((b) => b.bdf === bridge);
  return port?.parent ?? null;
}

export function factsFromProbe(host: string, probe: ProbeResult, inv: InventoryResult | null): DeviceFacts {
  const cxl = probe.cxl;
  const memoryOnline = probe.holders
    .filter((h) => h.kind === "memory-online")
    .map((h) => rangeOf(h.detail))
    // An online range that cannot be parsed must still block a full reset: device-busy counts it.
    .map((r) => r ?? { base: "unknown", size: "unknown" });
  const siblingHolders: Record<string, DeviceFacts["holders"]> = {};
  if (inv) {
    for (const s of probe.siblings) {
      const dev = inv.devices.find((d) => d.functions.includes(s));
      const hs = dev?.holders.filter((h) => h.bdf === s) ?? [];
      if (hs.length > 0) siblingHolders[s] = hs.map(({ bdf: _bdf, ...h }) => h);
    }
  }
  const switchId = switchOf(inv, probe.bridge?.bdf ?? null);
  return {
    host,
    bdf: probe.bdf,
    functions: probe.functions.length > 0 ? probe.functions : [probe.bdf],
    flrCapable: probe.flrCapable,
    cxlResetCapable: cxl?.cxlResetCapable ?? false,
    cxlResetTimeoutMs: cxl?.cxlResetTimeoutMs ?? 0,
    cxlResetTimeoutReserved: cxl?.cxlResetTimeoutReserved ?? false,
    cacheCapable: cxl?.cacheCapable ?? false,
    cacheEnabled: cxl?.cacheEnabled ?? false,
    wbInvCapable: cxl?.wbInvCapable ?? false,
    memClrCapable: cxl?.memClrCapable ?? false,
    configLock: cxl?.configLock ?? false,
    decoders: probe.decoders.map((d) => ({
      index: d.index,
      base: d.base,
      size: d.size,
      committed: d.committed,
      lockOnCommit: d.lockOnCommit,
    })),
    memoryOnline,
    holders: probe.holders.map(({ bdf: _bdf, ...h }) => h),
    bridge: probe.bridge
      ? { bdf: probe.bridge.bdf, cxlPort: probe.bridge.cxlPort, ...(switchId ? { switchId } : {}) }
      : null,
    siblings: [...probe.siblings],
    ...(Object.keys(siblingHolders).length > 0 ? { siblingHolders } : {}),
    kernelResetMethods: [...probe.resetMethods],
    vfioBound: probe.driver === "vfio-pci",
    driver: probe.driver,
    functionDrivers: Object.fromEntries(
      probe.holders.filter((h) => h.kind === "driver").map((h) => [h.bdf, h.detail] as const),
    ),
  };
}
