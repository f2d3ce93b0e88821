// Driver binding through sysfs: unbind from the current driver, then either bind the requested one
// (driver_override + drivers_probe, the override stays so that no other driver grabs the device during
// the operation) or, when unbinding only, clear the override and leave the device without a driver.
import { join } from "node:path";
import { CxlrcError } from "../../../../shared/errors.ts";
import type { Logger } from "../../../../shared/log.ts";
import { type AttrIo, readAttr, readLinkName } from "./sysfs-attr.ts";
import { deviceDir, driversProbePath, type SysfsRoots } from "./sysfs-paths.ts";

export interface BindDeps {
  roots: SysfsRoots;
  io: AttrIo;
  log: Logger;
}

const DRIVER_RE = /^[A-Za-z0-9_.-]+$/;

/** driver_override as the kernel shows it ("(null)" when none is set). */
export async function readDriverOverride(roots: SysfsRoots, bdf: string): Promise<string | null> {
  const v = (await readAttr(join(deviceDir(roots, bdf), "driver_override")))?.trim() ?? "";
  return v === "" || v === "(null)" ? null : v;
}

/**
 * Returns the driver bound before (null when none). `override`, when given, is the driver_override left
 * behind (null clears it): a hand-back puts back the one found before the hand-over.
 */
export async function bindDriver(
  deps: BindDeps,
  bdf: string,
  driver: string | null,
  opts: { override?: string | null } = {},
): Promise<string | null> {
  const { roots, io, log } = deps;
  const dir = deviceDir(roots, bdf);
  for (const name of [driver, opts.override ?? null]) {
    if (name !== null && !DRIVER_RE.test(name)) {
      throw new CxlrcError("bad-input", `not a driver name: ${JSON.stringify(name)}`, { bdf });
    }
  }
  const leave = async (): Promise<void> => {
    if (opts.override === undefined) return;
    if (opts.override === (await readDriverOverride(roots, bdf))) return;
    await io.writeAttr(join(dir, "driver_override"), opts.override ?? "\n", log);
  };
  const previous = await readLinkName(join(dir, "driver"));
  if (previous === driver) {
    log.debug({ bdf, driver }, "already bound as requested");
    await leave();
    return previous;
  }
  if (previous !== null) await io.writeAttr(join(dir, "driver/unbind"), bdf, log);
  if (driver === null) {
    await io.writeAttr(join(dir, "driver_override"), opts.override ?? "\n", log);
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
  await leave();
  return previous;
}
