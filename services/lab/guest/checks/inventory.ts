// Check 1: inventory and probe from the real /sys/bus/pci. Alongside: the same facts read with plain fs
// (driver link, reset_method, iommu_group, parent by realpath) and the raw `config` bytes, which the host
// decodes with `cxlrc decode` and compares with the probe's decode. The probe runs twice: under cxl_pci
// (config space only: the kernel refuses to map the BAR a driver claims) and with the driver unbound.
import { operations } from "../../../agent/ops/index.ts";
import type { Check } from "../check.ts";
import { outcome } from "../check.ts";
import { startClean } from "../device-state.ts";
import { findHdm, readDecoder } from "../firmware.ts";
import {
  configBytes,
  cxlBusDevices,
  describe,
  driverOf,
  pciDir,
  pciFunctions,
  writeAttr,
} from "../sysfs-view.ts";
import { onlyCxlDevice } from "./common.ts";

export const inventoryProbe: Check = {
  name: "inventory-probe",
  async run(lab, rec) {
    const inventory = await operations.inventory(lab.ctx);
    rec.inventory = inventory;
    rec.sysfs = pciFunctions().map(describe);
    rec.cxlBus = cxlBusDevices();
    const probes: unknown[] = [];
    rec.probes = probes;
    for (const dev of inventory.devices.filter((d) => d.cxl)) {
      const driver = driverOf(dev.bdf);
      const fileBytes = configBytes(dev.bdf);
      const backendBytes = await lab.readBack((b) => b.configReadAll(dev.bdf));
      const bound = await operations.probe(lab.ctx, { bdf: dev.bdf });
      // With the driver unbound the component registers can be mapped: decoders and HDM decode.
      await operations.bind(lab.ctx, { bdf: dev.bdf, driver: null });
      const unbound = await outcome(() => operations.probe(lab.ctx, { bdf: dev.bdf }));
      const rebind = await outcome(() => operations.bind(lab.ctx, { bdf: dev.bdf, driver }));
      probes.push({
        bdf: dev.bdf,
        driver,
        configHex: fileBytes.toString("hex"),
        backendConfigHex: Buffer.from(backendBytes).toString("hex"),
        probe: bound,
        unbound,
        rebind,
        driverAtEnd: driverOf(dev.bdf),
      });
    }
    lab.takeEvents();
  },
};

/** The switch scenario's inventory, for the topology the SBR checks rely on. */
export const inventoryOnly: Check = {
  name: "inventory",
  async run(lab, rec) {
    rec.inventory = await operations.inventory(lab.ctx);
    rec.sysfs = pciFunctions().map(describe);
    rec.cxlBus = cxlBusDevices();
  },
};

/**
 * A BAR mapping the backend holds when a driver binds behind its back (an operator, udev): the kernel
 * revokes it (a touch would be SIGBUS) and refuses a new one. The backend must answer "device-busy" and
 * map again once the driver is gone.
 */
export const barAfterRebind: Check = {
  name: "bar-after-rebind",
  async run(lab, rec) {
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    await startClean(lab, bdf, null);
    const site = await findHdm(lab.backend, bdf);
    rec.unboundRead = await readDecoder(lab.backend, site, 0);
    writeAttr(`${pciDir(bdf)}/driver_override`, "cxl_pci");
    writeAttr("/sys/bus/pci/drivers_probe", bdf);
    rec.driverBound = driverOf(bdf);
    rec.boundRead = await outcome(() => readDecoder(lab.backend, site, 0));
    writeAttr(`${pciDir(bdf)}/driver/unbind`, bdf);
    writeAttr(`${pciDir(bdf)}/driver_override`, "\n");
    rec.driverUnbound = driverOf(bdf);
    rec.unboundAgain = await outcome(() => readDecoder(lab.backend, site, 0));
    await startClean(lab, bdf, "cxl_pci");
    rec.driverAtEnd = driverOf(bdf);
  },
};
