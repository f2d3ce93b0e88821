// The device an image describes, as its driver left it (issue #17): an image saved under a driver records the
// registers the driver's unbind changed and their values after it (image.driver.unbound). While the driver is
// away (the restore, the restore's verify) the device must look as the unbind left it, so that the driver finds
// it as a driver expects at probe and sets its own bits again; with the driver back, the image as saved holds.
import { hex } from "../cxl/regdef.ts";
import type { Image, RegisterSnapshot } from "./schema.ts";

/** The image with the unbind's values in place of the driver's (the same image when it records none). */
export function withoutDriver(image: Image): Image {
  const unbound = image.driver?.unbound;
  if (!unbound || Object.keys(unbound).length === 0) return image;
  let pci = image.pci;
  const command = unbound["pci.command"];
  if (command !== undefined) {
    const header = [...pci.header];
    const dword1 = Number(header[1] ?? "0x0");
    header[1] = hex(((dword1 & 0xffff0000) | (Number(command) & 0xffff)) >>> 0, 8);
    pci = { ...pci, header };
  }
  let cxl = image.cxl;
  if (cxl) {
    const registers = { ...cxl.dvsec.registers };
    for (const [name, raw] of Object.entries(unbound)) {
      const reg = name.startsWith("dvsec.") ? name.slice("dvsec.".length) : null;
      // Raw only: the decoded fields of the saved snapshot describe the driver's value, not this one.
      if (reg && registers[reg]) registers[reg] = { raw } as RegisterSnapshot;
    }
    cxl = { ...cxl, dvsec: { ...cxl.dvsec, registers } };
  }
  return { ...image, pci, cxl };
}
