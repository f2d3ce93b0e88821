// The driver hand-over of a full reset (issue #17), through the bus, from the state a real host is in: the
// device on the driver the kernel bound at boot. These run first in the single scenario, before any other
// check touched the device, and each leaves it on the driver the kernel chooses (driver_override empty).
// - region-busy: an operator creates a pmem region on the device (sysfs, as `cxl create-region`); a full
//   reset through the bus is refused device-busy naming the region, the driver stays, nothing is reset.
// - region-down-reset: the operator takes the region down (as `cxl destroy-region`); the same reset ends
//   verified, cxl_pci handed over and back (driver.rebound), the decoder registers as they were; the
//   kernel's view after it, and (when its endpoint port did not come back) why, one cause at a time.
// - firmware-decoder-handover: decoder 0 committed before cxl_pci binds (as firmware leaves it; on 6.1 +
//   QEMU 7.2 the endpoint then fails its probe: decoder-rebind.ts); the reset restores the decoder and gives
//   cxl_pci back, the kernel's view the same before and after.
// - vfio-bus-reset / vfio-bus-held: the operator binds vfio-pci; a full reset with method vfio ends verified
//   with vfio-pci still bound, and is refused, naming the process, while another process holds the group.
// The BAR is the driver's while cxl_pci is bound (the kernel refuses our mmap): the decoder registers
// "before" are the image's (the agent read them right after its unbind), "after" are read the same way, with
// cxl_pci unbound for the read and bound again.
import { subjects } from "../../../../shared/bus/subjects.ts";
import { withField } from "../../../../shared/cxl/regdef.ts";
import { CXL_DEVICE, CXL_DVSEC_ID } from "../../../../shared/cxl/registers.ts";
import type { Image } from "../../../../shared/image/schema.ts";
import { operations } from "../../../agent/ops/index.ts";
import { findCxlDvsec } from "../../../agent/ops/locate.ts";
import { control } from "../../../cli/bus.ts";
import { type Check, errorJson, type Rec } from "../check.ts";
import { createPmemRegion, cxlObjectsOf, regionNames, settleCxl, takeRegionDown } from "../cxl-region.ts";
import { commitDecoder, dvsecControl, findHdm } from "../firmware.ts";
import { type BusRun, guestBus, HOST, stop } from "../guest-bus.ts";
import type { LabContext } from "../lab-context.ts";
import {
  attrText,
  configBytes,
  driverOf,
  iommuGroupOf,
  kernelLogSince,
  kernelView,
  pciDir,
  resetMethodsOf,
  writeAttr,
} from "../sysfs-view.ts";
import { decoderRange, onlyCxlDevice } from "./common.ts";
import { type HdmRegisters, hdmRegisters } from "./decoder-rebind.ts";
import { holdOpen } from "./gates.ts";

/** driver_override as `cat` shows it ("(null)" when none is set). */
const overrideOf = (bdf: string) => attrText(`${pciDir(bdf)}/driver_override`);

/** What a check keeps of a bus run: the outcome, the coordinator's answer and every event in order. */
export type RunRec = ReturnType<typeof runRec>;
export type DriverState = Awaited<ReturnType<typeof driverState>>;
export type RepairStep = Awaited<ReturnType<typeof repairEndpoint>>[number];

function runRec(run: BusRun) {
  const d = run.decision;
  return {
    requestId: run.requestId,
    outcome: run.tracked.outcome,
    reason: run.tracked.reason,
    method: run.tracked.method,
    decision:
      d?.kind === "refused"
        ? {
            kind: d.kind,
            reason: d.refusal.reason,
            message: d.refusal.message,
            details: d.refusal.details,
          }
        : d?.kind === "plan"
          ? { kind: d.kind, method: d.plan.method, handover: d.plan.handover ?? null, steps: d.plan.steps }
          : d
            ? { kind: d.kind, message: d.message }
            : null,
    events: run.events,
  };
}

/** The device's DVSEC Control, found in config space (readable under any driver). */
async function dvsecOf(lab: LabContext, bdf: string) {
  return lab.readBack(async (b) => {
    const dvsec = await findCxlDvsec(b, bdf, CXL_DVSEC_ID.device);
    if (!dvsec) throw new Error(`${bdf}: no CXL DVSEC id 0 in config space`);
    return dvsecControl(b, { bdf, dvsecOffset: dvsec.offset });
  });
}

/** The driver as a check reads it, with driver_override and DVSEC Control. */
async function driverState(lab: LabContext, bdf: string) {
  return { driver: driverOf(bdf), override: overrideOf(bdf), dvsecControl: await dvsecOf(lab, bdf) };
}

