// Small builders for tests: a host with one root port and one CXL Type-2 device, sensible defaults.
import type { BridgeSpec, DeviceSpecInput, HostSpec, SimTimings } from "./fleet-schema.ts";
import { parseHost } from "./load.ts";

export const SIMPLE_ROOT_PORT = "0000:00:01.0";
export const SIMPLE_DEVICE = "0000:01:00.0";

export interface SimpleHostOptions {
  name?: string;
  /** Overrides of the device (bdf stays 0000:01:00.0 unless given). */
  device?: Partial<DeviceSpecInput>;
  /** Overrides of the root port (cxl, unmaskSbr, driver…). */
  rootPort?: Partial<Pick<BridgeSpec, "cxl" | "unmaskSbr" | "driver" | "iommuGroup">>;
  timings?: Partial<SimTimings>;
}

/**
 * Root port 0000:00:01.0 (CXL, SBR masked, secondary bus 1) and one Type-2 device 0000:01:00.0: FLR capable,
 * CXL Reset capable (timeout code 1 = 100 ms, Mem Clr capable), cache + mem capable, WB+I capable, one 256 MiB
 * range, 2 HDM decoders, component block at BAR0 + 0x10000; firmware commits decoder 0 at 0x1_0000_0000,
 * 256 MiB, with HDM Decoder Enable and Mem_Enable. No driver, no holders.
 */
export function simpleHost(opts: SimpleHostOptions = {}): HostSpec {
  return parseHost(
    {
      name: opts.name ?? "sim0",
      bridges: [{ bdf: SIMPLE_ROOT_PORT, kind: "root-port", secondaryBus: 1, ...opts.rootPort }],
      devices: [
        {
          bdf: SIMPLE_DEVICE,
          parent: SIMPLE_ROOT_PORT,
          firmware: { decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000 }] },
          ...opts.device,
        },
      ],
      timings: opts.timings ?? {},
    },
    "simpleHost",
  );
}
