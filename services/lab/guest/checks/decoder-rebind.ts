// Check: what the kernel's cxl_port makes of committed HDM decoders when cxl_pci binds again, first as
// firmware commits them (the control), then as cxlrc restores them after the kernel's bus reset.
// Each half records every decoder's registers (all the capability declares) and the global control, read
// with 32-bit accesses (what the spec allows and what cxlrc uses), the same size register read once more
// as one 64-bit load (busybox devmem on the BAR's physical address: how Linux 6.1's ioread64_hi_lo reads
// it on x86-64, a single readq), then binds cxl_pci and records the kernel's messages about cxl/hdm/decoders
// and its view under /sys/bus/cxl/devices. Ends with cxl_pci bound.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { HDM, HDM_DECODER } from "../../../../shared/cxl/registers.ts";
import type { HardwareBackend } from "../../../../shared/hw/backend.ts";
import { operations } from "../../../agent/ops/index.ts";
import { decoderAt } from "../../../agent/ops/locate.ts";
import { type Check, errorJson } from "../check.ts";
import { deviceState, startClean } from "../device-state.ts";
import { commitDecoder, findHdm, type HdmSite } from "../firmware.ts";
import type { LabContext } from "../lab-context.ts";
import { driverOf, type KernelView, kernelLogSince, kernelView, pciDir } from "../sysfs-view.ts";
import { decoderRange, imageSummary, onlyCxlDevice } from "./common.ts";

const hex8 = (v: number) => `0x${(v >>> 0).toString(16).padStart(8, "0")}`;

export interface HdmRegisters {
  capability: string;
  globalControl: string;
  decoders: {
    index: number;
    baseLow: string;
    baseHigh: string;
    sizeLow: string;
    sizeHigh: string;
    control: string;
    dpaSkipLow: string;
    dpaSkipHigh: string;
  }[];
}

/** Every decoder's registers and the global control, 32-bit reads through a fresh backend. */
export async function hdmRegisters(lab: LabContext, bdf: string): Promise<HdmRegisters> {
  return lab.readBack(async (b: HardwareBackend) => {
    const site = await findHdm(b, bdf);
    const r = (at: { bar: number; base: number }, offset: number) =>
      b.mmioRead32(bdf, at.bar, at.base + offset);
    const decoders: HdmRegisters["decoders"] = [];
    for (let n = 0; n < site.decoderCount; n++) {
      const at = decoderAt(site, n);
      decoders.push({
        index: n,
        baseLow: hex8(await r(at, HDM_DECODER.baseLow.offset)),
        baseHigh: hex8(await r(at, HDM_DECODER.baseHigh.offset)),
        sizeLow: hex8(await r(at, HDM_DECODER.sizeLow.offset)),
        sizeHigh: hex8(await r(at, HDM_DECODER.sizeHigh.offset)),
        control: hex8(await r(at, HDM_DECODER.control.offset)),
        dpaSkipLow: hex8(await r(at, HDM_DECODER.dpaSkipLow.offset)),
        dpaSkipHigh: hex8(await r(at, HDM_DECODER.dpaSkipHigh.offset)),
      });
    }
    return {
      capability: hex8(await r(site.at, HDM.capability.offset)),
      globalControl: hex8(await r(site.at, HDM.globalControl.offset)),
      decoders,
    };
  });
}

/** Physical start of BAR `bar` (first column of the device's sysfs `resource` file, line `bar`). */
function barStart(bdf: string, bar: number): bigint {
  const line = readFileSync(`${pciDir(bdf)}/resource`, "utf8").split("\n")[bar] ?? "";
  return BigInt(line.trim().split(/\s+/)[0] ?? "0");
}

export interface WideRead {
  address: string;
  /** One 64-bit load at Size Low (what a readq returns), and the two 32-bit loads for comparison. */
  read64: string | null;
  read32Low: string | null;
  read32High: string | null;
  error?: string;
}

