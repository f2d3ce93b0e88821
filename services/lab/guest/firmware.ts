// Playing firmware on the real kernel: commit HDM decoders the way a BIOS does at boot (HDM Decoder Enable,
// base, size, Type-3 control, Commit, then wait for Committed), and read decoders back. The registers are
// found by walking what the device exposes (locateCxl), never at assumed offsets.

import { readField, readFlag, withField } from "../../../shared/cxl/regdef.ts";
import { CXL_DEVICE, HDM, HDM_DECODER } from "../../../shared/cxl/registers.ts";
import type { HardwareBackend } from "../../../shared/hw/backend.ts";
import type { MmioAt } from "../../agent/ops/config-access.ts";
import { readMmioReg, writeMmioReg } from "../../agent/ops/config-access.ts";
import { decoderAt, locateCxl } from "../../agent/ops/locate.ts";

export interface HdmSite {
  bdf: string;
  /** DVSEC id 0 in config space. */
  dvsecOffset: number;
  /** HDM Decoder capability in its BAR. */
  at: MmioAt;
  decoderCount: number;
}

export async function findHdm(b: HardwareBackend, bdf: string): Promise<HdmSite> {
  const layout = await locateCxl(b, bdf);
  if (!layout?.hdm) throw new Error(`${bdf}: no HDM Decoder capability found`);
  return { bdf, dvsecOffset: layout.dvsec.offset, at: layout.hdm.at, decoderCount: layout.hdm.decoderCount };
}

export interface DecoderReadback {
  index: number;
  globalControl: string;
  hdmDecoderEnable: boolean;
  base: string;
  size: string;
  control: string;
  committed: boolean;
  errorNotCommitted: boolean;
  lockOnCommit: boolean;
}

const hex = (v: bigint | number) => `0x${v.toString(16)}`;
const addr = (hi: number, lo: number) => (BigInt(hi >>> 0) << 32n) | BigInt((lo & 0xf000_0000) >>> 0);

export async function readDecoder(b: HardwareBackend, site: HdmSite, n: number): Promise<DecoderReadback> {
  const at = decoderAt(site, n);
  const r = (def: (typeof HDM_DECODER)[keyof typeof HDM_DECODER]) => readMmioReg(b, site.bdf, at, def);
  const gc = await readMmioReg(b, site.bdf, site.at, HDM.globalControl);
  const control = await r(HDM_DECODER.control);
  return {
    index: n,
    globalControl: hex(gc),
    hdmDecoderEnable: readFlag(HDM.globalControl, gc, "hdmDecoderEnable"),
    base: hex(addr(await r(HDM_DECODER.baseHigh), await r(HDM_DECODER.baseLow))),
    size: hex(addr(await r(HDM_DECODER.sizeHigh), await r(HDM_DECODER.sizeLow))),
    control: hex(control),
    committed: readFlag(HDM_DECODER.control, control, "committed"),
    errorNotCommitted: readFlag(HDM_DECODER.control, control, "errorNotCommitted"),
    lockOnCommit: readFlag(HDM_DECODER.control, control, "lockOnCommit"),
  };
}

export async function readDecoders(b: HardwareBackend, site: HdmSite): Promise<DecoderReadback[]> {
  const out: DecoderReadback[] = [];
  for (let n = 0; n < site.decoderCount; n++) out.push(await readDecoder(b, site, n));
  return out;
}

/** How long firmware waits for Committed (QEMU sets it on the write; TCG makes everything slower). */
const COMMIT_WAIT_MS = 500;

/** Decoder n as firmware commits it: Type-3 (HDM-H), 1-way; returns what reads back after Committed. */
export async function commitDecoder(
  b: HardwareBackend,
  site: HdmSite,
  n: number,
  range: { base: bigint; size: bigint },
): Promise<DecoderReadback> {
  const at = decoderAt(site, n);
  const w = (def: (typeof HDM_DECODER)[keyof typeof HDM_DECODER], v: number) =>
    writeMmioReg(b, site.bdf, at, def, v);
  const gc = await readMmioReg(b, site.bdf, site.at, HDM.globalControl);
  await writeMmioReg(
    b,
    site.bdf,
    site.at,
    HDM.globalControl,
    withField(HDM.globalControl, gc, "hdmDecoderEnable", true),
  );
  await w(HDM_DECODER.baseHigh, Number(range.base >> 32n));
  await w(HDM_DECODER.baseLow, Number(range.base & 0xf000_0000n));
  await w(HDM_DECODER.sizeHigh, Number(range.size >> 32n));
  await w(HDM_DECODER.sizeLow, Number(range.size & 0xf000_0000n));
  const ctl = withField(HDM_DECODER.control, 0, "targetDeviceType", 1);
  await w(HDM_DECODER.control, ctl);
  await w(HDM_DECODER.control, withField(HDM_DECODER.control, ctl, "commit", true));
  const deadline = b.clock.now() + COMMIT_WAIT_MS;
  for (;;) {
    const d = await readDecoder(b, site, n);
    if (d.committed || d.errorNotCommitted || b.clock.now() > deadline) return d;
    await b.clock.sleep(1);
  }
}

/** DVSEC Control as config space reads it, with Mem_Enable decoded. */
export async function dvsecControl(
  b: HardwareBackend,
  site: Pick<HdmSite, "bdf" | "dvsecOffset">,
): Promise<{ raw: string; memEnable: boolean; ioEnable: boolean }> {
  const v = await b.configRead(site.bdf, site.dvsecOffset + CXL_DEVICE.control.offset, 2);
  return {
    raw: hex(v),
    memEnable: readFlag(CXL_DEVICE.control, v, "memEnable"),
    ioEnable: readField(CXL_DEVICE.control, v, "ioEnable") === 1,
  };
}