const hex8 = (v: number) => `0x${(v >>> 0).toString(16).padStart(8, "0")}`;

/** The HDM registers an image holds, in the shape hdmRegisters reads them. */
function imageRegisters(image: Image): HdmRegisters | null {
  const hdm = image.cxl?.hdm;
  if (!hdm) return null;
  const raw = (r: { raw?: unknown } | undefined) => hex8(Number(r?.raw ?? 0));
  return {
    capability: raw(hdm.capability),
    globalControl: raw(hdm.globalControl),
    decoders: hdm.decoders.map((d) => ({
      index: d.index,
      baseLow: raw(d.registers.baseLow),
      baseHigh: raw(d.registers.baseHigh),
      sizeLow: raw(d.registers.sizeLow),
      sizeHigh: raw(d.registers.sizeHigh),
      control: raw(d.registers.control),
      dpaSkipLow: raw(d.registers.dpaSkipLow),
      dpaSkipHigh: raw(d.registers.dpaSkipHigh),
    })),
  };
}

/** The image the coordinator stored for the device (cxlrc.ctl.image, as `cxlrc image show` asks for it). */
async function storedImage(lab: LabContext, bdf: string): Promise<Image | null> {
  const bus = await guestBus(lab);
  const reply = (await control(bus.nc, subjects.image, { host: HOST, bdf })) as { image?: Image } | null;
  return reply?.image ?? null;
}

/**
 * The decoder registers with the driver out of the way: `driver` unbound for the read (as the agent's save
 * unbinds it), bound again with driver_override as it was. For a device on vfio-pci (which leaves the BAR to
 * its user) they are read as they are.
 */
async function registersUnbound(lab: LabContext, bdf: string): Promise<HdmRegisters> {
  const driver = driverOf(bdf);
  if (driver === null || driver.includes("vfio")) return hdmRegisters(lab, bdf);
  const override = overrideOf(bdf);
  await operations.bind(lab.ctx, { bdf, driver: null });
  try {
    return await hdmRegisters(lab, bdf);
  } finally {
    await operations.bind(lab.ctx, { bdf, driver, override: override === "(null)" ? null : override });
    lab.takeEvents();
  }
}

/**
 * The device as the kernel leaves it at boot: no driver_override, the HDM decoders wiped by the kernel's
 * reset (a committed one makes 6.1 + QEMU 7.2 fail the endpoint's probe: decoder-rebind), the driver the
 * kernel chooses probed.
 */
async function backToKernelChoice(lab: LabContext, bdf: string): Promise<void> {
  const mark = kernelLogSince(0).mark;
  await operations.bind(lab.ctx, { bdf, driver: null, override: null });
  if (resetMethodsOf(bdf).length > 0) writeAttr(`${pciDir(bdf)}/reset`, "1");
  writeAttr("/sys/bus/pci/drivers_probe", bdf);
  await settleCxl(bdf, mark);
  lab.takeEvents();
}

/** The region of the device's endpoint decoders, if the kernel has one. */
function regionOf(bdf: string): { region: string; endpointDecoder: string } | null {
  const objects = cxlObjectsOf(bdf);
  if (!objects) return null;
  const view = kernelView();
  for (const r of regionNames()) {
    const target = view.regions[r]?.target0 ?? null;
    if (target && objects.decoders.includes(target)) return { region: r, endpointDecoder: target };
  }
  return null;
}

/**
 * The device as the kernel booted it (cxl_pci, its endpoint probed, decoders idle): a full reset through the
 * bus takes cxl_pci, resets, restores and binds it again; the kernel probes its endpoint again and sets
 * Mem_Enable itself, so the read-back with the driver in place matches the image taken under it.
 */
export const freshHandover: Check = {
  name: "fresh-handover",
  async run(lab, rec) {
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    await fullResetThroughBus(lab, rec, bdf, "kernel-lab-fresh-handover", "a device as the kernel booted it");
    lab.takeEvents();
  },
};

/**
 * A full reset of `bdf` through the guest's bus, recorded: driver, override, DVSEC and the kernel's view before
 * and after, the holders, the run (decision, events, outcome), the kernel's messages and the stored image.
 */
async function fullResetThroughBus(
  lab: LabContext,
  rec: Rec,
  bdf: string,
  id: string,
  what: string,
): Promise<void> {
  rec.before = { ...(await driverState(lab, bdf)), kernel: kernelView() };
  rec.holders = await lab.backend.holders(bdf);
  const bus = await guestBus(lab);
  const mark = kernelLogSince(0).mark;
  rec.run = runRec(await bus.submit(id, { bdf, scope: "full", reason: `kernel lab: full reset of ${what}` }));
  await settleCxl(bdf, mark);
  rec.after = { ...(await driverState(lab, bdf)), kernel: kernelView() };
  rec.dmesg = kernelLogSince(mark).lines.filter((l) => /cxl|hdm|decoder/i.test(l));
  const image = await storedImage(lab, bdf);
  rec.image = image ? { driver: image.driver ?? null, registers: imageRegisters(image) } : null;
}

