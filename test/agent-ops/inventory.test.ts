import { describe, expect, it } from "vitest";
import { operations } from "../../services/agent/ops/index.ts";
import { DEV, PORT, rig, rigFor } from "./fixtures.ts";
import { rejection } from "./helpers.ts";

/** Root port → switch upstream → two downstream ports, one Type-2 device below each. */
const switchHost = {
  name: "sw0",
  bridges: [
    { bdf: "0000:00:01.0", kind: "root-port" as const, secondaryBus: 1, subordinateBus: 4 },
    {
      bdf: "0000:01:00.0",
      kind: "switch-upstream" as const,
      parent: "0000:00:01.0",
      secondaryBus: 2,
      subordinateBus: 4,
    },
    { bdf: "0000:02:00.0", kind: "switch-downstream" as const, parent: "0000:01:00.0", secondaryBus: 3 },
    {
      bdf: "0000:02:01.0",
      kind: "switch-downstream" as const,
      parent: "0000:01:00.0",
      secondaryBus: 4,
      cxl: false,
    },
  ],
  devices: [
    { bdf: "0000:03:00.0", parent: "0000:02:00.0", driver: "cxl_accel" },
    { bdf: "0000:04:00.0", parent: "0000:02:01.0", functions: [{ fn: 1, cxl: false }] },
  ],
};

describe("inventory", () => {
  it("groups functions into devices and bridges, with what a bus reset reaches", async () => {
    const { ctx } = rigFor(switchHost);
    const inv = await operations.inventory(ctx);
    expect(inv.host).toBe("sw0");
    expect(inv.devices.map((d) => d.bdf)).toEqual(["0000:03:00.0", "0000:04:00.0"]);
    const d4 = inv.devices[1]!;
    expect(d4).toMatchObject({
      functions: ["0000:04:00.0", "0000:04:00.1"],
      cxl: true,
      cxlFunctions: ["0000:04:00.0"],
      bridge: "0000:02:01.0",
      siblings: [],
    });
    const d3 = inv.devices[0]!;
    expect(d3.driver).toBe("cxl_accel");
    expect(d3.holders.length).toBeGreaterThanOrEqual(0);
    const root = inv.bridges.find((b) => b.bdf === "0000:00:01.0")!;
    expect(root.below).toEqual([
      "0000:01:00.0",
      "0000:02:00.0",
      "0000:02:01.0",
      "0000:03:00.0",
      "0000:04:00.0",
      "0000:04:00.1",
    ]);
    expect(inv.bridges.find((b) => b.bdf === "0000:02:00.0")).toMatchObject({
      cxlPort: true,
      below: ["0000:03:00.0"],
    });
    expect(inv.bridges.find((b) => b.bdf === "0000:02:01.0")?.cxlPort).toBe(false);
    expect(JSON.parse(JSON.stringify(inv))).toEqual(inv);
  });

  it("probe lists holders, bridge and the other function of a multi-function device", async () => {
    const { ctx, sim } = rigFor(switchHost);
    sim.faults.set("0000:04:00.1", { name: "holder", kind: "process", detail: "pid 42 (qemu)" });
    const p = await operations.probe(ctx, { bdf: "0000:04:00.0" });
    expect(p.functions).toEqual(["0000:04:00.0", "0000:04:00.1"]);
    expect(p.bridge).toEqual({ bdf: "0000:02:01.0", cxlPort: false, unmaskSbr: null });
    expect(p.holders).toContainEqual({ kind: "process", detail: "pid 42 (qemu)", bdf: "0000:04:00.1" });
  });
});

describe("bind", () => {
  it("binds through the backend and reports the driver read back", async () => {
    const { ctx, sim } = rig();
    const r = await operations.bind(ctx, { bdf: DEV, driver: "vfio-pci" });
    expect(r).toEqual({ bdf: DEV, driver: "vfio-pci", previous: null });
    expect((await sim.listFunctions()).find((f) => f.bdf === DEV)?.driver).toBe("vfio-pci");
    const u = await operations.bind(ctx, { bdf: DEV, driver: null });
    expect(u).toEqual({ bdf: DEV, driver: null, previous: "vfio-pci" });
  });

  it("an unknown function: device-absent", async () => {
    const { ctx } = rig();
    expect((await rejection(operations.bind(ctx, { bdf: "0000:09:00.0", driver: null }))).kind).toBe(
      "device-absent",
    );
    expect((await rejection(operations.probe(ctx, { bdf: "0000:09:00.0" }))).kind).toBe("device-absent");
    // A bridge is probed too (no CXL device state).
    const p = await operations.probe(ctx, { bdf: PORT });
    expect(p.cxl).toBeNull();
  });
});
