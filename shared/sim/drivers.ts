// What binding and unbinding a kernel driver does to a simulated function, as the real kernel was seen to do
// (../shared/docs/real-kernel.md, Linux 6.1): cxl_pci claims the component-register BAR (the kernel refuses a
// user mmap of it while bound) and sets DVSEC Control Mem_Enable on probe; unbinding clears the Mem_Enable it
// set (6 → 2), and only that: a Mem_Enable firmware set survives. Other drivers (a vendor accelerator driver,
// vfio-pci) leave the BAR and the DVSEC to their user.
import { CxlrcError } from "../errors.ts";
import { BIT } from "./bits.ts";
import type { SimFunction } from "./function.ts";

interface DriverBehaviour {
  /** The driver requests the BAR's memory region: a user mmap of resourceN is refused while it is bound. */
  claimsBar: boolean;
  /** The driver sets Mem_Enable when it finds it clear, and clears it again when unbound. */
  setsMemEnable: boolean;
}

const BEHAVIOUR: Record<string, DriverBehaviour> = {
  cxl_pci: { claimsBar: true, setsMemEnable: true },
};

const NONE: DriverBehaviour = { claimsBar: false, setsMemEnable: false };

export const behaviourOf = (driver: string | null): DriverBehaviour =>
  (driver === null ? undefined : BEHAVIOUR[driver]) ?? NONE;

/** MMIO on a BAR its bound driver claims: refused as the sysfs backend's mmap is ("device-busy"). */
export function checkBarFree(f: SimFunction, bar: number): void {
  if (!behaviourOf(f.driver).claimsBar) return;
  throw new CxlrcError(
    "device-busy",
    `${f.bdf}: BAR${bar} is claimed by driver ${f.driver} (the kernel refuses the mmap of resource${bar})`,
    { bdf: f.bdf, bar, driver: f.driver },
  );
}

/** Unbind the current driver, then bind `driver` (null: leave the function without one). */
export function switchDriver(f: SimFunction, driver: string | null): string | null {
  const previous = f.driver;
  if (previous === driver) return previous;
  if (f.model.kind === "endpoint" && f.model.cxl) {
    if (behaviourOf(previous).setsMemEnable && f.memEnableByDriver) {
      f.update("dvsec.control", 0, BIT.memEnable);
      f.memEnableByDriver = false;
    }
    if (behaviourOf(driver).setsMemEnable && (f.get("dvsec.control") & BIT.memEnable) === 0) {
      f.update("dvsec.control", BIT.memEnable);
      f.memEnableByDriver = true;
    }
  }
  f.driver = driver;
  return previous;
}
