// verify: what reads back against the image, every mismatch listed (never just the first).
// io scope: every CXL field must be unchanged (a difference is a scope violation, reported, not thrown).
// full scope: every saved writable field equals its read-back (Commit, status and RO fields ignored), and
// every decoder committed in the image reads Committed = 1, Error Not Committed = 0 with the same base and
// size. The Commit bit itself is never trusted to read back (QEMU clears it once committed).
import type { VerifyResult } from "../../../shared/bus/agent-contract.ts";
import type { Scope } from "../../../shared/bus/agent-messages.ts";
import { type RegisterDef, readFlag } from "../../../shared/cxl/regdef.ts";
import { HDM, HDM_DECODER, PCI, PCI_BRIDGE, PCIE_SAVED } from "../../../shared/cxl/registers.ts";
import { isCxlrcError } from "../../../shared/errors.ts";
import type { HardwareBackend } from "../../../shared/hw/backend.ts";
import type { Image, ImageCxl } from "../../../shared/image/schema.ts";
import { withoutDriver } from "../../../shared/image/without-driver.ts";
import { compareRegister, configFields, expectField, type Mismatch } from "./compare.ts";
import { readConfigReg, readMmioReg } from "./config-access.ts";
import type { OpContext } from "./context.ts";
import { DECODER_WRITE_ORDER, DVSEC_REGISTERS, rawOf, regName } from "./cxl-regs.ts";
import { hdmAtFromImage } from "./cxl-state.ts";
import { loadImage, pciStateOf } from "./image-input.ts";
import { decoderAt } from "./locate.ts";
import { withMemorySpace } from "./memory-space.ts";
import { requirePresent } from "./ready.ts";

export type { Mismatch } from "./compare.ts";
export type { VerifyResult };

export interface VerifyParams {
  bdf: string;
  scope: Scope;
  image: unknown;
  /**
   * The hand-back's read (bind with verify): the driver just bound may claim the BAR. Then the decoders are
   * not read here (the restore's verify read them before the driver came back); config space and DVSEC are.
   */
  driverMayClaimBar?: boolean;
}

export async function verify(ctx: OpContext, p: VerifyParams): Promise<VerifyResult> {
  const saved = loadImage(p.image, p.bdf);
  // With the driver away (the reset's verify) the device is expected as the driver's unbind left it.
  const image = p.driverMayClaimBar ? saved : withoutDriver(saved);
  await requirePresent(ctx, p.bdf);
  const pci = await verifyPci(ctx.backend, p.bdf, image);
  const cxl = image.cxl
    ? // The component registers sit behind the memory BAR: read them with Memory Space on whatever Command
      // the image put back (a device released from quarantine was saved with it off), Command kept as it is.
      await withMemorySpace(ctx.backend, p.bdf, () =>
        verifyCxl(ctx.backend, p.bdf, image.cxl!, p.driverMayClaimBar === true),
      )
    : { mismatches: [], checked: 0 };
  const mismatches = [...pci.mismatches, ...cxl.mismatches];
  const scopeViolation = p.scope === "io" && cxl.mismatches.length > 0;
  const result: VerifyResult = {
    bdf: p.bdf,
    scope: p.scope,
    passed: mismatches.length === 0,
    mismatches,
    scopeViolation,
    registersChecked: pci.checked + cxl.checked,
  };
  ctx.emit(p.bdf, "verify.completed", {
    scope: p.scope,
    passed: result.passed,
    mismatches: mismatches.length,
    scopeViolation,
    ...(mismatches.length > 0 ? { registers: [...new Set(mismatches.map((m) => m.register))] } : {}),
  });
  return result;
}

interface Checked {
  mismatches: Mismatch[];
  checked: number;
}

