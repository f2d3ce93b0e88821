// Check 4: VFIO on the real kernel. The driver cxlrc binds comes from the device's modalias and the kernel's
// modules.alias (vfioDriverFor); bindDriver switches to it through driver_override; VFIO_DEVICE_RESET goes
// through koffi ioctls; restore and verify follow; the original driver is bound again on every path: after
// a success, after a forced verify failure, and after a reset refused because the device lacks the RESET
// flag (all reset methods disabled in sysfs). Each ends with the driver link read back.

import { HDM_DECODER } from "../../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../../shared/errors.ts";
import { vfioDriverFor } from "../../../agent/backends/sysfs/vfio-driver.ts";
import { operations } from "../../../agent/ops/index.ts";
import { decoderAt } from "../../../agent/ops/locate.ts";
import type { Check, Rec } from "../check.ts";
import { errorJson } from "../check.ts";
import { deviceState, startClean } from "../device-state.ts";
import { commitDecoder, findHdm, type HdmSite, readDecoders } from "../firmware.ts";
import type { LabContext } from "../lab-context.ts";
import { driverOf, pciDir, resetMethodsOf, writeAttr } from "../sysfs-view.ts";
import { decoderRange, imageSummary, onlyCxlDevice } from "./common.ts";

const ROOTS = { sysfsRoot: "/sys", procRoot: "/proc", devRoot: "/dev" };

interface CycleOptions {
  /** Between restore and verify: change what verify reads (a forced verify failure). */
  tamper?: (lab: LabContext, site: HdmSite) => Promise<unknown>;
  /** Before the reset: disable every kernel reset method, so vfio-pci offers no VFIO_DEVICE_RESET. */
  noResetMethods?: boolean;
}

/**
 * bind vfio → (firmware commits a decoder) → save → quiesce → VFIO reset → restore → verify; whatever
 * happens, the original driver is bound again and the reset methods put back. Throws the first failure.
 */
async function vfioCycle(lab: LabContext, bdf: string, rec: Rec, opts: CycleOptions = {}): Promise<void> {
  const { ctx } = lab;
  const original = driverOf(bdf);
  rec.original = original;
  const vfio = await vfioDriverFor(ROOTS, bdf);
  rec.vfioDriver = vfio;
  if (vfio === null) throw new Error(`no vfio driver matches ${bdf} in modules.alias`);
  try {
    rec.bind = await operations.bind(ctx, { bdf, driver: vfio });
    rec.driverAfterBind = driverOf(bdf);
    const site = await findHdm(lab.backend, bdf);
    rec.firmware = await commitDecoder(lab.backend, site, 0, decoderRange(0));
    const image = await operations.save(ctx, { bdf });
    rec.image = imageSummary(image);
    rec.quiesce = await operations.quiesce(ctx, { bdf, scope: "full" });
    if (opts.noResetMethods) {
      writeAttr(`${pciDir(bdf)}/reset_method`, "\n");
      rec.resetMethodsDuringReset = resetMethodsOf(bdf);
    }
    rec.reset = await operations.reset(ctx, { bdf, method: "vfio" });
    rec.afterReset = await lab.readBack(async (b) => readDecoders(b, await findHdm(b, bdf)));
    rec.restore = await operations.restore(ctx, { bdf, scope: "full", image });
    if (opts.tamper) rec.tampered = await opts.tamper(lab, site);
    const verify = await operations.verify(ctx, { bdf, scope: "full", image });
    rec.verify = verify;
    if (!verify.passed) {
      throw new CxlrcError(
        "verify-mismatch",
        `${bdf}: verify found ${verify.mismatches.length} mismatch(es)`,
        {
          bdf,
          mismatches: verify.mismatches,
        },
      );
    }
  } finally {
    // What the device holds before the driver changes (vfio-pci resets the bus when it lets go of a
    // device it opened, even when VFIO_DEVICE_RESET itself was refused).
    rec.beforeRebind = await deviceState(lab, bdf);
    if (opts.noResetMethods) writeAttr(`${pciDir(bdf)}/reset_method`, "default");
    rec.resetMethodsAtEnd = resetMethodsOf(bdf);
    try {
      rec.rebind = await operations.bind(ctx, { bdf, driver: original });
    } catch (e) {
      rec.rebindError = errorJson(e);
    }
    rec.driverAtEnd = driverOf(bdf);
    rec.end = await deviceState(lab, bdf);
    rec.events = lab.takeEvents();
  }
}

function cycleCheck(name: string, opts: CycleOptions = {}): Check {
  return {
    name,
    async run(lab, rec) {
      const bdf = await onlyCxlDevice(lab);
      rec.bdf = bdf;
      rec.start = await startClean(lab, bdf, "cxl_pci");
      try {
        await vfioCycle(lab, bdf, rec, opts);
        rec.cycle = "completed";
      } catch (e) {
        rec.cycle = "failed";
        rec.cycleError = errorJson(e);
      }
    },
  };
}

export const vfioSuccess = cycleCheck("vfio-success");

/** After the restore, decoder 0's size is written to twice its value: verify must say so. */
export const vfioVerifyFailure = cycleCheck("vfio-verify-failure", {
  async tamper(lab, site) {
    const at = decoderAt(site, 0);
    const before = await lab.backend.mmioRead32(site.bdf, at.bar, at.base + HDM_DECODER.sizeLow.offset);
    await lab.backend.mmioWrite32(site.bdf, at.bar, at.base + HDM_DECODER.sizeLow.offset, 0x2000_0000);
    return { register: "decoder0.sizeLow", before: `0x${before.toString(16)}`, written: "0x20000000" };
  },
});

export const vfioNoResetFlag = cycleCheck("vfio-no-reset-flag", { noResetMethods: true });
