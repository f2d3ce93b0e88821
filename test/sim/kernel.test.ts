// The emulated kernel files: reset_method + reset (save and restore the PCI config state around the reset,
// but not the CXL DVSEC or HDM state, as docs/real-kernel.md observed), VFIO_DEVICE_RESET, driver binding.
import { describe, expect, it } from "vitest";
import { readFlag } from "../../shared/cxl/regdef.ts";
import { CXL_DEVICE, CXL_PORT_EXT, PCI, PCIE } from "../../shared/cxl/registers.ts";
import { DEV, findDvsec, PORT, regs, rig, rigFor } from "./helpers.ts";

describe("kernel reset file", () => {
  it("lists flr, bus and cxl_bus for a lone FLR-capable device below a CXL port", async () => {
    const { h } = rig();
    const dev = (await h.listFunctions()).find((f) => f.bdf === DEV)!;
    expect(dev.resetMethods).toEqual(["flr", "bus", "cxl_bus"]);
    expect(dev.parent).toBe(PORT);
  });

  it("flr: PCI config state comes back (Command, BARs, Device Control), CXL state untouched", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    const before = {
      command: await h.configRead(DEV, PCI.command.offset, 2),
      bar0: await h.configRead(DEV, 0x10, 4),
      devCtl: await h.configRead(DEV, r.pcie + PCIE.devCtl.offset, 2),
      d0: await r.decoder(0),
    };
    const t0 = h.clock.now();
    await h.kernelReset(DEV, "flr");
    expect(h.clock.now() - t0).toBeGreaterThanOrEqual(100);
    expect(h.counters(DEV).flr).toBe(1);
    expect(await h.configRead(DEV, PCI.command.offset, 2)).toBe(before.command);
    expect(await h.configRead(DEV, 0x10, 4)).toBe(before.bar0);
    expect(await h.configRead(DEV, r.pcie + PCIE.devCtl.offset, 2)).toBe(before.devCtl);
    expect(await r.decoder(0)).toEqual(before.d0);
  });

  it("bus on a CXL port with SBR masked fails like -ENOTTY and touches nothing", async () => {
    const { h } = rig();
    await expect(h.kernelReset(DEV, "bus")).rejects.toMatchObject({ kind: "unsupported" });
    expect(h.counters(DEV).conventionalReset).toBe(0);
  });

  it("cxl_bus: SBR with Unmask SBR for the duration; PCI state restored, HDM decoders wiped", async () => {
    const { h } = rig();
    const r = await regs(h, DEV);
    const command = await h.configRead(DEV, PCI.command.offset, 2);
    await h.kernelReset(DEV, "cxl_bus");
    expect(h.counters(DEV).conventionalReset).toBe(1);
    expect(await h.configRead(DEV, PCI.command.offset, 2)).toBe(command);
    expect(readFlag(CXL_DEVICE.control, await r.cfg.read(CXL_DEVICE.control), "memEnable")).toBe(false);
    expect((await r.decoder(0)).committed).toBe(false);
    const d3 = await findDvsec(h, PORT, 3);
    expect(await h.configRead(PORT, d3 + CXL_PORT_EXT.portControl.offset, 2)).toBe(0); // put back
  });

  it("bus is not offered for devices that share their bus (siblings, multi-function)", async () => {
    const { h } = rigFor({
      name: "shared",
      bridges: [{ bdf: "0000:00:02.0", kind: "root-port", secondaryBus: 5, unmaskSbr: true }],
      devices: [
        { bdf: "0000:05:00.0", parent: "0000:00:02.0" },
        { bdf: "0000:05:01.0", parent: "0000:00:02.0", flr: false },
      ],
    });
    const fns = await h.listFunctions();
    expect(fns.find((f) => f.bdf === "0000:05:00.0")!.resetMethods).toEqual(["flr"]);
    expect(fns.find((f) => f.bdf === "0000:05:01.0")!.resetMethods).toEqual([]);
    await expect(h.kernelReset("0000:05:00.0", "bus")).rejects.toMatchObject({ kind: "unsupported" });
  });

  it("a method the device does not list is refused", async () => {
    const { h } = rig({ device: { flr: false } });
    await expect(h.kernelReset(DEV, "flr")).rejects.toMatchObject({ kind: "unsupported" });
  });

  it("a device that never answers after the reset times out as not-ready", async () => {
    const { h } = rig();
    h.faults.set(DEV, { name: "long-not-ready", ms: 120_000 });
    await expect(h.kernelReset(DEV, "flr")).rejects.toMatchObject({ kind: "not-ready" });
  });
});

describe("VFIO_DEVICE_RESET", () => {
  it("needs the device bound to vfio-pci", async () => {
    const { h } = rig();
    await expect(h.vfioReset(DEV)).rejects.toMatchObject({ kind: "unsupported" });
  });

  it("uses the kernel's first method with PCI save/restore, and has the full CXL scope", async () => {
    const { h } = rig({
      device: { firmware: { decoders: [{ base: 0x1_0000_0000, size: 0x1000_0000 }], configLock: true } },
    });
    expect(await h.bindDriver(DEV, "vfio-pci")).toBe(null);
    const r = await regs(h, DEV);
    const bar0 = await h.configRead(DEV, 0x10, 4);
    await h.vfioReset(DEV);
    expect(h.counters(DEV).flr).toBe(1);
    expect(await h.configRead(DEV, 0x10, 4)).toBe(bar0);
    expect(readFlag(CXL_DEVICE.lock, await r.cfg.read(CXL_DEVICE.lock), "configLock")).toBe(false);
    expect((await r.decoder(0)).committed).toBe(false);
  });
});

describe("driver binding", () => {
  it("bindDriver returns the previous driver and listFunctions shows the new one", async () => {
    const { h } = rig({ device: { driver: "cxl_accel" } });
    expect(await h.bindDriver(DEV, "vfio-pci")).toBe("cxl_accel");
    expect(await h.bindDriver(DEV, null)).toBe("vfio-pci");
    expect((await h.listFunctions()).find((f) => f.bdf === DEV)!.driver).toBe(null);
  });
});
