// Check 5: the gates, on a real kernel.
// - flr-refused: an io-scope reset (FLR) on a function without FLR is refused with kind "unsupported", and
//   nothing in config space changed.
// - holders: another process in the guest holds the VFIO group and resource0 open: holders() names it, the
//   policy's device-busy gate refuses a full reset, and VFIO itself refuses the group (EBUSY → device-busy);
//   once the process is gone, nothing holds the device.
// - mem-enable: unbinding cxl_pci clears the Mem_Enable it set: verify names dvsec.control memEnable and a
//   full restore puts it back; Mem_Enable set by firmware survives the driver coming and going.
import { type ChildProcess, spawn } from "node:child_process";
import { deviceBusyGate } from "../../../../machines/policy/gates.ts";
import { decodeConfigSpace } from "../../../../shared/cxl/decode.ts";
import { withField } from "../../../../shared/cxl/regdef.ts";
import { CXL_DEVICE } from "../../../../shared/cxl/registers.ts";
import { sealImage } from "../../../../shared/image/checksum.ts";
import type { Image } from "../../../../shared/image/schema.ts";
import { vfioDriverFor } from "../../../agent/backends/sysfs/vfio-driver.ts";
import { snapshot } from "../../../agent/ops/cxl-regs.ts";
import { operations } from "../../../agent/ops/index.ts";
import { factsFromProbe } from "../../../coordinator/probe-facts.ts";
import { type Check, outcome } from "../check.ts";
import { deviceState, startClean } from "../device-state.ts";
import { findHdm } from "../firmware.ts";
import { configBytes, configRead, driverOf, iommuGroupOf, pciDir, resetMethodsOf } from "../sysfs-view.ts";
import { imageSummary, onlyCxlDevice } from "./common.ts";

const ROOTS = { sysfsRoot: "/sys", procRoot: "/proc", devRoot: "/dev" };

export const flrRefused: Check = {
  name: "flr-refused",
  async run(lab, rec) {
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    const before = configBytes(bdf);
    rec.flrCapable = decodeConfigSpace(new Uint8Array(before), { bdf }).flrCapable;
    rec.resetMethods = resetMethodsOf(bdf);
    rec.driver = driverOf(bdf);
    rec.reset = await outcome(() => operations.reset(lab.ctx, { bdf, method: "flr" }));
    rec.configUnchanged = configBytes(bdf).equals(before);
    rec.events = lab.takeEvents();
  },
};

/** A process that opens the files and prints "ready", then sleeps until killed. */
export function holdOpen(paths: string[]): Promise<ChildProcess> {
  const redirections = paths.map((p, i) => `${i + 3}<${p}`).join(" ");
  const child = spawn("/bin/sh", ["-c", `exec ${redirections}; echo ready; exec sleep 600`], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`holder process exited early (${code})`)));
    child.stdout!.once("data", () => resolve(child));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await gone;
}

export const holders: Check = {
  name: "holders",
  async run(lab, rec) {
    const { ctx, backend } = lab;
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    rec.start = await startClean(lab, bdf, "cxl_pci");
    const original = driverOf(bdf);
    const vfio = await vfioDriverFor(ROOTS, bdf);
    rec.bind = await operations.bind(ctx, { bdf, driver: vfio });
    const group = iommuGroupOf(bdf);
    const paths = [`/dev/vfio/${group}`, `${pciDir(bdf)}/resource0`];
    rec.heldPaths = paths;
    const child = await holdOpen(paths);
    try {
      rec.holderPid = child.pid;
      rec.holdersWhileHeld = await backend.holders(bdf);
      const probe = await operations.probe(ctx, { bdf });
      const inv = await operations.inventory(ctx);
      rec.gateWhileHeld = deviceBusyGate("full", factsFromProbe(ctx.host, probe, inv), [bdf]);
      rec.vfioResetWhileHeld = await outcome(() => operations.reset(ctx, { bdf, method: "vfio" }));
    } finally {
      await stop(child);
    }
    rec.holdersAfter = await backend.holders(bdf);
    const probe = await operations.probe(ctx, { bdf });
    rec.gateAfter = deviceBusyGate("full", factsFromProbe(ctx.host, probe, null), [bdf]);
    rec.rebind = await operations.bind(ctx, { bdf, driver: original });
    rec.driverAtEnd = driverOf(bdf);
    rec.events = lab.takeEvents();
  },
};