/** PCI config state as pci_restore_state puts it back: Command, BARs, header bytes, PCIe control registers. */
export async function verifyPci(b: HardwareBackend, bdf: string, image: Image): Promise<Checked> {
  const saved = pciStateOf(image);
  const out: Mismatch[] = [];
  let checked = 0;
  const reg = async (name: string, base: number, def: RegisterDef, expected: number) => {
    checked++;
    out.push(...compareRegister(name, def, expected, await readConfigReg(b, bdf, base, def), "pci"));
  };
  const dword = async (name: string, i: number) => {
    checked++;
    const actual = (await b.configRead(bdf, i * 4, 4)) >>> 0;
    const expected = saved.header[i] ?? 0;
    if (actual !== expected) out.push({ register: name, field: "value", expected, actual, domain: "pci" });
  };
  for (const [def, v] of [
    [PCI.vendorId, image.identity.vendorId],
    [PCI.deviceId, image.identity.deviceId],
  ] as const) {
    checked++;
    const actual = await readConfigReg(b, bdf, 0, def);
    if (actual !== v)
      out.push({ register: regName.pci(def), field: def.name, expected: v, actual, domain: "pci" });
  }
  const h = saved.header;
  await reg(regName.pci(PCI.command), 0, PCI.command, (h[1] ?? 0) & 0xffff);
  await reg(regName.pci(PCI.cacheLineSize), 0, PCI.cacheLineSize, (h[3] ?? 0) & 0xff);
  await reg(regName.pci(PCI.latencyTimer), 0, PCI.latencyTimer, ((h[3] ?? 0) >>> 8) & 0xff);
  await reg(regName.pci(PCI.interruptLine), 0, PCI.interruptLine, (h[15] ?? 0) & 0xff);
  const layout = ((h[3] ?? 0) >>> 16) & 0x7f;
  if (layout === 1) {
    for (const i of [4, 5]) await dword(`pci.bar${i - 4}`, i);
    for (const def of [
      PCI_BRIDGE.primaryBus,
      PCI_BRIDGE.secondaryBus,
      PCI_BRIDGE.subordinateBus,
      PCI_BRIDGE.memoryBase,
      PCI_BRIDGE.memoryLimit,
    ]) {
      const i = def.offset >>> 2;
      const shift = (def.offset & 3) * 8;
      const mask = def.width === 4 ? 0xffffffff : (1 << (def.width * 8)) - 1;
      await reg(regName.bridge(def), 0, def, ((h[i] ?? 0) >>> shift) & mask);
    }
    for (const i of [9, 10, 11]) await dword(`bridge.dword${i}`, i);
    await reg(regName.bridge(PCI_BRIDGE.bridgeControl), 0, PCI_BRIDGE.bridgeControl, (h[15] ?? 0) >>> 16);
  } else {
    for (let i = 4; i <= 9; i++) await dword(`pci.bar${i - 4}`, i);
    await dword("pci.expansionRom", 12);
  }
  if (saved.pcieCapOffset !== null) {
    for (const def of PCIE_SAVED) {
      const v = saved.pcie[def.name];
      if (v !== undefined) await reg(regName.pcie(def), saved.pcieCapOffset, def, v);
    }
  }
  return { mismatches: out, checked };
}

/** DVSEC writable fields, range bases, HDM Global Control and every decoder. */
export async function verifyCxl(
  b: HardwareBackend,
  bdf: string,
  cxl: ImageCxl,
  driverMayClaimBar = false,
): Promise<Checked> {
  const out: Mismatch[] = [];
  let checked = 0;
  const dvsec = cxl.dvsec;
  for (const def of DVSEC_REGISTERS) {
    if (configFields(def).length === 0) continue;
    checked++;
    const expected = rawOf(dvsec.registers[def.name], regName.dvsec(def));
    const actual = await readConfigReg(b, bdf, dvsec.offset, def);
    out.push(...compareRegister(regName.dvsec(def), def, expected, actual, "cxl"));
  }
  const hdm = hdmAtFromImage(cxl);
  if (!hdm || !cxl.hdm) return { mismatches: out, checked };
  checked++;
  let gc: number;
  try {
    gc = await readMmioReg(b, bdf, hdm.at, HDM.globalControl);
  } catch (e) {
    if (driverMayClaimBar && isCxlrcError(e) && e.kind === "device-busy") return { mismatches: out, checked };
    throw e;
  }
  out.push(
    ...compareRegister(
      regName.hdm(HDM.globalControl),
      HDM.globalControl,
      rawOf(cxl.hdm.globalControl, "hdm"),
      gc,
      "cxl",
    ),
  );
  for (const d of cxl.hdm.decoders) {
    const at = decoderAt(hdm, d.index);
    for (const def of DECODER_WRITE_ORDER) {
      checked++;
      const name = regName.decoder(d.index, def);
      const actual = await readMmioReg(b, bdf, at, def);
      out.push(...compareRegister(name, def, rawOf(d.registers[def.name], name), actual, "cxl"));
    }
    checked++;
    const def = HDM_DECODER.control;
    const name = regName.decoder(d.index, def);
    const expected = rawOf(d.registers[def.name], name);
    const actual = await readMmioReg(b, bdf, at, def);
    const committed = readFlag(def, expected, "committed");
    // Lock On Commit means nothing on a decoder that is not committed: restore does not set it there.
    const exclude = committed ? ["commit"] : ["commit", "lockOnCommit"];
    out.push(...compareRegister(name, def, expected, actual, "cxl", exclude));
    out.push(...expectField(name, def, "committed", committed, actual, "cxl"));
    if (committed) out.push(...expectField(name, def, "errorNotCommitted", false, actual, "cxl"));
  }
  return { mismatches: out, checked };
}
