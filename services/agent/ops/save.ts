// save: the image of one function (reset-rules.md "The image"), schema-validated and checksummed. One image
// per function; the coordinator plans which functions (all of a multi-function device, SBR siblings).

import { hex } from "../../../shared/cxl/regdef.ts";
import { CXL_DVSEC_ID, PCI } from "../../../shared/cxl/registers.ts";
import { CxlrcError, isCxlrcError } from "../../../shared/errors.ts";
import { crossCheck, describeKernelDecoders } from "../../../shared/hw/kernel-cxl.ts";
import { sealImage } from "../../../shared/image/checksum.ts";
import {
  IMAGE_VERSION,
  type Image,
  type ImageCxl,
  type ImageDriver,
  ImageSchema,
} from "../../../shared/image/schema.ts";
import { validatedImages } from "../../../shared/image/validated.ts";
import { readConfigReg } from "./config-access.ts";
import type { OpContext } from "./context.ts";
import { readCxlState, readDvsecRegisters } from "./cxl-state.ts";
import { barDecoders, takeDriver } from "./handover.ts";
import { findCxlDvsec, listExtCapabilities, locateCxl, readSerial } from "./locate.ts";
import { withMemorySpace } from "./memory-space.ts";
import { readPciState, snapshotPcie } from "./pci-state.ts";
import { requirePresent } from "./ready.ts";
import { describeFunction, functionsOf } from "./topology.ts";

export interface SaveParams {
  bdf: string;
  /** Full reset of a device a driver is bound to: the driver the plan takes from it after the save. */
  handover?: { driver: string };
}

type ExtCaps = Awaited<ReturnType<typeof listExtCapabilities>>;

/** The CXL state as it reads now; the component registers with Memory Space on, Command left as it was. */
function readCxl(b: OpContext["backend"], bdf: string, caps: ExtCaps): Promise<ImageCxl | null> {
  return withMemorySpace(b, bdf, async () => {
    const layout = await locateCxl(b, bdf, caps);
    return layout ? await readCxlState(b, bdf, layout) : null;
  });
}

/** Under the driver where the BAR allows it, else after the hand-over (config space and DVSEC under it). */
async function readCxlUnderDriver(
  ctx: OpContext,
  bdf: string,
  caps: ExtCaps,
  driver: string,
): Promise<{ cxl: ImageCxl | null; driver: ImageDriver | null }> {
  const b = ctx.backend;
  const read = () => readCxl(b, bdf, caps);
  let under: ImageCxl | null = null;
  let dvsecUnder: ImageCxl["dvsec"]["registers"] | null = null;
  try {
    under = await read();
  } catch (e) {
    if (!isCxlrcError(e) || e.kind !== "device-busy") throw e;
    // The driver claims the BAR: the DVSEC (config space) is read now, the decoders once it let go.
    const dvsec = await findCxlDvsec(b, bdf, CXL_DVSEC_ID.device, caps);
    dvsecUnder = dvsec ? await readDvsecRegisters(b, bdf, dvsec.offset) : null;
  }
  const view = b.cxlView ? await b.cxlView(bdf).catch(() => null) : null;
  const commandUnder = await readConfigReg(b, bdf, 0, PCI.command);
  const taken = await takeDriver(ctx, bdf, driver);
  if (taken === null) {
    // Unbound already: an earlier run of this operation took it (its reply was lost). Not a driver's image.
    return { cxl: under ?? (await read()), driver: null };
  }
  const after = await read();
  if (!after) return { cxl: under, driver: null };
  const registers = under?.dvsec.registers ?? dvsecUnder ?? after.dvsec.registers;
  const changedByUnbind = Object.keys(registers).filter(
    (name) => after.dvsec.registers[name]?.raw !== registers[name]?.raw,
  );
  const unbound: Record<string, string> = {};
  for (const name of changedByUnbind) unbound[`dvsec.${name}`] = after.dvsec.registers[name]!.raw;
  const commandAfter = await readConfigReg(b, bdf, 0, PCI.command);
  if (commandAfter !== commandUnder) unbound["pci.command"] = hex(commandAfter, 4);
  const cxl = { ...(under ?? after), dvsec: { ...after.dvsec, registers } };
  const kernelView = view
    ? {
        endpoint: view.endpoint,
        decoders: describeKernelDecoders(view),
        differences: crossCheck(view, barDecoders(cxl)).map(
          (d) => `decoder ${d.decoder} ${d.field}: kernel ${d.kernel}, BAR ${d.bar}`,
        ),
      }
    : undefined;
  if (kernelView && kernelView.differences.length > 0) {
    ctx.emit(bdf, "kernel-view.differs", { differences: kernelView.differences });
  }
  return {
    // The device as the driver had it: DVSEC read under the driver, decoders wherever they could be read.
    cxl,
    driver: {
      name: taken.name,
      override: taken.override,
      hdmSource: under ? "bar-under-driver" : "bar-after-unbind",
      changedByUnbind: Object.keys(unbound),
      unbound,
      ...(kernelView ? { kernelView } : {}),
    },
  };
}

export async function save(ctx: OpContext, p: SaveParams): Promise<Image> {
  const b = ctx.backend;
  const start = b.clock.now();
  const { all } = await describeFunction(b, p.bdf);
  const vendorId = await requirePresent(ctx, p.bdf);
  const deviceId = await readConfigReg(b, p.bdf, 0, PCI.deviceId);
  const classRev = await readConfigReg(b, p.bdf, 0, PCI.classRevision);
  const pci = await readPciState(b, p.bdf);
  const caps = await listExtCapabilities(b, p.bdf);
  const serial = await readSerial(b, p.bdf, caps);
  // Command was saved above as it is; the component registers are read with Memory Space on regardless.
  const { cxl, driver } = p.handover
    ? await readCxlUnderDriver(ctx, p.bdf, caps, p.handover.driver)
    : { cxl: await readCxl(b, p.bdf, caps), driver: null };
  const image = sealImage({
    version: IMAGE_VERSION,
    identity: {
      host: ctx.host,
      bdf: p.bdf,
      vendorId,
      deviceId,
      classCode: classRev >>> 8,
      serial,
      functions: functionsOf(all, p.bdf).map((f) => f.bdf),
    },
    pci: {
      header: pci.header.map((d) => hex(d, 8)),
      pcieCapOffset: pci.pcieCapOffset,
      pcie: snapshotPcie(pci),
    },
    cxl,
    ...(driver ? { driver } : {}),
    takenAt: new Date().toISOString(),
    durationMs: b.clock.now() - start,
    agentVersion: ctx.agentVersion,
  });
  const checked = ImageSchema.safeParse(image);
  if (!checked.success) {
    throw new CxlrcError(
      "internal",
      `saved image of ${p.bdf} fails its own schema: ${checked.error.message}`,
      {
        bdf: p.bdf,
      },
    );
  }
  // Checked and sealed here: when it comes back for restore and verify it is known (image-input.ts).
  validatedImages.remember(image);
  ctx.emit(p.bdf, "image.saved", {
    checksum: image.checksum,
    cxl: cxl !== null,
    decoders: cxl?.hdm?.decoderCount ?? 0,
    durationMs: image.durationMs,
  });
  return image;
}