/**
 * Mem_Enable and the driver, in two parts.
 * 1. Kernel-set: cxl_pci's endpoint sets Mem_Enable and claims the BAR, so an image of the device in use
 *    cannot be taken (save is refused: device-busy); unbinding clears Mem_Enable. The image before the
 *    unbind is therefore the one saved after it with DVSEC Control as config space read it under the driver.
 *    verify against it must name dvsec.control memEnable (not pass), and a full restore must put it back.
 * 2. Firmware-set: Mem_Enable set with the driver unbound (as a BIOS does) survives binding and unbinding
 *    cxl_pci (the kernel clears only what it set): verify against the image passes.
 */
export const memEnable: Check = {
  name: "mem-enable",
  async run(lab, rec) {
    const { ctx } = lab;
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    rec.bound = await startClean(lab, bdf, "cxl_pci");
    const probe = await operations.probe(ctx, { bdf });
    rec.probeBound = { memEnabled: probe.cxl?.memEnabled, componentUnreadable: probe.componentUnreadable };
    rec.saveBound = await outcome(() => operations.save(ctx, { bdf }));
    const dvsec = probe.cxl?.dvsecOffset;
    if (dvsec === undefined) throw new Error(`${bdf}: probe found no CXL DVSEC`);
    const boundControl = configRead(bdf, dvsec + CXL_DEVICE.control.offset, 2);
    await operations.bind(ctx, { bdf, driver: null });
    rec.unbound = await deviceState(lab, bdf);
    const image = await operations.save(ctx, { bdf });
    const before = withDvsecControl(image, boundControl);
    rec.imageBeforeUnbind = imageSummary(before);
    rec.verify = await operations.verify(ctx, { bdf, scope: "io", image: before });
    rec.restore = await operations.restore(ctx, { bdf, scope: "full", image: before });
    rec.verifyAfterRestore = await operations.verify(ctx, { bdf, scope: "full", image: before });
    rec.restored = await deviceState(lab, bdf);

    // Part 2: firmware sets Mem_Enable, the driver comes and goes.
    await startClean(lab, bdf, null);
    const site = await findHdm(lab.backend, bdf);
    const at = site.dvsecOffset + CXL_DEVICE.control.offset;
    const control = await lab.backend.configRead(bdf, at, 2);
    await lab.backend.configWrite(bdf, at, 2, withField(CXL_DEVICE.control, control, "memEnable", true));
    rec.firmware = await deviceState(lab, bdf);
    const fwImage = await operations.save(ctx, { bdf });
    rec.fwImage = imageSummary(fwImage);
    rec.fwBind = await operations.bind(ctx, { bdf, driver: "cxl_pci" });
    rec.fwBound = (await deviceState(lab, bdf)).dvsecControl;
    await operations.bind(ctx, { bdf, driver: null });
    rec.fwUnbound = await deviceState(lab, bdf);
    rec.fwVerify = await operations.verify(ctx, { bdf, scope: "io", image: fwImage });
    rec.events = lab.takeEvents();
    await startClean(lab, bdf, "cxl_pci");
    rec.driverAtEnd = driverOf(bdf);
  },
};

/** The image with DVSEC Control replaced by `raw` (decoded as save decodes it), sealed again. */
function withDvsecControl(image: Image, raw: number): Image {
  const { checksum: _old, ...body } = image;
  if (!body.cxl) throw new Error(`${image.identity.bdf}: the image has no CXL state`);
  const registers = { ...body.cxl.dvsec.registers, control: snapshot(CXL_DEVICE.control, raw) };
  return sealImage({ ...body, cxl: { ...body.cxl, dvsec: { ...body.cxl.dvsec, registers } } });
}
