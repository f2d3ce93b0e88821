// Check 2: the seed's bug on a real kernel, then its fix.
// Bug: decoders committed as firmware would (cxl_pci unbound first: the BAR must be mappable, and the unbind
// clears Mem_Enable), then `echo 1 > reset` (method bus): the kernel restores the PCI state, the HDM decoders
// read back wiped. Fix: cxlrc's lifecycle around the same kernel reset: save, quiesce, reset (method
// "kernel", kernelMethod "bus"), restore full, verify; decoders read back Committed with the same range.
import { operations } from "../../../agent/ops/index.ts";
import type { Check } from "../check.ts";
import { deviceState, startClean } from "../device-state.ts";
import { commitDecoder, findHdm, readDecoders } from "../firmware.ts";
import { configBytes, pciDir, resetMethodsOf, writeAttr } from "../sysfs-view.ts";
import { decoderRange, imageSummary, onlyCxlDevice } from "./common.ts";

export const kernelReset: Check = {
  name: "kernel-reset",
  async run(lab, rec) {
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    rec.start = await startClean(lab, bdf, "cxl_pci");
    rec.resetMethods = resetMethodsOf(bdf);

    // The bug.
    await operations.bind(lab.ctx, { bdf, driver: null });
    rec.unbound = await deviceState(lab, bdf);
    const site = await findHdm(lab.backend, bdf);
    const range = decoderRange(0);
    rec.range = range;
    rec.firmware = await commitDecoder(lab.backend, site, 0, range);
    rec.beforeSysfsReset = await deviceState(lab, bdf);
    const headerBefore = configBytes(bdf).subarray(0, 64).toString("hex");
    writeAttr(`${pciDir(bdf)}/reset`, "1");
    rec.afterSysfsReset = await deviceState(lab, bdf);
    rec.headerBeforeAfterSysfsReset = [headerBefore, configBytes(bdf).subarray(0, 64).toString("hex")];

    // The fix, around the same reset.
    rec.firmwareAgain = await commitDecoder(lab.backend, site, 0, range);
    const image = await operations.save(lab.ctx, { bdf });
    rec.image = imageSummary(image);
    rec.quiesce = await operations.quiesce(lab.ctx, { bdf, scope: "full" });
    rec.reset = await operations.reset(lab.ctx, { bdf, method: "kernel", kernelMethod: "bus" });
    rec.afterReset = await lab.readBack(async (b) => readDecoders(b, await findHdm(b, bdf)));
    rec.restore = await operations.restore(lab.ctx, { bdf, scope: "full", image });
    rec.verify = await operations.verify(lab.ctx, { bdf, scope: "full", image });
    rec.final = await deviceState(lab, bdf);
    rec.resetMethodsAfter = resetMethodsOf(bdf);
    rec.events = lab.takeEvents();
  },
};
