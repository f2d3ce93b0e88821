// An image arriving with a restore or verify: schema, checksum, and that it is this function's image.
// Schema and checksum are checked once per image content (shared/image/validated.ts): the image save made,
// coming back for restore and then verify, is recognised value by value instead of validated three times.
import { CxlrcError } from "../../../shared/errors.ts";
import type { Image } from "../../../shared/image/schema.ts";
import { validatedImages } from "../../../shared/image/validated.ts";
import { DECODER_REGISTERS, DVSEC_REGISTERS } from "./cxl-regs.ts";
import type { PciState } from "./pci-state.ts";

export function loadImage(input: unknown, bdf: string): Image {
  const image = validatedImages.parse(input);
  if (image.identity.bdf !== bdf) {
    throw new CxlrcError("bad-input", `the image is of ${image.identity.bdf}, not ${bdf}`, {
      bdf,
      path: "image.identity.bdf",
      value: image.identity.bdf,
    });
  }
  requireRegisters(image);
  return image;
}

/** Every register restore and verify use is in the image; caught before any write, naming the path. */
function requireRegisters(image: Image): void {
  const missing: string[] = [];
  const cxl = image.cxl;
  if (cxl) {
    for (const def of DVSEC_REGISTERS)
      if (!cxl.dvsec.registers[def.name]) missing.push(`image.cxl.dvsec.registers.${def.name}`);
    if (cxl.hdm && !cxl.component) missing.push("image.cxl.component");
    for (const [i, d] of (cxl.hdm?.decoders ?? []).entries())
      for (const def of DECODER_REGISTERS)
        if (!d.registers[def.name]) missing.push(`image.cxl.hdm.decoders[${i}].registers.${def.name}`);
  }
  if (missing.length > 0) {
    throw new CxlrcError("bad-input", `image lacks ${missing.join(", ")}`, { path: missing[0], missing });
  }
}

const num = (h: string) => Number.parseInt(h.slice(2), 16) >>> 0;

export function pciStateOf(image: Image): PciState {
  const pcie: Record<string, number> = {};
  for (const [name, snap] of Object.entries(image.pci.pcie)) pcie[name] = num(snap.raw);
  return { header: image.pci.header.map(num), pcieCapOffset: image.pci.pcieCapOffset, pcie };
}
