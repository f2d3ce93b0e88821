// Host boot: what platform firmware and the booting kernel leave in the registers. Applied by SimHost.boot()
// only, never by a reset: after a reset the registers hold their reset defaults until software restores them.
import { encodeRegister, withField } from "../cxl/regdef.ts";
import { CXL_DEVICE, HDM, HDM_DECODER, PCIE } from "../cxl/registers.ts";
import { BIT } from "./bits.ts";
import type { SimFunction } from "./function.ts";
import { decoderReg } from "./layouts.ts";

/** Host MMIO window the simulated kernel assigns BARs from (above 4 GiB: 64-bit BARs). */
export const MMIO_WINDOW_BASE = 0x20_0000_0000n;

function lowHigh(v: bigint): [number, number] {
  return [Number(v & 0xffff_ffffn), Number(v >> 32n)];
}

/** BIOS/kernel PCIe setup: 256 B payload, error reporting on. */
function pcieSetup(f: SimFunction): void {
  let devCtl = f.get("pcie.devCtl");
  devCtl = withField(PCIE.devCtl, devCtl, "maxPayloadSize", 1);
  for (const n of ["correctableErrorReporting", "nonFatalErrorReporting", "fatalErrorReporting"])
    devCtl = withField(PCIE.devCtl, devCtl, n, true);
  f.put("pcie.devCtl", devCtl);
  f.put("pci.cacheLineSize", 0x10);
}

/** Apply firmware configuration; returns the next free MMIO address. */
export function bootFunction(f: SimFunction, nextMmio: bigint): bigint {
  const m = f.model;
  pcieSetup(f);
  if (m.kind === "bridge") {
    f.put("pci.command", BIT.memorySpace | BIT.busMaster);
    if (m.spec.cxl && m.spec.unmaskSbr) f.put("port.portControlExtensions", BIT.unmaskSbr);
    return nextMmio;
  }
  const size = BigInt(m.barSize);
  const addr = ((nextMmio + size - 1n) / size) * size;
  const [lo, hi] = lowHigh(addr);
  f.put("pci.bar0", (f.get("pci.bar0") & 0xf) | lo);
  f.put("pci.bar1", hi);
  f.resourceLow = lo & ~0xf;
  f.resourceHigh = hi;
  f.put("pci.command", BIT.memorySpace | (f.driver ? BIT.busMaster : 0));
  f.put("pci.interruptLine", 0x0b);
  if (m.cxl) bootCxl(f);
  return addr + size;
}

function bootCxl(f: SimFunction): void {
  if (f.model.kind !== "endpoint") return;
  const fw = f.model.firmware;
  const committed = fw.decoders.length > 0;
  fw.decoders.forEach((d, n) => {
    const put64 = (low: keyof typeof HDM_DECODER, high: keyof typeof HDM_DECODER, v: bigint) => {
      const [lo, hi] = lowHigh(v);
      f.put(decoderReg(n, low), lo);
      f.put(decoderReg(n, high), hi);
    };
    put64("baseLow", "baseHigh", d.base);
    put64("sizeLow", "sizeHigh", d.size);
    put64("dpaSkipLow", "dpaSkipHigh", d.dpaSkip);
    f.put(
      decoderReg(n, "control"),
      encodeRegister(HDM_DECODER.control, { lockOnCommit: d.lockOnCommit, commit: 1, committed: 1 }),
    );
  });
  f.put(
    "hdm.hdmGlobalControl",
    encodeRegister(HDM.globalControl, { hdmDecoderEnable: fw.hdmEnable ?? committed }),
  );
  const memEnable = fw.memEnable ?? committed;
  f.put(
    "dvsec.control",
    encodeRegister(CXL_DEVICE.control, { ioEnable: 1, memEnable, cacheEnable: fw.cacheEnable }),
  );
  const bases = fw.rangeBases ?? fw.decoders.slice(0, 2).map((d) => d.base);
  bases.forEach((b, i) => {
    const [lo, hi] = lowHigh(b);
    f.put(`dvsec.range${i + 1}BaseLow`, lo & 0xf000_0000);
    f.put(`dvsec.range${i + 1}BaseHigh`, hi);
  });
  if (fw.configLock) f.put("dvsec.lock", BIT.configLock);
}
