// save: the image of one function (reset-rules.md "The image"), schema-validated and checksummed. One image
// per function; the coordinator plans which functions (all of a multi-function device, SBR siblings).

import { hex } from "../../../shared/cxl/regdef.ts";
import { PCI } from "../../../shared/cxl/registers.ts";
import { CxlrcError } from "../../../shared/errors.ts";
import { sealImage } from "../../../shared/image/checksum.ts";
import { IMAGE_VERSION, type Image, ImageSchema } from "../../../shared/image/schema.ts";
import { validatedImages } from "../../../shared/image/validated.ts";
import { readConfigReg } from "./config-access.ts";
import type { OpContext } from "./context.ts";
import { readCxlState } from "./cxl-state.ts";
import { listExtCapabilities, locateCxl, readSerial } from "./locate.ts";
import { withMemorySpace } from "./memory-space.ts";
import { readPciState, snapshotPcie } from "./pci-state.ts";
import { requirePresent } from "./ready.ts";
import { describeFunction, functionsOf } from "./topology.ts";

export interface SaveParams {
  bdf: string;
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
  const cxl = await withMemorySpace(b, p.bdf, async () => {
    const layout = await locateCxl(b, p.bdf, caps);
    return layout ? await readCxlState(b, p.bdf, layout) : null;
  });
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
