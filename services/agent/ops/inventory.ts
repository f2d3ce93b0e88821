// inventory: every function the backend sees, grouped into devices (functions sharing bus and device
// number) and bridges, with what a plan needs about each: CXL or not, the bridge above, siblings a bus
// reset would reach (recursively), holders, kernel reset methods and driver.

import type {
  InventoryBridge,
  InventoryDevice,
  InventoryResult,
} from "../../../shared/bus/agent-contract.ts";
import { CXL_DVSEC_ID } from "../../../shared/cxl/registers.ts";
import type { PciFunctionInfo } from "../../../shared/hw/backend.ts";
import type { OpContext } from "./context.ts";
import { findCxlDvsec } from "./locate.ts";
import { below, deviceKey, siblingsOf } from "./topology.ts";

export type { InventoryBridge, InventoryDevice, InventoryResult };

export async function inventory(ctx: OpContext): Promise<InventoryResult> {
  const b = ctx.backend;
  const all = await b.listFunctions();
  const groups = new Map<string, PciFunctionInfo[]>();
  for (const f of all) {
    if (f.headerType === 1) continue;
    const k = deviceKey(f.bdf);
    groups.set(k, [...(groups.get(k) ?? []), f]);
  }
  const devices: InventoryDevice[] = [];
  for (const fns of groups.values()) {
    fns.sort((x, y) => (x.bdf < y.bdf ? -1 : 1));
    const first = fns[0]!;
    const cxlFunctions: string[] = [];
    const holders: InventoryDevice["holders"] = [];
    for (const f of fns) {
      if (await findCxlDvsec(b, f.bdf, CXL_DVSEC_ID.device)) cxlFunctions.push(f.bdf);
      for (const h of await b.holders(f.bdf)) holders.push({ ...h, bdf: f.bdf });
    }
    devices.push({
      bdf: first.bdf,
      functions: fns.map((f) => f.bdf),
      vendorId: first.vendorId,
      deviceId: first.deviceId,
      classCode: first.classCode,
      cxl: cxlFunctions.length > 0,
      cxlFunctions,
      bridge: first.parent,
      siblings: siblingsOf(all, first.bdf).map((f) => f.bdf),
      holders,
      resetMethods: first.resetMethods,
      driver: first.driver,
      iommuGroup: first.iommuGroup,
    });
  }
  const bridges: InventoryBridge[] = [];
  for (const f of all.filter((x) => x.headerType === 1)) {
    bridges.push({
      bdf: f.bdf,
      parent: f.parent,
      secondaryBus: f.secondaryBus ?? null,
      subordinateBus: f.subordinateBus ?? null,
      cxlPort: (await findCxlDvsec(b, f.bdf, CXL_DVSEC_ID.portExtensions)) !== null,
      below: below(all, f.bdf).map((x) => x.bdf),
      driver: f.driver,
    });
  }
  devices.sort((x, y) => (x.bdf < y.bdf ? -1 : 1));
  bridges.sort((x, y) => (x.bdf < y.bdf ? -1 : 1));
  return { host: ctx.host, backend: b.kind, devices, bridges, functions: all };
}
