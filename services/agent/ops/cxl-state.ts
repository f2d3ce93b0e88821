// Reading the CXL state of a function into the image's shape: DVSEC id 0 registers, Register Locator,
// component block, HDM capability, global control and every decoder (raw + decoded).

import { hex, readFlag } from "../../../shared/cxl/regdef.ts";
import { CXL_DEVICE, HDM } from "../../../shared/cxl/registers.ts";
import type { HardwareBackend } from "../../../shared/hw/backend.ts";
import type { ImageCxl, ImageHdm, RegisterSnapshot } from "../../../shared/image/schema.ts";
import { readConfigReg, readMmioReg } from "./config-access.ts";
import { DECODER_REGISTERS, DVSEC_REGISTERS, rawOf, snapshot } from "./cxl-regs.ts";
import { type CxlLayout, decoderAt, type HdmLoc } from "./locate.ts";

export async function readDvsecRegisters(
  b: HardwareBackend,
  bdf: string,
  dvsecOffset: number,
): Promise<Record<string, RegisterSnapshot>> {
  const out: Record<string, RegisterSnapshot> = {};
  for (const def of DVSEC_REGISTERS)
    out[def.name] = snapshot(def, await readConfigReg(b, bdf, dvsecOffset, def));
  return out;
}

export async function readDecoderRegisters(
  b: HardwareBackend,
  bdf: string,
  hdm: { at: HdmLoc["at"] },
  n: number,
): Promise<Record<string, RegisterSnapshot>> {
  const at = decoderAt(hdm, n);
  const out: Record<string, RegisterSnapshot> = {};
  for (const def of DECODER_REGISTERS) out[def.name] = snapshot(def, await readMmioReg(b, bdf, at, def));
  return out;
}

export async function readHdm(b: HardwareBackend, bdf: string, hdm: HdmLoc): Promise<ImageHdm> {
  const decoders: ImageHdm["decoders"] = [];
  for (let n = 0; n < hdm.decoderCount; n++) {
    decoders.push({ index: n, registers: await readDecoderRegisters(b, bdf, hdm, n) });
  }
  return {
    capabilityOffset: hdm.capabilityOffset,
    capability: snapshot(HDM.capability, hdm.capability),
    decoderCount: hdm.decoderCount,
    globalControl: snapshot(HDM.globalControl, await readMmioReg(b, bdf, hdm.at, HDM.globalControl)),
    decoders,
  };
}

export async function readCxlState(b: HardwareBackend, bdf: string, layout: CxlLayout): Promise<ImageCxl> {
  const registers = await readDvsecRegisters(b, bdf, layout.dvsec.offset);
  return {
    dvsec: { ...layout.dvsec, registers },
    registerLocator: layout.locator
      ? {
          offset: layout.locator.offset,
          blocks: layout.locator.blocks.map((x) => ({
            bir: x.bir,
            blockId: x.blockId,
            offset: hex(x.offset),
          })),
        }
      : null,
    component: layout.component,
    hdm: layout.hdm ? await readHdm(b, bdf, layout.hdm) : null,
    configLock: readFlag(CXL_DEVICE.lock, rawOf(registers.lock, "dvsec.lock"), "configLock"),
  };
}

/** Where the image says the HDM capability is (component block + capability offset). */
export function hdmAtFromImage(cxl: ImageCxl): { at: HdmLoc["at"] } | null {
  if (!cxl.component || !cxl.hdm) return null;
  return { at: { bar: cxl.component.bar, base: cxl.component.offset + cxl.hdm.capabilityOffset } };
}