export const regionBusy: Check = {
  name: "region-busy",
  async run(lab, rec) {
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    rec.boot = { ...(await driverState(lab, bdf)), kernel: kernelView() };
    rec.region = createPmemRegion(bdf);
    rec.before = {
      ...(await driverState(lab, bdf)),
      kernel: kernelView(),
      config: configBytes(bdf).toString("hex"),
    };
    rec.holders = await lab.backend.holders(bdf);
    const bus = await guestBus(lab);
    rec.run = runRec(
      await bus.submit("kernel-lab-region-busy", {
        bdf,
        scope: "full",
        reason: "kernel lab: full reset of a device whose pmem region is committed",
      }),
    );
    rec.after = {
      ...(await driverState(lab, bdf)),
      kernel: kernelView(),
      config: configBytes(bdf).toString("hex"),
    };
    lab.takeEvents();
  },
};

export const regionDownReset: Check = {
  name: "region-down-reset",
  async run(lab, rec) {
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    const region = regionOf(bdf);
    if (!region) throw new Error(`${bdf}: no region of the device to take down (region-busy made none?)`);
    rec.takeDown = { ...region, steps: takeRegionDown(region.region, region.endpointDecoder) };
    await fullResetThroughBus(lab, rec, bdf, "kernel-lab-handover", "a device whose region was taken down");
    rec.registersAfter = await registersUnbound(lab, bdf);
    rec.end = { ...(await driverState(lab, bdf)), kernel: kernelView() };
    // The next checks start from the kernel's choice with its endpoint probed.
    if (cxlObjectsOf(bdf)?.endpoint == null) rec.repair = await repairEndpoint(lab, bdf);
    lab.takeEvents();
  },
};

/**
 * The lab's way back when cxl_pci's endpoint did not come back after the hand-over, in two steps, each
 * recorded as the evidence of why:
 * 1. unbind, clear the DVSEC Mem_Enable (the driver set it again at the hand-back), probe again: with it set at
 *    probe time the kernel takes the DVSEC ranges for firmware's and refuses HDM operation;
 * 2. if the endpoint still fails: unbind, the kernel's reset (`echo 1 > reset`: the HDM decoders wiped; QEMU
 *    7.2 keeps DVSEC Control across it), probe again: the device as at boot.
 */
async function repairEndpoint(lab: LabContext, bdf: string) {
  const probeAgain = async (label: string, between: () => Promise<void>) => {
    const mark = kernelLogSince(0).mark;
    await operations.bind(lab.ctx, { bdf, driver: null, override: null });
    await between();
    const registers = await hdmRegisters(lab, bdf);
    const dvsecAtProbe = await dvsecOf(lab, bdf);
    writeAttr("/sys/bus/pci/drivers_probe", bdf);
    await settleCxl(bdf, mark);
    lab.takeEvents();
    return {
      step: label,
      registers,
      dvsecAtProbe,
      after: { ...(await driverState(lab, bdf)), kernel: kernelView() },
      dmesg: kernelLogSince(mark).lines.filter((l) => /cxl|hdm|decoder/i.test(l)),
    };
  };
  const steps = [
    await probeAgain("mem-enable-cleared", async () => {
      const dvsec = await findCxlDvsec(lab.backend, bdf, CXL_DVSEC_ID.device);
      if (!dvsec) throw new Error(`${bdf}: no CXL DVSEC id 0 in config space`);
      const at = dvsec.offset + CXL_DEVICE.control.offset;
      const control = await lab.backend.configRead(bdf, at, 2);
      await lab.backend.configWrite(bdf, at, 2, withField(CXL_DEVICE.control, control, "memEnable", false));
    }),
  ];
  if (cxlObjectsOf(bdf)?.endpoint == null) {
    steps.push(
      await probeAgain("decoders-wiped", async () => {
        writeAttr(`${pciDir(bdf)}/reset`, "1");
      }),
    );
  }
  return steps;
}

