// How `cxlrc watch` / `reset --wait` put the driver hand-over events in a line (issue #17).
import { describe, expect, it } from "vitest";
import { summarize } from "../../services/cli/format/event.ts";
import { makeEvent } from "../../shared/bus/codec.ts";

const BDF = "0000:01:00.0";
const ev = (kind: string, data: Record<string, unknown>) => makeEvent({ host: "h", bdf: BDF, kind, data });

describe("driver events, summarized", () => {
  it("rebound: the driver, other functions named, and the read-back with it", () => {
    expect(
      summarize(
        ev("driver.rebound", {
          drivers: { [BDF]: "cxl_pci", "0000:01:00.1": "cxl_pci" },
          verify: { passed: true, mismatches: [] },
        }),
      ),
    ).toBe("cxl_pci, cxl_pci on 0000:01:00.1 bound again, verified with it");
    expect(
      summarize(ev("driver.rebound", { drivers: { [BDF]: "cxl_pci" }, verify: { passed: false } })),
    ).toBe("cxl_pci bound again, differs from its image");
  });

  it("rebind failed: the driver and the kernel's error", () => {
    expect(
      summarize(
        ev("driver.rebind-failed", {
          drivers: { [BDF]: "cxl_pci" },
          error: { kind: "driver-rebind", message: "probe failed (-6)" },
        }),
      ),
    ).toBe("cxl_pci not bound again: probe failed (-6)");
  });

  it("unbound (the agent's event): the driver and the override it had", () => {
    expect(summarize(ev("driver.unbound", { driver: "cxl_pci", override: "cxl_pci" }))).toBe(
      "cxl_pci taken for the reset (driver_override cxl_pci)",
    );
  });
});
