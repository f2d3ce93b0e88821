// The bundled sample: a plausible CXL Type-2 device (an accelerator with its own cache and device-attached
// memory), cache+mem capable, CXL Reset capable, FLR capable. docs/samples/type2-device.lspci and
// type2-device.component.bin are generated from here; test/decode/samples.test.ts checks the checked-in files
// still match (regenerate with `CXLRC_UPDATE_SAMPLES=1 npx vitest run test/decode/samples.test.ts`).
import { formatDump } from "../../shared/cxl/dump.ts";
import { buildConfig, componentBlock, type ExtItem } from "./config-space.ts";

export const TYPE2_BDF = "0d:00.0";
export const TYPE2_HEADER = `${TYPE2_BDF} Processing accelerators: Intel Corporation Device 0ddb (rev 01)`;
/** Device-attached memory: 4 GiB at 64 GiB, programmed by firmware (Mem_HwInit_Mode). */
export const TYPE2_MEM_BASE = 0x10_0000_0000n;
export const TYPE2_MEM_SIZE = 0x1_0000_0000n;

export const TYPE2_EXT: readonly ExtItem[] = [
  { kind: "cap", id: 0x01, version: 2, length: 0x48 }, // AER
  { kind: "cap", id: 0x03, version: 1, length: 0x0c }, // Device Serial Number
  {
    kind: "cxlDevice",
    revision: 1,
    capability: {
      cacheCapable: true,
      ioCapable: true,
      memCapable: true,
      memHwInitMode: true,
      hdmCount: 1,
      cacheWbInvCapable: true,
      cxlResetCapable: true,
      cxlResetTimeout: 2, // 1 s
      cxlResetMemClrCapable: true,
      viralCapable: true,
      pmInitCompletionCapable: true,
    },
    control: {
      cacheEnable: true,
      ioEnable: true,
      memEnable: true,
      cacheSfCoverage: 16,
      cacheSfGranularity: 1,
    },
    status2: { pmInitComplete: true },
    capability2: { cacheSizeUnit: 2, cacheSize: 4 }, // 4 MiB
    ranges: [
      {
        base: TYPE2_MEM_BASE,
        size: TYPE2_MEM_SIZE,
        memInfoValid: true,
        memActive: true,
        mediaType: 0,
        memoryClass: 0,
        memActiveTimeoutCode: 1,
      },
    ],
  },
  {
    kind: "registerLocator",
    entries: [
      { bir: 0, blockId: 1, offset: 0n }, // component registers at the start of BAR0
      { bir: 2, blockId: 3, offset: 0n }, // CXL device registers in BAR2
    ],
  },
  { kind: "dvsec", vendor: 0x1e98, id: 5, revision: 0, length: 0x10 }, // GPF DVSEC for Devices
  { kind: "cap", id: 0x2e, version: 1, length: 0x18 }, // Data Object Exchange
];

export function type2Config(): Uint8Array {
  const b = buildConfig({
    header: { vendorId: 0x8086, deviceId: 0x0ddb, classCode: 0x120000, revisionId: 0x01 },
    pcie: { flr: true, version: 2, portType: 0 },
    ext: TYPE2_EXT,
  });
  const dv = new DataView(b.buffer);
  dv.setUint16(0x04, 0x0006, true); // Command: Memory Space, Bus Master
  dv.setUint32(0x10, 0xfe00_000c, true); // BAR0: 64-bit prefetchable, component registers
  dv.setUint32(0x14, 0x0000_0000, true);
  dv.setUint32(0x18, 0xfe01_0004, true); // BAR2: 64-bit, device registers
  dv.setUint32(0x1c, 0x0000_0000, true);
  dv.setUint16(0x2c, 0x8086, true); // Subsystem vendor
  dv.setUint16(0x2e, 0x0000, true);
  return b;
}

export function type2Dump(): string {
  return formatDump(type2Config(), TYPE2_HEADER);
}

export function type2Component(): Uint8Array {
  return componentBlock({
    others: [
      { id: 2, version: 2, pointer: 0x10 }, // RAS
      { id: 4, version: 2, pointer: 0x80 }, // Link
    ],
    hdmPointer: 0x110,
    globalControl: { hdmDecoderEnable: true },
    decoders: [
      {
        base: TYPE2_MEM_BASE,
        size: TYPE2_MEM_SIZE,
        control: {
          interleaveGranularity: 0,
          interleaveWays: 0,
          commit: true,
          committed: true,
          targetDeviceType: false,
        },
      },
    ],
  });
}
