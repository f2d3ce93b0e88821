// Small things several checks share: which device, which decoder range, what of an image to report.

import type { Image } from "../../../../shared/image/schema.ts";
import { operations } from "../../../agent/ops/index.ts";
import type { LabContext } from "../lab-context.ts";
import { cxlRootWindow } from "../sysfs-view.ts";

/**
 * Decoders the lab commits (as firmware would, or a VM's kernel on its assigned device): 256 MiB each, side
 * by side from the start of the CXL window.
 */
export const DECODER_SIZE = 0x1000_0000n;

export function decoderRange(slot: number): { base: bigint; size: bigint } {
  const w = cxlRootWindow();
  if (!w) throw new Error("no CXL root decoder (/sys/bus/cxl/devices/decoder0.0): is cxl_acpi loaded?");
  const base = w.start + BigInt(slot) * DECODER_SIZE;
  if (base + DECODER_SIZE > w.start + w.size)
    throw new Error(`decoder slot ${slot} is outside the CXL window`);
  return { base, size: DECODER_SIZE };
}

/** The CXL Type-3 devices (DVSEC id 0), in BDF order. */
export async function cxlDevices(lab: LabContext): Promise<string[]> {
  const inv = await operations.inventory(lab.ctx);
  return inv.devices.filter((d) => d.cxl).map((d) => d.bdf);
}

export async function onlyCxlDevice(lab: LabContext): Promise<string> {
  const all = await cxlDevices(lab);
  if (all.length !== 1) throw new Error(`expected one CXL device, found ${all.length}: ${all.join(", ")}`);
  return all[0]!;
}

/** What the host needs of an image: identity, checksum and the saved CXL registers it asserts on. */
export function imageSummary(image: Image) {
  return {
    bdf: image.identity.bdf,
    checksum: image.checksum,
    command: image.pci.header[1],
    dvsecControl: image.cxl?.dvsec.registers.control ?? null,
    globalControl: image.cxl?.hdm?.globalControl ?? null,
    decoders: image.cxl?.hdm?.decoders ?? [],
  };
}
