// Driver binding through sysfs: unbind from the current driver, then either bind the requested one
// (driver_override + drivers_probe, the override stays so that no other driver grabs the device during
// the operation) or, when unbinding only, clear the override and leave the device without a driver.
import { join } from "node:path";
import { CxlrcError } from "../../../../shared/errors.ts";
import type { Logger } from "../../../../shared/log.ts";
import { type AttrIo, readLinkName } from "./sysfs-attr.ts";
import { deviceDir, driversProbePath, type SysfsRoots } from "./sysfs-paths.ts";

export interface BindDeps {
  roots: SysfsRoots;
  io: AttrIo;
  log: Logger;
}

/** Returns the driver bound before (null when none). */
export async function bindDriver(deps: BindDeps, bdf: string, driver: string | null): Promise<string | null> {
  const { roots, io, log } = deps;
  const dir = deviceDir(roots, bdf);
  if (driver !== null && !/^[A-Za-z0-9_.-]+$/.test(driver)) {
    throw new CxlrcError("bad-input", `not a driver name: ${JSON.stringify(driver)}`, { bdf });
  }
  const previous = await readLinkName(join(dir, "driver"));
  if (previous === driver) {
    log.debug({ bdf, driver }, "already bound as requested");
    return previous;
  }
  if (previous !== null) await io.writeAttr(join(dir, "driver/unbind"), bdf, log);
  if (driver === null) {
    await io.writeAttr(join(dir, "driver_override"), "\n", log);
    return previous;
  }
  await io.writeAttr(join(dir, "driver_override"), driver, log);
  await io.writeAttr(driversProbePath(roots), bdf, log);
  const now = await readLinkName(join(dir, "driver"));
  if (now !== driver) {
    throw new CxlrcError(
      "backend",
      `${bdf} is bound to ${now ?? "no driver"} after drivers_probe, not ${driver} (module not loaded?)`,
      { bdf, driver, bound: now, previous },
    );
  }
  return previous;
}