/** Decoder 0's Size Low/High through /dev/mem: once as one 64-bit load, once as two 32-bit loads. */
function wideSizeRead(bdf: string, site: HdmSite): WideRead {
  const at = decoderAt(site, 0);
  const addr = barStart(bdf, at.bar) + BigInt(at.base + HDM_DECODER.sizeLow.offset);
  const devmem = (a: bigint, width: 32 | 64) =>
    execFileSync("/bin/busybox", ["devmem", `0x${a.toString(16)}`, String(width)], { encoding: "utf8" })
      .trim()
      .toLowerCase();
  const out: WideRead = {
    address: `0x${addr.toString(16)}`,
    read64: null,
    read32Low: null,
    read32High: null,
  };
  try {
    out.read64 = devmem(addr, 64);
    out.read32Low = devmem(addr, 32);
    out.read32High = devmem(addr + 4n, 32);
  } catch (e) {
    out.error = errorJson(e).message;
  }
  return out;
}

const CXL_LINE = /cxl|hdm|decoder/i;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RebindRec {
  bind: unknown;
  /** Kernel messages since just before the bind that mention cxl, hdm or decoder. */
  dmesg: string[];
  kernel: KernelView;
  waitedMs: number;
}

/**
 * Binds cxl_pci and waits until the kernel's endpoint port has either probed (driver bound) or said why not,
 * then records its messages and view.
 */
async function rebind(lab: LabContext, bdf: string): Promise<RebindRec> {
  const mark = kernelLogSince(0).mark;
  const bind = await operations.bind(lab.ctx, { bdf, driver: "cxl_pci" });
  const t0 = Date.now();
  for (;;) {
    const view = kernelView();
    const endpoints = Object.keys(view.portDrivers).filter((p) => p.startsWith("endpoint"));
    const probed = endpoints.length > 0 && endpoints.every((p) => view.portDrivers[p] !== null);
    const said = kernelLogSince(mark).lines.some((l) => /decoder\d+\.\d+:/.test(l));
    if (probed || said || Date.now() - t0 > 10_000) break;
    await sleep(100);
  }
  await sleep(500); // let the rest of the probe's messages land
  return {
    bind,
    dmesg: kernelLogSince(mark).lines.filter((l) => CXL_LINE.test(l)),
    kernel: kernelView(),
    waitedMs: Date.now() - t0,
  };
}

export const decoderRebind: Check = {
  name: "decoder-rebind",
  async run(lab, rec) {
    const bdf = await onlyCxlDevice(lab);
    rec.bdf = bdf;
    rec.start = await startClean(lab, bdf, null);
    rec.fresh = await hdmRegisters(lab, bdf);
    const site = await findHdm(lab.backend, bdf);
    const range = decoderRange(0);
    rec.range = range;

    // Control: decoder 0 committed as firmware commits it, then cxl_pci.
    rec.firmware = await commitDecoder(lab.backend, site, 0, range);
    rec.firmwareRegs = await hdmRegisters(lab, bdf);
    rec.firmwareWide = wideSizeRead(bdf, site);
    rec.firmwareRebind = await rebind(lab, bdf);
    await operations.bind(lab.ctx, { bdf, driver: null });
    rec.firmwareRegsAfterUnbind = await hdmRegisters(lab, bdf);

    // cxlrc: save, the kernel's bus reset, restore full, verify; then cxl_pci.
    const image = await operations.save(lab.ctx, { bdf });
    rec.image = imageSummary(image);
    rec.quiesce = await operations.quiesce(lab.ctx, { bdf, scope: "full" });
    rec.reset = await operations.reset(lab.ctx, { bdf, method: "kernel", kernelMethod: "bus" });
    rec.afterResetRegs = await hdmRegisters(lab, bdf);
    rec.restore = await operations.restore(lab.ctx, { bdf, scope: "full", image });
    rec.verify = await operations.verify(lab.ctx, { bdf, scope: "full", image });
    rec.restoredRegs = await hdmRegisters(lab, bdf);
    rec.restoredWide = wideSizeRead(bdf, site);
    rec.restoredRebind = await rebind(lab, bdf);
    rec.driverAtEnd = driverOf(bdf);
    rec.end = await deviceState(lab, bdf);
    rec.events = lab.takeEvents();
  },
};