export const firmwareDecoderHandover: Check = {
  name: "firmware-decoder-handover",
  async run(lab, rec) {
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    // Firmware's part, before any driver: decoder 0 committed (the BAR is free then).
    await operations.bind(lab.ctx, { bdf, driver: null, override: null });
    const range = decoderRange(0);
    rec.range = range;
    rec.firmware = await commitDecoder(lab.backend, await findHdm(lab.backend, bdf), 0, range);
    rec.registersBefore = await hdmRegisters(lab, bdf);
    try {
      // Then the kernel binds the driver it chooses.
      let mark = kernelLogSince(0).mark;
      writeAttr("/sys/bus/pci/drivers_probe", bdf);
      await settleCxl(bdf, mark);
      rec.probeDmesg = kernelLogSince(mark).lines.filter((l) => /cxl|hdm|decoder/i.test(l));
      lab.takeEvents();
      rec.before = { ...(await driverState(lab, bdf)), kernel: kernelView() };
      const bus = await guestBus(lab);
      mark = kernelLogSince(0).mark;
      rec.run = runRec(
        await bus.submit("kernel-lab-firmware-decoder", {
          bdf,
          scope: "full",
          reason: "kernel lab: full reset of a device with a decoder firmware committed",
        }),
      );
      await settleCxl(bdf, mark);
      rec.rebindDmesg = kernelLogSince(mark).lines.filter((l) => /cxl|hdm|decoder/i.test(l));
      rec.after = { ...(await driverState(lab, bdf)), kernel: kernelView() };
      const image = await storedImage(lab, bdf);
      rec.image = image ? { driver: image.driver ?? null, registers: imageRegisters(image) } : null;
      rec.registersAfter = await registersUnbound(lab, bdf);
    } finally {
      await backToKernelChoice(lab, bdf);
      rec.end = { ...(await driverState(lab, bdf)), kernel: kernelView() };
    }
  },
};

/** The operator's `echo vfio-pci > driver_override; echo BDF > unbind; echo BDF > drivers_probe`. */
function operatorBindsVfio(bdf: string): void {
  writeAttr(`${pciDir(bdf)}/driver_override`, "vfio-pci");
  if (driverOf(bdf) !== null) writeAttr(`${pciDir(bdf)}/driver/unbind`, bdf);
  writeAttr("/sys/bus/pci/drivers_probe", bdf);
}

export const vfioBusReset: Check = {
  name: "vfio-bus-reset",
  async run(lab, rec) {
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    rec.start = await driverState(lab, bdf);
    operatorBindsVfio(bdf);
    // What a VM's kernel does with an assigned device: programs its HDM decoder 0 through the BAR.
    const range = decoderRange(0);
    rec.range = range;
    rec.programmed = await commitDecoder(lab.backend, await findHdm(lab.backend, bdf), 0, range);
    rec.before = { ...(await driverState(lab, bdf)), registers: await hdmRegisters(lab, bdf) };
    rec.holders = await lab.backend.holders(bdf);
    const bus = await guestBus(lab);
    rec.run = runRec(
      await bus.submit("kernel-lab-vfio", {
        bdf,
        scope: "full",
        method: "vfio",
        reason: "kernel lab: full reset through VFIO of a device on vfio-pci",
      }),
    );
    rec.after = { ...(await driverState(lab, bdf)), registers: await hdmRegisters(lab, bdf) };
    lab.takeEvents();
  },
};

export const vfioBusHeld: Check = {
  name: "vfio-bus-held",
  async run(lab, rec) {
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    try {
      if (driverOf(bdf) !== "vfio-pci") operatorBindsVfio(bdf);
      rec.before = { ...(await driverState(lab, bdf)), registers: await hdmRegisters(lab, bdf) };
      const group = `/dev/vfio/${iommuGroupOf(bdf)}`;
      rec.group = group;
      // A VM's process: it holds the group open.
      const vm = await holdOpen([group]);
      try {
        rec.holderPid = vm.pid;
        rec.holders = await lab.backend.holders(bdf);
        const bus = await guestBus(lab);
        rec.run = runRec(
          await bus.submit("kernel-lab-vfio-held", {
            bdf,
            scope: "full",
            method: "vfio",
            reason: "kernel lab: full reset through VFIO while a VM holds the group",
          }),
        );
      } finally {
        await stop(vm);
      }
      rec.after = { ...(await driverState(lab, bdf)), registers: await hdmRegisters(lab, bdf) };
      lab.takeEvents();
    } finally {
      // The operator gives the device back to the kernel's choice (decoders wiped first: see decoder-rebind).
      try {
        await backToKernelChoice(lab, bdf);
        rec.end = { ...(await driverState(lab, bdf)), kernel: kernelView() };
      } catch (e) {
        rec.endError = errorJson(e);
      }
    }
  },
};

/** In the order they run. */
export const DRIVER_HANDOVER_CHECKS: Check[] = [
  freshHandover,
  regionBusy,
  regionDownReset,
  firmwareDecoderHandover,
  vfioBusReset,
  vfioBusHeld,
];
