// probe: what the coordinator plans from. Config space decoded as `cxlrc decode` does (decodeConfigSpace
// over configReadAll), the component block's CXL.cache/mem array and HDM Decoder capability read through
// 32-bit MMIO and decoded with decodeComponentBlock, plus topology (functions, bridge, siblings), holders,
// memory ranges of committed decoders, kernel reset methods and driver.
import type { ProbeCxl, ProbeDecoder, ProbeResult } from "../../../shared/bus/agent-contract.ts";
import { type DecodedComponentBlock, decodeComponentBlock } from "../../../shared/cxl/component.ts";
import { decodeConfigSpace } from "../../../shared/cxl/decode.ts";
import { CACHE_MEM_OFFSET, HDM_DECODER_FIRST, HDM_DECODER_STRIDE } from "../../../shared/cxl/registers.ts";
import { isCxlrcError } from "../../../shared/errors.ts";
import type { HardwareBackend } from "../../../shared/hw/backend.ts";
import { endpointDecoderFacts } from "../../../shared/hw/kernel-cxl.ts";
import type { OpContext } from "./context.ts";
import { type HdmLoc, locateCxl } from "./locate.ts";
import { withMemorySpace } from "./memory-space.ts";
import { requirePresent } from "./ready.ts";
import { describeFunction, functionsOf, siblingsOf } from "./topology.ts";

export type { ProbeCxl, ProbeDecoder, ProbeResult };

export interface ProbeParams {
  bdf: string;
  /** Leave `decoded` out. */
  brief?: boolean;
}

/** The parts of the component block the decoder needs, read with 32-bit MMIO into an otherwise zero buffer. */
export async function readComponentRegion(
  b: HardwareBackend,
  bdf: string,
  comp: { bar: number; offset: number },
  hdm: HdmLoc,
): Promise<Uint8Array> {
  const end = hdm.capabilityOffset + HDM_DECODER_FIRST + hdm.decoderCount * HDM_DECODER_STRIDE;
  const buf = new Uint8Array(end);
  const dv = new DataView(buf.buffer);
  const fill = async (from: number, to: number) => {
    for (let o = from; o < to; o += 4)
      dv.setUint32(o, await b.mmioRead32(bdf, comp.bar, comp.offset + o), true);
  };
  const arraySize = (await b.mmioRead32(bdf, comp.bar, comp.offset + CACHE_MEM_OFFSET)) >>> 24;
  await fill(CACHE_MEM_OFFSET, CACHE_MEM_OFFSET + 4 * (arraySize + 1));
  await fill(hdm.capabilityOffset, end);
  return buf;
}

export async function probe(ctx: OpContext, p: ProbeParams): Promise<ProbeResult> {
  const b = ctx.backend;
  const { me, all } = await describeFunction(b, p.bdf);
  await requirePresent(ctx, p.bdf);
  const config = decodeConfigSpace(await b.configReadAll(p.bdf), { bdf: p.bdf });
  let layout: Awaited<ReturnType<typeof locateCxl>> = null;
  let component: DecodedComponentBlock | null = null;
  let componentUnreadable: string | undefined;
  try {
    ({ layout, component } = await withMemorySpace(b, p.bdf, async () => {
      const found = config.cxlDevice ? await locateCxl(b, p.bdf) : null;
      const block =
        found?.component && found.hdm
          ? decodeComponentBlock(await readComponentRegion(b, p.bdf, found.component, found.hdm))
          : null;
      return { layout: found, component: block };
    }));
  } catch (e) {
    // Config space is readable under a driver; the BAR it claims is not (sysfs backend: "device-busy").
    if (!isCxlrcError(e) || e.kind !== "device-busy") throw e;
    componentUnreadable = e.message;
    layout = null;
  }
  const dev = config.cxlDevice;
  const cxl: ProbeCxl | null = dev
    ? {
        dvsecOffset: Number(dev.offset),
        cacheCapable: dev.capability.cacheCapable,
        memCapable: dev.capability.memCapable,
        cxlResetCapable: dev.capability.cxlResetCapable,
        cxlResetTimeoutMs: dev.capability.cxlResetTimeoutMs,
        cxlResetTimeoutReserved: dev.capability.cxlResetTimeoutReserved,
        memClrCapable: dev.capability.cxlResetMemClrCapable,
        wbInvCapable: dev.capability.cacheWbInvCapable,
        cacheEnabled: dev.control.cacheEnable,
        memEnabled: dev.control.memEnable,
        configLock: dev.lock.configLock,
        hdmCount: dev.capability.hdmCount,
        component: layout?.component ?? null,
        decoderCount: component?.hdm?.decoderCount ?? 0,
      }
    : null;
  const decoders: ProbeDecoder[] = (component?.hdm?.decoders ?? []).map((d) => ({
    index: d.index,
    base: d.base,
    size: d.size,
    committed: d.control.committed,
    lockOnCommit: d.control.lockOnCommit,
    errorNotCommitted: d.control.errorNotCommitted,
  }));
  // Under a driver that claims the BAR: the decoders as the kernel sees them (issue #17), for the gates.
  if (componentUnreadable !== undefined && b.cxlView) {
    const view = await b.cxlView(p.bdf).catch(() => null);
    for (const d of view ? endpointDecoderFacts(view) : []) {
      decoders.push({
        index: d.index,
        base: d.base,
        size: d.size,
        committed: d.committed,
        lockOnCommit: d.lockOnCommit === true,
        errorNotCommitted: false,
      });
    }
  }
  const memoryRanges = decoders
    .filter((d) => d.committed && BigInt(d.size) > 0n)
    .map((d) => ({
      decoder: d.index,
      start: d.base,
      end: `0x${(BigInt(d.base) + BigInt(d.size) - 1n).toString(16)}`,
      size: d.size,
    }));
  const functions = functionsOf(all, p.bdf).map((f) => f.bdf);
  const holders: ProbeResult["holders"] = [];
  for (const f of functions) for (const h of await b.holders(f)) holders.push({ ...h, bdf: f });
  return {
    bdf: p.bdf,
    vendorId: Number(config.vendorId),
    deviceId: Number(config.deviceId),
    classCode: Number(config.classCode),
    flrCapable: config.flrCapable === true,
    cxl,
    decoders,
    hdmDecoderEnable: component?.hdm ? component.hdm.globalControl.hdmDecoderEnable : null,
    functions,
    bridge: me.parent ? await bridgeInfo(b, me.parent) : null,
    siblings: siblingsOf(all, p.bdf).map((f) => f.bdf),
    holders,
    memoryRanges,
    resetMethods: me.resetMethods,
    driver: me.driver,
    ...(p.brief ? {} : { decoded: { config, component } }),
    ...(componentUnreadable === undefined ? {} : { componentUnreadable }),
  };
}

async function bridgeInfo(b: HardwareBackend, bdf: string): Promise<NonNullable<ProbeResult["bridge"]>> {
  const config = decodeConfigSpace(await b.configReadAll(bdf), { bdf });
  const port = config.portExtensions;
  return { bdf, cxlPort: port !== null, unmaskSbr: port ? port.control.unmaskSbr : null };
}
