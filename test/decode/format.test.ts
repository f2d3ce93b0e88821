import { describe, expect, it } from "vitest";
import { decodeComponentBlock } from "../../shared/cxl/component.ts";
import { decodeConfigSpace } from "../../shared/cxl/decode.ts";
import { formatHuman, formatRange } from "../../shared/cxl/format.ts";
import { buildConfig, componentBlock } from "../builders/config-space.ts";

const lines = (s: string) => s.split("\n");

describe("formatHuman", () => {
  const d = decodeConfigSpace(
    buildConfig({
      pcie: { flr: true },
      ext: [
        {
          kind: "cxlDevice",
          revision: 2,
          length: 0x3c,
          capability: 0xffff,
          control: { cacheEnable: true, ioEnable: true, cacheSfCoverage: 9, cacheSfGranularity: 3 },
          control2: { initiateCxlReset: true, desiredVolatileHdmStateAfterHotReset: true },
          status2: { cxlResetError: true },
          lock: { configLock: true },
          capability2: { cacheSizeUnit: 1, cacheSize: 16 },
          ranges: [
            {
              base: 0x1_0000_0000n,
              size: 0x4000_0000n,
              memInfoValid: true,
              desiredInterleave: 2,
              memActiveTimeoutCode: 2,
            },
          ],
        },
        {
          kind: "registerLocator",
          entries: [
            { bir: 0, blockId: 0, offset: 0n },
            { bir: 4, blockId: 4, offset: 0x30000n },
          ],
        },
        { kind: "dvsec", vendor: 0x1234, id: 7, revision: 1, length: 0x10 },
      ],
    }),
    { bdf: "0d:00.0" },
  );
  const out = lines(formatHuman(d));

  it("prints the CXL registers with lspci's labels and flags", () => {
    expect(out).toEqual(
      expect.arrayContaining([
        "0d:00.0 8086:0d93 class 050210 rev 00 (4096 bytes of config space)",
        "\tFLR: capable",
        "\tCapabilities: [40] Express (v2) Endpoint, FLReset+",
        "\tCapabilities: [100 v1] Designated Vendor-Specific: Vendor=1e98 ID=0000 Rev=2 Len=60: CXL",
        "\t\tPCIe DVSEC for CXL Devices",
        "\t\tCXLCap:\tCache+ IO+ Mem+ Mem HW Init+ HDMCount 3 Viral+",
        "\t\tCXLCapExt:\tCacheWB&Inval+ Rst+ RstTimeout 100s (reserved code 7) RstMemClr+ MLD+ PMInitReport+",
        "\t\tCXLCtl:\tCache+ IO+ Mem- Cache SF Cov 9 Cache SF Gran 3 Cache Clean- Viral-",
        "\t\tCXLSta:\tViral-",
        "\t\tCXLCtl2:\tDisableCaching- InitCacheWB&Inval- InitRst+ RstMemClrEn- DesiredVolatileHDMStateAfterHotReset+",
        "\t\tCXLSta2:\tResetComplete- ResetError+ PMComplete-",
        "\t\tCXLLock:\tConfigLock+",
        "\t\tCache Size: 00100000",
        "\t\tRange1: 0000000100000000-000000013fffffff",
        "\t\t\tValid+ Active- Type=Volatile Class=DRAM interleave=4096 timeout=16s",
        "\t\tRange2: 0000000000000000-ffffffffffffffff",
      ]),
    );
  });

  it("prints Register Locator blocks as lspci does: empty ones skipped, numbering kept", () => {
    expect(out).toContain("\t\tBlock2: BIR: bar4, ID: CPMU registers, offset: 0000000000030000");
    expect(out.some((l) => l.startsWith("\t\tBlock1:"))).toBe(false);
  });

  it("lists unknown DVSECs with lspci's <?>", () => {
    expect(out).toContain(
      "\tCapabilities: [158 v1] Designated Vendor-Specific: Vendor=1234 ID=0007 Rev=1 Len=16 <?>",
    );
  });

  it("names reserved range encodings instead of guessing", () => {
    const r = decodeConfigSpace(
      buildConfig({
        ext: [
          { kind: "cxlDevice", ranges: [{ raw: { sizeHigh: 0, sizeLow: 0xfffc, baseHigh: 0, baseLow: 0 } }] },
        ],
      }),
    ).cxlDevice!.ranges[0];
    expect(formatRange(r)[1]).toBe(
      "\t\t\tValid- Active- Type=<reserved 7> Class=<reserved 7> interleave=<reserved 31> timeout=<reserved 7>",
    );
  });

  it("appends the component block: capability array, HDM capability, decoders", () => {
    const c = decodeComponentBlock(
      componentBlock({
        decoders: [
          {
            base: 0x2_0000_0000n,
            size: 0x1000_0000n,
            control: { commit: true, committed: true, targetDeviceType: true, interleaveWays: 8 },
          },
          {},
        ],
      }),
    );
    const text = lines(formatHuman(d, c));
    expect(text).toEqual(
      expect.arrayContaining([
        "\tComponent registers: CXL.cache/mem capability array [1000] v1 cache_mem v1, 1 entries",
        "\t\tCapability: [1110] ID=5 v1 HDM Decoder",
        "\tHDM Decoder Capability: [1110] Decoders 2 Targets 1 A11to8- A14to12- PoisonOnDecodeErr- 3/6/12Way- 16Way-",
        "\t\tHDMGlobalCtl:\tPoisonOnDecodeErrEn- DecoderEnable+",
        "\t\tDecoder0: 0000000200000000-000000020fffffff [size=0x10000000]",
        "\t\t\tIG=256B IW=3 LockOnCommit- Commit+ Committed+ ErrNotCommitted- Type=HostOnly(Type3) DPASkip=0x0 TargetList=0x0",
      ]),
    );
  });

  it("says what a 64-byte dump cannot show", () => {
    const text = formatHuman(decodeConfigSpace(buildConfig({ size: 64 })));
    expect(text).toContain("\tFLR: unknown (dump ends before the capability list)");
    expect(text).toContain("\tExtended capabilities: not in the dump");
  });
});
