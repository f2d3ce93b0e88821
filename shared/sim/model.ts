// From a host spec to one static description per PCI function (what the silicon is, not its state).
import type { Holder } from "../hw/backend.ts";
import { parseBdf } from "../hw/backend.ts";
import {
  type BridgeSpec,
  DEFAULT_TIMINGS,
  type DeviceSpec,
  type FirmwareSpec,
  type HostSpec,
  type SimTimings,
} from "./fleet-schema.ts";
import { barSizeFor } from "./layouts.ts";

export interface EndpointModel {
  readonly kind: "endpoint";
  readonly bdf: string;
  readonly fn: number;
  /** The device this function belongs to (capabilities shared by its functions). */
  readonly device: DeviceSpec;
  readonly classCode: number;
  readonly flr: boolean;
  /** Has DVSEC id 0, the Register Locator and a component block. */
  readonly cxl: boolean;
  /** Function 0 of a CXL Reset capable device: its DVSEC Control2 starts a CXL Reset of every function. */
  readonly cxlResetOwner: boolean;
  readonly decoderCount: number;
  readonly firmware: FirmwareSpec;
  readonly barSize: number;
  readonly multiFunction: boolean;
  readonly driver: string | null;
  readonly iommuGroup: number | null;
  readonly holders: readonly Holder[];
  readonly timings: SimTimings;
}

/** PCIe Device/Port Type (PCIe Capabilities 7:4). */
export const PORT_TYPE = { "root-port": 4, "switch-upstream": 5, "switch-downstream": 6 } as const;

export interface BridgeModel {
  readonly kind: "bridge";
  readonly bdf: string;
  readonly spec: BridgeSpec;
  readonly subordinateBus: number;
  readonly timings: SimTimings;
}

export type FunctionModel = EndpointModel | BridgeModel;

export function hostModels(host: HostSpec, optTimings: Partial<SimTimings> = {}): FunctionModel[] {
  const hostTimings: SimTimings = { ...DEFAULT_TIMINGS, ...host.timings, ...optTimings };
  const out: FunctionModel[] = [];
  const below = highestBuses(host);
  for (const b of host.bridges)
    out.push({
      kind: "bridge",
      bdf: b.bdf,
      spec: b,
      subordinateBus: b.subordinateBus ?? below.get(b.bdf) ?? b.secondaryBus,
      timings: hostTimings,
    });
  for (const d of host.devices) {
    const timings: SimTimings = Object.keys(d.timings).length
      ? { ...hostTimings, ...d.timings }
      : hostTimings;
    const multiFunction = d.functions.length > 0;
    const barSize = barSizeFor(d.componentOffset);
    out.push({
      kind: "endpoint",
      bdf: d.bdf,
      fn: 0,
      device: d,
      classCode: d.classCode,
      flr: d.flr,
      cxl: true,
      cxlResetOwner: d.cxlResetCapable,
      decoderCount: d.decoderCount,
      firmware: d.firmware,
      barSize,
      multiFunction,
      driver: d.driver,
      iommuGroup: d.iommuGroup,
      holders: d.holders,
      timings,
    });
    for (const f of d.functions)
      out.push({
        kind: "endpoint",
        bdf: `${d.bdf.slice(0, -1)}${f.fn}`,
        fn: f.fn,
        device: d,
        classCode: f.classCode ?? d.classCode,
        flr: f.flr ?? d.flr,
        cxl: f.cxl,
        cxlResetOwner: false,
        decoderCount: f.decoderCount ?? d.decoderCount,
        firmware: f.firmware,
        barSize,
        multiFunction,
        driver: f.driver,
        iommuGroup: f.iommuGroup,
        holders: f.holders,
        timings,
      });
  }
  return out;
}

/** Highest bus number below each bridge (its default subordinate bus). */
function highestBuses(host: HostSpec): Map<string, number> {
  const kids = new Map<string, BridgeSpec[]>();
  for (const c of host.bridges) if (c.parent) kids.set(c.parent, [...(kids.get(c.parent) ?? []), c]);
  const memo = new Map<string, number>();
  const walk = (b: BridgeSpec): number => {
    let max = memo.get(b.bdf);
    if (max !== undefined) return max;
    max = b.secondaryBus;
    for (const c of kids.get(b.bdf) ?? []) max = Math.max(max, walk(c), parseBdf(c.bdf).bus);
    memo.set(b.bdf, max);
    return max;
  };
  for (const b of host.bridges) walk(b);
  return memo;
}
