// The sysfs/VFIO backend and the agent's operations on a real Linux kernel (Debian's current one, under
// QEMU/TCG): one Type-3 device below a CXL root port, with the emulated IOMMU. One boot runs every check of
// the "single" scenario in the guest; each test asserts on what its check read back from the device there.
// Registered by kernel-lab.test.ts, which boots the scenarios.
import { describe, expect, it } from "vitest";
import type { LabRun } from "../../services/lab/lab.ts";
import { checkData, cxlrcDecode } from "./lab-run.ts";
import {
  type BarAfterRebindRec,
  type BusResetRec,
  decodersOf,
  type FlrRec,
  type HoldersRec,
  type InventoryProbeRec,
  type KernelResetRec,
  kinds,
  type MemEnableRec,
  type VfioRec,
} from "./records.ts";

export function singleDeviceTests(run: () => LabRun): void {
  describe("kernel lab, single device: inventory and probe", () => {
    it("inventory lists what /sys/bus/pci shows: device, bridge, driver, reset_method, IOMMU group, holders", () => {
      const d = checkData<InventoryProbeRec>(run(), "inventory-probe");
      expect(d.inventory.functions.map((f) => f.bdf)).toEqual(d.sysfs.map((s) => s.bdf));
      for (const s of d.sysfs) {
        const f = d.inventory.functions.find((x) => x.bdf === s.bdf)!;
        expect({ ...f, bdf: s.bdf }).toMatchObject({
          vendorId: s.vendorId,
          deviceId: s.deviceId,
          headerType: s.headerType,
          driver: s.driver,
          iommuGroup: s.iommuGroup,
          resetMethods: s.resetMethods,
          parent: s.parent,
        });
      }
      const cxl = d.inventory.devices.filter((x) => x.cxl);
      expect(cxl).toHaveLength(1);
      const dev = cxl[0]!;
      expect(dev).toMatchObject({
        vendorId: 0x8086,
        deviceId: 0x0d93,
        cxlFunctions: [dev.bdf],
        driver: "cxl_pci",
        resetMethods: ["bus"],
        siblings: [],
        holders: [{ kind: "driver", detail: "cxl_pci", bdf: dev.bdf }],
      });
      expect(dev.iommuGroup).toEqual(expect.any(Number));
      const bridge = d.inventory.bridges.find((b) => b.bdf === dev.bridge);
      expect(bridge).toMatchObject({ cxlPort: true, driver: "pcieport", below: [dev.bdf] });
      // The kernel's own CXL view: cxl_acpi's root, cxl_pci's memdev, the endpoint port.
      expect(d.cxlBus).toContain("root0");
      expect(d.cxlBus.some((n) => /^mem\d+$/.test(n))).toBe(true);
      expect(d.cxlBus.some((n) => /^endpoint\d+$/.test(n))).toBe(true);
    });

    it("probe under cxl_pci reads config space; the BAR the driver claims is refused, not crashed on", () => {
      const p = checkData<InventoryProbeRec>(run(), "inventory-probe").probes[0]!;
      expect(p.driver).toBe("cxl_pci");
      expect(p.probe).toMatchObject({
        driver: "cxl_pci",
        flrCapable: false,
        resetMethods: ["bus"],
        siblings: [],
        holders: [{ kind: "driver", detail: "cxl_pci" }],
        bridge: { cxlPort: true, unmaskSbr: false },
        cxl: { memCapable: true, cacheCapable: false, cxlResetCapable: false, memEnabled: true, hdmCount: 1 },
        // The BAR is refused: the decoders come from the kernel's own view (/sys/bus/cxl: decoder2.0 idle).
        decoders: [
          {
            index: 0,
            base: "0x0",
            size: "0x0",
            committed: false,
            lockOnCommit: false,
            errorNotCommitted: false,
          },
        ],
      });
      expect(p.probe.componentUnreadable).toMatch(/claimed by driver cxl_pci/);
      // Unbound, the component block maps: the one HDM decoder, not committed.
      expect(p.unbound.ok).toBe(true);
      if (!p.unbound.ok) return;
      expect(p.unbound.value.componentUnreadable).toBeUndefined();
      expect(p.unbound.value.holders).toEqual([]);
      expect(p.unbound.value.cxl?.memEnabled).toBe(false);
      expect(p.unbound.value.decoders).toEqual([
        {
          index: 0,
          base: "0x0",
          size: "0x0",
          committed: false,
          lockOnCommit: false,
          errorNotCommitted: false,
        },
      ]);
      expect(p.unbound.value.decoded?.component?.hdm?.decoderCount).toBe(1);
      expect(p.rebind).toMatchObject({ ok: true, value: { driver: "cxl_pci", previous: null } });
      expect(p.driverAtEnd).toBe("cxl_pci");
    });

    it("a BAR mapping outlives no driver bound behind the backend's back: device-busy, then mapped again", () => {
      const d = checkData<BarAfterRebindRec>(run(), "bar-after-rebind");
      expect(d.driverBound).toBe("cxl_pci");
      expect(d.boundRead).toMatchObject({
        ok: false,
        error: { kind: "device-busy", details: { driver: "cxl_pci" } },
      });
      expect(d.driverUnbound).toBeNull();
      // Mapped again and read; cxl_port's probe may have set the Type-3 bit in the decoder's control.
      const { base, size, committed } = d.unboundRead;
      expect(d.unboundAgain).toMatchObject({ ok: true, value: { base, size, committed } });
      expect(d.driverAtEnd).toBe("cxl_pci");
    });

    it("the probe's decode is identical to `cxlrc decode` of the config bytes the guest read", async () => {
      const p = checkData<InventoryProbeRec>(run(), "inventory-probe").probes[0]!;
      expect(p.configHex.length).toBe(4096 * 2);
      expect(p.backendConfigHex).toBe(p.configHex);
      const cli = await cxlrcDecode(p.bdf, Buffer.from(p.configHex, "hex"));
      expect(p.probe.decoded?.config).toEqual(cli);
    });
  });

  describe("kernel lab, single device: the kernel's reset and cxlrc's lifecycle around it", () => {
    it("seed bug: `echo 1 > reset` (bus) restores the PCI state and wipes the HDM decoders", () => {
      const d = checkData<KernelResetRec>(run(), "kernel-reset");
      expect(d.resetMethods).toEqual(["bus"]);
      expect(d.start).toMatchObject({ driver: "cxl_pci", dvsecControl: { memEnable: true } });
      // Unbinding cxl_pci (needed to map the BAR) clears the Mem_Enable the driver set.
      expect(d.unbound).toMatchObject({ driver: null, dvsecControl: { memEnable: false } });
      expect(d.firmware).toMatchObject({ committed: true, errorNotCommitted: false, ...d.range });
      expect(decodersOf(d.beforeSysfsReset)[0]).toMatchObject({ committed: true, ...d.range });
      expect(d.afterSysfsReset.command).toBe(d.beforeSysfsReset.command);
      expect(d.afterSysfsReset.bar0).toBe(d.beforeSysfsReset.bar0);
      expect(d.headerBeforeAfterSysfsReset[1]).toBe(d.headerBeforeAfterSysfsReset[0]);
      expect(decodersOf(d.afterSysfsReset)[0]).toMatchObject({
        committed: false,
        hdmDecoderEnable: false,
        base: "0x0",
        size: "0x0",
      });
    });

    it("fix: save, reset (kernel/bus), restore full, verify: decoders Committed with the same range", () => {
      const d = checkData<KernelResetRec>(run(), "kernel-reset");
      expect(d.firmwareAgain).toMatchObject({ committed: true, ...d.range });
      expect(d.reset).toMatchObject({ method: "kernel", reached: [d.bdf], details: { kernelMethod: "bus" } });
      expect(d.afterReset[0]).toMatchObject({ committed: false, base: "0x0", size: "0x0" });
      expect(d.restore.decoders).toEqual([{ index: 0, action: "committed", decommitted: false }]);
      expect(d.verify).toMatchObject({ scope: "full", passed: true, mismatches: [] });
      expect(decodersOf(d.final)[0]).toMatchObject({
        committed: true,
        errorNotCommitted: false,
        hdmDecoderEnable: true,
        ...d.range,
      });
      expect(Number(d.final.command)).toBe(Number(d.image.command) & 0xffff);
      expect(d.resetMethodsAfter).toEqual(d.resetMethods);
      const k = kinds(d.events);
      const order = [
        "image.saved",
        "reset.started",
        "reset.completed",
        "decoder.committed",
        "restore.completed",
      ];
      expect(order.map((e) => k.indexOf(e))).toEqual(
        [...order.map((e) => k.indexOf(e))].sort((a, b) => a - b),
      );
      expect(order.every((e) => k.includes(e))).toBe(true);
      expect(d.events.find((e) => e.kind === "verify.completed")?.data).toMatchObject({ passed: true });
    });
  });

  describe("kernel lab, single device: the whole product over the bus", () => {
    it("nats-server, agent and coordinator in the guest: a full reset request ends verified, the events show it", () => {
      const d = checkData<BusResetRec>(run(), "bus-reset");
      expect(d.start.driver).toBeNull();
      expect(d.firmware).toMatchObject({ committed: true, ...d.range });
      expect(d.outcome).toMatchObject({
        outcome: "verified",
        plan: { scope: "full", method: "sbr", targets: [d.bdf], committedDecoders: [0] },
      });
      const k = d.events.map((e) => e.kind);
      const order = [
        "plan",
        "image.persisted",
        "reset.started",
        "reset.completed",
        "decoder.committed",
        "verified",
      ];
      for (const e of order) expect(k, e).toContain(e);
      const at = order.map((e) => k.indexOf(e));
      expect(at).toEqual([...at].sort((a, b) => a - b));
      expect(k).not.toContain("step.failed");
      expect(decodersOf(d.final)[0]).toMatchObject({ committed: true, errorNotCommitted: false, ...d.range });
    });
  });

  describe("kernel lab, single device: VFIO", () => {
    it("bind vfio-pci, VFIO_DEVICE_RESET, restore, verify, then cxl_pci bound again", () => {
      const d = checkData<VfioRec>(run(), "vfio-success");
      expect(d.cycle).toBe("completed");
      expect(d.vfioDriver).toBe("vfio-pci");
      expect(d.bind).toMatchObject({ driver: "vfio-pci", previous: "cxl_pci" });
      expect(d.driverAfterBind).toBe("vfio-pci");
      expect(d.firmware.committed).toBe(true);
      expect(d.reset).toMatchObject({ method: "vfio", reached: [d.bdf] });
      expect(d.afterReset?.[0]).toMatchObject({ committed: false, size: "0x0" });
      expect(d.restore?.decoders).toEqual([{ index: 0, action: "committed", decommitted: false }]);
      expect(d.verify).toMatchObject({ passed: true, mismatches: [] });
      expect(decodersOf(d.beforeRebind)[0]).toMatchObject({
        committed: true,
        base: d.firmware.base,
        size: d.firmware.size,
      });
      expect(d.rebind).toMatchObject({ driver: "cxl_pci", previous: "vfio-pci" });
      expect(d.driverAtEnd).toBe("cxl_pci");
      expect(d.resetMethodsAtEnd).toEqual(["bus"]);
    });

    it("a forced verify failure is reported as such, and cxl_pci is bound again", () => {
      const d = checkData<VfioRec>(run(), "vfio-verify-failure");
      expect(d.restore?.decoders[0]?.action).toBe("committed");
      expect(d.tampered).toMatchObject({ register: "decoder0.sizeLow" });
      expect(d.verify?.passed).toBe(false);
      expect(d.verify?.mismatches).toContainEqual(expect.objectContaining({ register: "decoder0.sizeLow" }));
      expect(d.cycle).toBe("failed");
      expect(d.cycleError).toMatchObject({ kind: "verify-mismatch" });
      expect(decodersOf(d.beforeRebind)[0]?.size).toBe("0x20000000");
      expect(d.rebind).toMatchObject({ driver: "cxl_pci", previous: "vfio-pci" });
      expect(d.driverAtEnd).toBe("cxl_pci");
    });

    it("no reset method (no RESET flag): refused before the device is opened, state kept, cxl_pci back", () => {
      const d = checkData<VfioRec>(run(), "vfio-no-reset-flag");
      expect(d.resetMethodsDuringReset).toEqual([]);
      expect(d.cycle).toBe("failed");
      expect(d.cycleError).toMatchObject({ kind: "unsupported", details: { reason: "no-reset-method" } });
      expect(d.reset).toBeUndefined();
      // Nothing opened the device, so vfio-pci did not reset it on release: the decoder is still committed.
      expect(decodersOf(d.beforeRebind)[0]).toMatchObject({ committed: true, size: d.firmware.size });
      expect(d.resetMethodsAtEnd).toEqual(["bus"]);
      expect(d.rebind).toMatchObject({ driver: "cxl_pci", previous: "vfio-pci" });
      expect(d.driverAtEnd).toBe("cxl_pci");
      expect(kinds(d.events)).toContain("reset.failed");
    });
  });

  describe("kernel lab, single device: gates", () => {
    it("an io-scope reset (FLR) is refused: the model has no FLR; nothing in config space changed", () => {
      const d = checkData<FlrRec>(run(), "flr-refused");
      expect(d.flrCapable).toBe(false);
      expect(d.resetMethods).not.toContain("flr");
      expect(d.reset).toMatchObject({
        ok: false,
        error: { kind: "unsupported", details: { reason: "flr-unsupported", register: "pcie.devCap" } },
      });
      expect(d.configUnchanged).toBe(true);
      expect(kinds(d.events)).toEqual(["reset.started", "reset.failed"]);
    });

    it("a process holding the VFIO group and resource0 open is a holder: device-busy, until it is gone", () => {
      const d = checkData<HoldersRec>(run(), "holders");
      const [group, resource] = d.heldPaths;
      expect(d.holdersWhileHeld).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            kind: "vfio-group",
            pid: d.holderPid,
            detail: expect.stringContaining(group!),
          }),
          expect.objectContaining({
            kind: "resource",
            pid: d.holderPid,
            detail: expect.stringContaining("resource0"),
          }),
        ]),
      );
      expect(resource).toMatch(/resource0$/);
      expect(d.gateWhileHeld).toMatchObject({ gate: "device-busy", passed: false, reason: "device-busy" });
      expect(d.vfioResetWhileHeld).toMatchObject({
        ok: false,
        error: { kind: "device-busy", details: { errno: 16 } },
      });
      expect(d.holdersAfter).toEqual([]);
      expect(d.gateAfter).toMatchObject({ gate: "device-busy", passed: true });
      expect(d.driverAtEnd).toBe("cxl_pci");
    });

    it("unbinding cxl_pci clears Mem_Enable: verify names dvsec.control memEnable, a full restore repairs it", () => {
      const d = checkData<MemEnableRec>(run(), "mem-enable");
      expect(d.bound).toMatchObject({ driver: "cxl_pci", dvsecControl: { memEnable: true } });
      expect(d.probeBound.memEnabled).toBe(true);
      // An image of the device in use cannot be taken: the driver holds the BAR.
      expect(d.saveBound).toMatchObject({ ok: false, error: { kind: "device-busy" } });
      expect(d.unbound).toMatchObject({ driver: null, dvsecControl: { memEnable: false } });
      expect(d.imageBeforeUnbind.dvsecControl).toMatchObject({ memEnable: true });
      expect(d.verify).toMatchObject({ scope: "io", passed: false, scopeViolation: true });
      expect(d.verify.mismatches).toContainEqual({
        register: "dvsec.control",
        field: "memEnable",
        expected: true,
        actual: false,
        domain: "cxl",
      });
      expect(d.verifyAfterRestore).toMatchObject({ passed: true, mismatches: [] });
      expect(d.restored.dvsecControl).toMatchObject({ memEnable: true });
    });

    it("Mem_Enable set by firmware survives cxl_pci coming and going (the kernel clears only its own)", () => {
      const d = checkData<MemEnableRec>(run(), "mem-enable");
      expect(d.firmware).toMatchObject({ driver: null, dvsecControl: { memEnable: true } });
      expect(d.fwBind).toMatchObject({ driver: "cxl_pci" });
      expect(d.fwBound).toMatchObject({ memEnable: true });
      expect(d.fwUnbound.dvsecControl).toMatchObject({ memEnable: true });
      expect(d.fwVerify).toMatchObject({ passed: true, mismatches: [] });
      expect(d.driverAtEnd).toBe("cxl_pci");
    });
  });
}
