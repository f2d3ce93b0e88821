import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createSysfsBackend } from "../../services/agent/backends/sysfs/sysfs-backend.ts";
import type { HardwareBackend } from "../../shared/hw/backend.ts";
import { createFakeSysfs, type FakeSysfs } from "../harness/fake-sysfs.ts";

const PORT = "0000:00:01.0";
const DEV = "0000:01:00.0";
let fake: FakeSysfs;
let hw: HardwareBackend;

beforeEach(() => {
  fake = createFakeSysfs();
  fake.addDevice({
    bdf: PORT,
    headerType: 1,
    multiFunction: true,
    secondaryBus: 1,
    subordinateBus: 3,
    classCode: 0x060400,
    driver: "pcieport",
    resetMethod: "pm bus",
  });
  fake.addDevice({ bdf: DEV, parent: PORT, driver: "cxl_pci", iommuGroup: 12, resetMethod: "flr bus" });
  hw = createSysfsBackend({ sysfsRoot: fake.sysfsRoot, procRoot: fake.procRoot, devRoot: fake.devRoot });
});
afterEach(async () => {
  await hw.close();
  fake.cleanup();
});

describe("listFunctions on the fake tree", () => {
  it("describes each function, its parent bridge and the bridge's bus range", async () => {
    const fns = await hw.listFunctions();
    expect(fns.map((f) => f.bdf)).toEqual([PORT, DEV]);
    expect(fns[0]).toEqual({
      bdf: PORT,
      vendorId: 0x1e98,
      deviceId: 0x0d93,
      classCode: 0x060400,
      headerType: 1,
      multiFunction: true,
      parent: null,
      secondaryBus: 1,
      subordinateBus: 3,
      driver: "pcieport",
      iommuGroup: null,
      resetMethods: ["pm", "bus"],
    });
    expect(fns[1]).toMatchObject({
      bdf: DEV,
      headerType: 0,
      parent: PORT,
      driver: "cxl_pci",
      iommuGroup: 12,
    });
    expect(fns[1]!.resetMethods).toEqual(["flr", "bus"]);
    expect(fns[1]).not.toHaveProperty("secondaryBus");
  });

  it("a missing reset_method reads as no methods; missing id attributes fall back to config", async () => {
    fake.addDevice({ bdf: "0000:00:02.0", resetMethod: null, vendorId: 0x8086, deviceId: 0x1234 });
    const { rmSync } = await import("node:fs");
    rmSync(fake.file("0000:00:02.0", "vendor"));
    rmSync(fake.file("0000:00:02.0", "class"));
    const fn = (await hw.listFunctions()).find((f) => f.bdf === "0000:00:02.0");
    expect(fn).toMatchObject({
      vendorId: 0x8086,
      deviceId: 0x1234,
      classCode: 0x050210,
      resetMethods: [],
      driver: null,
    });
  });
});

describe("holders on the fake tree", () => {
  it("reports the bound driver", async () => {
    expect(await hw.holders(DEV)).toEqual([{ kind: "driver", detail: "cxl_pci" }]);
  });

  it("finds processes with the VFIO group or the device's files open or mapped, not others or ourselves", async () => {
    fake.addProcess({
      pid: 4242,
      comm: "qemu-system-x86",
      fds: ["/dev/null", join(fake.devRoot, "vfio/12")],
    });
    fake.addProcess({ pid: 555, comm: "fio", fds: [join(fake.realDir(DEV), "resource0")] });
    fake.addProcess({ pid: 556, comm: "lspci", fds: [fake.file(DEV, "config")] });
    fake.addProcess({
      pid: 557,
      comm: "mapper",
      maps: [`${join(fake.realDir(DEV), "resource2_wc")} (deleted)`],
    });
    fake.addProcess({
      pid: 600,
      comm: "other",
      fds: [
        join(fake.devRoot, "vfio/13"),
        join(fake.realDir(PORT), "config"),
        join(fake.realDir(DEV), "vendor"),
      ],
    });
    fake.addProcess({ pid: process.pid, comm: "self", fds: [join(fake.realDir(DEV), "config")] });
    const holders = await hw.holders(DEV);
    expect(holders).toEqual([
      { kind: "driver", detail: "cxl_pci" },
      { kind: "resource", detail: "resource0 open by pid 555 (fio)", pid: 555 },
      { kind: "resource", detail: "config open by pid 556 (lspci)", pid: 556 },
      { kind: "resource", detail: "resource2_wc mapped by pid 557 (mapper)", pid: 557 },
      {
        kind: "vfio-group",
        detail: `${join(fake.devRoot, "vfio/12")} open by pid 4242 (qemu-system-x86)`,
        pid: 4242,
      },
    ]);
  });

  it("a vfio driver is not a holder, whoever bound it: the process with its group open is", async () => {
    // An operator's vfio-pci (a VM to come) leaves the device to whoever opens the group (issue #17).
    fake.addDevice({ bdf: "0000:00:03.0", driver: "vfio-pci", iommuGroup: 3 });
    expect(await hw.holders("0000:00:03.0")).toEqual([]);
    fake.addProcess({ pid: 4343, comm: "qemu-system-x86", fds: [join(fake.devRoot, "vfio/3")] });
    expect(await hw.holders("0000:00:03.0")).toEqual([
      {
        kind: "vfio-group",
        detail: `${join(fake.devRoot, "vfio/3")} open by pid 4343 (qemu-system-x86)`,
        pid: 4343,
      },
    ]);
    await hw.bindDriver!("0000:00:03.0", "vfio-pci"); // already bound: no writes
    expect(await hw.holders("0000:00:03.0")).toHaveLength(1);
  });
});
