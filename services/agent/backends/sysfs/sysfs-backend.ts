// The real-hardware backend: config space and BARs through sysfs files (pread/pwrite/mmap via koffi),
// resets through the kernel's `reset` file or VFIO, driver binding through driver_override.
// Roots are overridable so the tests run it against a fake tree in a temp dir.
import { CxlrcError } from "../../../../shared/errors.ts";
import { type Clock, type HardwareBackend, realClock } from "../../../../shared/hw/backend.ts";
import { regionsInUse } from "../../../../shared/hw/kernel-cxl.ts";
import { type Logger, silentLogger } from "../../../../shared/log.ts";
import { createConfigSpace } from "./config-space.ts";
import { readCxlView } from "./cxl-view.ts";
import { bindDriver, readDriverOverride } from "./driver-bind.ts";
import { listFunctions } from "./enumerate.ts";
import { findHolders } from "./holders.ts";
import { kernelReset } from "./kernel-reset.ts";
import { createMmio } from "./mmio.ts";
import { type AttrIo, realAttrIo } from "./sysfs-attr.ts";
import { checkBdf, deviceFile, type SysfsRoots } from "./sysfs-paths.ts";
import { vfioReset } from "./vfio-reset.ts";

export interface SysfsBackendOptions {
  sysfsRoot?: string;
  procRoot?: string;
  devRoot?: string;
  clock?: Clock;
  log?: Logger;
  /** How sysfs attributes are read and written; tests wrap it to emulate the kernel's reactions. */
  attrIo?: AttrIo;
}

/** cxlrc binds vfio drivers for its operations; such a binding is not a holder of the device. */
const isVfioDriver = (driver: string | null) => driver?.includes("vfio") ?? false;

export function createSysfsBackend(opts: SysfsBackendOptions = {}): HardwareBackend {
  const roots: SysfsRoots = {
    sysfsRoot: opts.sysfsRoot ?? "/sys",
    procRoot: opts.procRoot ?? "/proc",
    devRoot: opts.devRoot ?? "/dev",
  };
  const log = (opts.log ?? silentLogger).child({ backend: "sysfs" });
  const io = opts.attrIo ?? realAttrIo;
  const config = createConfigSpace((bdf) => deviceFile(roots, bdf, "config"), log);
  const mmio = createMmio((bdf, bar) => deviceFile(roots, bdf, `resource${bar}`), log);
  /** Drivers this backend bound, per device. */
  const ownDrivers = new Map<string, string>();
  let closed = false;

  const live = () => {
    if (closed) throw new CxlrcError("internal", "the sysfs backend is closed");
  };

  return {
    kind: "sysfs",
    clock: opts.clock ?? realClock,
    capabilities: { kernelReset: true, vfioReset: true, bind: true, faults: false },

    async listFunctions() {
      live();
      return listFunctions(roots, config, log);
    },
    async configRead(bdf, offset, width) {
      live();
      return config.read(checkBdf(bdf), offset, width);
    },
    async configWrite(bdf, offset, width, value) {
      live();
      await config.write(checkBdf(bdf), offset, width, value);
    },
    async configReadAll(bdf) {
      live();
      return config.readAll(checkBdf(bdf));
    },
    async mmioRead32(bdf, bar, offset) {
      live();
      return mmio.read32(checkBdf(bdf), bar, offset);
    },
    async mmioWrite32(bdf, bar, offset, value) {
      live();
      mmio.write32(checkBdf(bdf), bar, offset, value);
    },
    async holders(bdf) {
      live();
      const found = await findHolders({
        roots,
        bdf: checkBdf(bdf),
        ownDriver: ownDrivers.get(bdf) ?? null,
        selfPid: process.pid,
        log,
      });
      // A CXL region of the device the kernel holds committed is memory in use (issue #17): never unbind the
      // driver under it. A view that cannot be read is in use too (fail safe), with the reason.
      try {
        const view = await readCxlView(roots, bdf);
        for (const why of view ? regionsInUse(view) : []) found.push({ kind: "memory-online", detail: why });
      } catch (e) {
        found.push({
          kind: "memory-online",
          detail: `the kernel's CXL view of ${bdf} could not be read (${(e as Error).message}): cannot tell whether a region is in use`,
        });
      }
      return found;
    },
    async cxlView(bdf) {
      live();
      return await readCxlView(roots, checkBdf(bdf));
    },
    async kernelReset(bdf, method) {
      live();
      await kernelReset({ roots, io, log }, checkBdf(bdf), method);
    },
    async vfioReset(bdf) {
      live();
      await vfioReset({ roots, log }, checkBdf(bdf));
    },
    async bindDriver(bdf, driver, opts) {
      live();
      // A driver that binds claims the BARs and the kernel revokes our mappings: drop them first.
      mmio.forget(checkBdf(bdf));
      const previous = await bindDriver({ roots, io, log }, bdf, driver, opts);
      if (isVfioDriver(driver)) ownDrivers.set(bdf, driver!);
      else ownDrivers.delete(bdf);
      return previous;
    },
    async driverOverride(bdf) {
      live();
      return await readDriverOverride(roots, checkBdf(bdf));
    },
    async close() {
      if (closed) return;
      closed = true;
      mmio.close();
      config.close();
    },
  };
}
