// The agent's own secondary bus reset on a real kernel, through a CXL switch: root port → upstream port →
// two downstream ports → a Type-3 device on each. One boot runs the "switch" scenario; each test asserts on
// what its check read back in the guest. Registered by kernel-lab.test.ts, which boots the scenarios.
import { describe, expect, it } from "vitest";
import type { InventoryResult } from "../../services/agent/ops/index.ts";
import type { LabRun } from "../../services/lab/lab.ts";
import { checkData } from "./lab-run.ts";
import { decodersOf, type SbrDownstreamRec, type SbrRootPortRec } from "./records.ts";

export function switchTests(run: () => LabRun): void {
  describe("kernel lab, CXL switch: the agent's secondary bus reset", () => {
    it("inventory: root port → switch upstream port → two downstream ports → a device on each", () => {
      const { inventory } = checkData<{ inventory: InventoryResult }>(run(), "inventory");
      const devices = inventory.devices.filter((d) => d.cxl);
      expect(devices).toHaveLength(2);
      const dsps = devices.map((d) => inventory.bridges.find((b) => b.bdf === d.bridge)!);
      const usp = inventory.bridges.find((b) => b.bdf === dsps[0]!.parent)!;
      const rp = inventory.bridges.find((b) => b.bdf === usp.parent)!;
      expect(dsps[1]!.parent).toBe(usp.bdf);
      expect(rp.parent).toBeNull();
      for (const b of [rp, usp, ...dsps]) expect(b).toMatchObject({ cxlPort: true, driver: "pcieport" });
      expect(rp.below).toEqual([usp.bdf, ...dsps.map((d) => d.bdf), ...devices.map((d) => d.bdf)].sort());
      for (const d of devices)
        expect(d).toMatchObject({ driver: "cxl_pci", resetMethods: ["bus"], siblings: [] });
    });

    it("SBR at the root port reaches the switch and both devices; the plan restores the ports top-down", () => {
      const d = checkData<SbrRootPortRec>(run(), "sbr-root-port");
      const { rootPort, upstream, downstream, devices } = d.topology;
      expect(d.plan).toEqual([upstream, ...downstream, ...devices]);
      expect(d.reset).toMatchObject({
        method: "sbr",
        target: rootPort,
        reached: [upstream],
        details: {
          bridge: rootPort,
          cxlPort: true,
          unmaskSbrWas: false,
          behindBridges: [...downstream, ...devices],
        },
      });
      // Unmask SBR was set for the reset and put back.
      expect(d.before.unmaskSbr).toBe(false);
      expect(d.afterReset.unmaskSbr).toBe(false);
      // The kernel restored nothing: the switch lost its bus numbers and window, so everything below vanished.
      expect(d.afterReset.bridges[0]).toMatchObject({
        bdf: upstream,
        secondaryBus: 0,
        subordinateBus: 0,
        command: "0x0",
      });
      for (const b of d.afterReset.bridges.slice(1)) expect(b.vendorId).toBe("0xffff");
      expect(d.afterReset.deviceVendorIds).toEqual(["0xffff", "0xffff"]);
      // With the ports back, the devices answer, with their PCI state reset.
      for (const x of d.devicesBehindRestoredPorts)
        expect(x).toMatchObject({ vendorId: "0x8086", command: "0x0" });
      for (const r of d.restores) expect(r.result, r.bdf).toMatchObject({ ok: true });
      for (const r of d.restores.filter((x) => x.scope === "full")) {
        if (r.result.ok)
          expect(r.result.value.decoders).toEqual([{ index: 0, action: "committed", decommitted: false }]);
      }
      expect(d.verifies.map((v) => [v.bdf, v.passed])).toEqual(d.plan.map((b) => [b, true]));
      expect(d.after.bridges).toEqual(d.before.bridges);
      for (const [i, s] of d.after.devices.entries()) {
        const was = decodersOf(d.before.devices[i]!)[0]!;
        expect(was.committed).toBe(true);
        expect(decodersOf(s)[0]).toMatchObject({ committed: true, base: was.base, size: was.size });
      }
    });

    it("SBR at one downstream port reaches one device: the other's decoders read back untouched", () => {
      const d = checkData<SbrDownstreamRec>(run(), "sbr-downstream-port");
      const [a, b] = d.afterReset;
      expect(d.reset).toMatchObject({
        method: "sbr",
        reached: [d.target],
        details: { cxlPort: true, behindBridges: [] },
      });
      expect(d.unmaskSbrBefore).toBe(false);
      expect(d.unmaskSbrAfter).toBe(false);
      expect(a!.bdf).toBe(d.untouched);
      expect(decodersOf(a!)).toEqual(decodersOf(d.before[0]!));
      expect(a!.command).toBe(d.before[0]!.command);
      expect(b!.bdf).toBe(d.target);
      expect(b!.command).toBe("0x0");
      expect(decodersOf(d.afterPciRestore)[0]).toMatchObject({ committed: false, size: "0x0" });
      expect(d.restore.decoders).toEqual([{ index: 0, action: "committed", decommitted: false }]);
      expect(d.verifyTarget).toMatchObject({ passed: true, mismatches: [] });
      expect(d.verifyUntouched).toMatchObject({ passed: true, mismatches: [] });
      expect(decodersOf(d.after[1]!)).toEqual(decodersOf(d.before[1]!));
      expect(d.rebinds.every((r) => r.ok)).toBe(true);
      expect(d.driversAtEnd).toEqual(["cxl_pci", "cxl_pci"]);
    });
  });
}
