// The kernel's view of a CXL device's decoders and regions, read from a fake sysfs tree shaped like Linux
// 6.1's on the QEMU lab (real-kernel.md): real directories under sys/devices, and sys/bus/{cxl,nd,dax,pci}
// /devices symlinks into them. Then the pure helpers over such a view.
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readCxlView } from "../../services/agent/backends/sysfs/cxl-view.ts";
import type { SysfsRoots } from "../../services/agent/backends/sysfs/sysfs-paths.ts";
import { CxlrcError } from "../../shared/errors.ts";
import {
  crossCheck,
  decoderCommitted,
  describeKernelDecoders,
  endpointDecoderFacts,
  judgeRegionUse,
  type KernelCxlView,
  type KernelDecoder,
  type KernelRegion,
  regionsInUse,
  unclaimedCommittedDecoders,
} from "../../shared/hw/kernel-cxl.ts";
import { createFakeSysfs, type FakeSysfs } from "../harness/fake-sysfs.ts";

const ROOT_PORT = "0000:0c:00.0";
const DEV = "0000:0d:00.0";
const BASE = 0x2_9000_0000n;
const SIZE = 0x2000_0000n;

type Attrs = Record<string, string>;

/** A device directory with one file per attribute, each ending in a newline as sysfs_emit's do. */
function node(dir: string, attrs: Attrs = {}): string {
  mkdirSync(dir, { recursive: true });
  for (const [k, v] of Object.entries(attrs)) writeFileSync(join(dir, k), `${v}\n`);
  return dir;
}

function link(at: string, target: string): void {
  mkdirSync(dirname(at), { recursive: true });
  symlinkSync(relative(dirname(at), target), at);
}

interface Lab {
  fake: FakeSysfs;
  roots: SysfsRoots;
  sys: string;
  bus(bus: string, name: string, dir: string): void;
  driver(dir: string, bus: string, name: string): void;
  memdev: string;
  root0: string;
  decoder00: string;
  port1: string;
  decoder10: string;
  endpoint2: string;
  decoder20: string;
}

/** Idle endpoint decoder as 6.1 shows it: no range, no DPA (cxl_dpa_resource_start() is -1), no region. */
const IDLE_ENDPOINT_DECODER: Attrs = {
  devtype: "cxl_decoder_endpoint",
  start: "0x0",
  size: "0x0",
  locked: "0",
  interleave_ways: "1",
  interleave_granularity: "4096",
  target_type: "expander",
  mode: "none",
  dpa_resource: "0xffffffffffffffff",
  dpa_size: "0x0000000000000000",
  region: "",
};

const IDLE_SWITCH_DECODER: Attrs = {
  devtype: "cxl_decoder_switch",
  start: "0x0",
  size: "0x0",
  locked: "0",
  interleave_ways: "1",
  interleave_granularity: "4096",
  target_type: "expander",
  target_list: "0",
  region: "",
};

/** What `cxl create-region -m -d decoder0.0 -w 1 -t pmem mem0` leaves on the decoders. */
const REGION0_ENDPOINT_DECODER: Attrs = {
  ...IDLE_ENDPOINT_DECODER,
  start: "0x290000000",
  size: "0x20000000",
  interleave_granularity: "256",
  mode: "pmem",
  dpa_resource: "0x0",
  dpa_size: "0x0000000020000000",
  region: "region0",
};
const REGION0_SWITCH_DECODER: Attrs = {
  ...IDLE_SWITCH_DECODER,
  start: "0x290000000",
  size: "0x20000000",
  interleave_granularity: "256",
  region: "region0",
};

/**
 * The single-device lab: host bridge 0c (ACPI0016) with root port 0c:00.0, the type-3 device 0d:00.0
 * bound to cxl_pci (memdev mem0), and the CXL ports root0 (ACPI0017) > port1 > endpoint2, one decoder each.
 */
function buildLab(
  endpointDecoder: Attrs = IDLE_ENDPOINT_DECODER,
  portDecoder: Attrs = IDLE_SWITCH_DECODER,
): Lab {
  const fake = createFakeSysfs();
  fake.addDevice({
    bdf: ROOT_PORT,
    headerType: 1,
    secondaryBus: 0x0d,
    subordinateBus: 0x0d,
    classCode: 0x060400,
    driver: "pcieport",
  });
  const pciDir = fake.addDevice({ bdf: DEV, parent: ROOT_PORT, driver: "cxl_pci" });
  const sys = fake.sysfsRoot;
  const bus = (b: string, name: string, dir: string) => link(join(sys, "bus", b, "devices", name), dir);
  const driver = (dir: string, b: string, name: string) =>
    link(join(dir, "driver"), node(join(sys, "bus", b, "drivers", name)));

  const memdev = node(join(pciDir, "mem0"), { devtype: "cxl_memdev", serial: "0x0", numa_node: "-1" });
  node(join(memdev, "pmem"), { size: "0x20000000" });
  node(join(memdev, "ram"), { size: "0x0" });
  bus("cxl", "mem0", memdev);

  const acpi0017 = node(join(sys, "devices/platform/ACPI0017:00"));
  const root0 = node(join(acpi0017, "root0"), { devtype: "cxl_port" });
  link(join(root0, "uport"), acpi0017);
  bus("cxl", "root0", root0);
  const decoder00 = node(join(root0, "decoder0.0"), {
    devtype: "cxl_decoder_root",
    start: "0x290000000",
    size: "0x100000000",
    locked: "0",
    interleave_ways: "1",
    interleave_granularity: "8192",
    target_list: "0",
    cap_pmem: "1",
    cap_ram: "1",
    cap_type2: "0",
    cap_type3: "1",
    create_pmem_region: "region0",
    delete_region: "",
  });
  bus("cxl", "decoder0.0", decoder00);

  const port1 = node(join(root0, "port1"), { devtype: "cxl_port" });
  link(join(port1, "uport"), node(join(sys, "devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0016:00")));
  link(join(port1, "dport0"), fake.realDir(ROOT_PORT));
  bus("cxl", "port1", port1);
  const decoder10 = node(join(port1, "decoder1.0"), portDecoder);
  bus("cxl", "decoder1.0", decoder10);

  const endpoint2 = node(join(port1, "endpoint2"), { devtype: "cxl_port" });
  link(join(endpoint2, "uport"), memdev);
  bus("cxl", "endpoint2", endpoint2);
  const decoder20 = node(join(endpoint2, "decoder2.0"), endpointDecoder);
  bus("cxl", "decoder2.0", decoder20);

  return {
    fake,
    roots: { sysfsRoot: sys, procRoot: fake.procRoot, devRoot: fake.devRoot },
    sys,
    bus,
    driver,
    memdev,
    root0,
    decoder00,
    port1,
    decoder10,
    endpoint2,
    decoder20,
  };
}

/** region0 below root decoder decoder0.0, interleaving decoder2.0 alone (6.1: no `mode` attribute). */
function addRegion0(lab: Lab, attrs: Attrs = {}): string {
  const dir = node(join(lab.decoder00, "region0"), {
    devtype: "cxl_region",
    commit: "1",
    resource: "0x290000000",
    size: "0x20000000",
    uuid: "6c3ee1a2-4c51-4f0b-a1de-1ab2c4a5e6f7",
    interleave_ways: "1",
    interleave_granularity: "256",
    target0: "decoder2.0",
    ...attrs,
  });
  lab.bus("cxl", "region0", dir);
  return dir;
}

interface FakeNamespace {
  name: string;
  size: bigint;
  mode: string;
  holder?: string;
  driver?: string;
}

/**
 * What cxl_pmem builds for a committed pmem region: pmem_regionZ below the region, and a libnvdimm region
 * on the nvdimm bridge's ndbus. libnvdimm numbers its regions apart from CXL's: region0's is region1.
 */
function addNdRegion(lab: Lab, resource: string, namespaces: FakeNamespace[]): string {
  const pmemRegion = node(join(lab.decoder00, "region0/pmem_region0"), { devtype: "cxl_pmem_region" });
  lab.driver(pmemRegion, "cxl", "cxl_pmem_region");
  lab.bus("cxl", "pmem_region0", pmemRegion);
  const bridge = node(join(lab.root0, "nvdimm-bridge0"), { devtype: "cxl_nvdimm_bridge" });
  lab.bus("cxl", "nvdimm-bridge0", bridge);
  const ndbus = node(join(bridge, "ndbus0"), { provider: "ACPI.CXL" });
  lab.bus("nd", "ndbus0", ndbus);
  const ndRegion = node(join(ndbus, "region1"), {
    devtype: "nd_pmem",
    resource,
    size: String(SIZE),
    mapping0: "nmem0,0,536870912,0",
  });
  lab.driver(ndRegion, "nd", "nd_region");
  lab.bus("nd", "region1", ndRegion);
  for (const ns of namespaces) {
    const dir = node(join(ndRegion, ns.name), {
      size: String(ns.size),
      mode: ns.mode,
      holder: ns.holder ?? "",
    });
    if (ns.driver) lab.driver(dir, "nd", ns.driver);
    lab.bus("nd", ns.name, dir);
  }
  return ndRegion;
}

/** An NFIT pmem region elsewhere in the address space, with a namespace in use: never this device's. */
function addUnrelatedNdRegion(lab: Lab): void {
  const nfit = node(join(lab.sys, "devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0012:00/ndbus1/region0"), {
    devtype: "nd_pmem",
    resource: "0x100000000",
    size: "1073741824",
  });
  lab.driver(nfit, "nd", "nd_region");
  lab.bus("nd", "region0", nfit);
  const ns = node(join(nfit, "namespace0.0"), { size: "1073741824", mode: "fsdax", holder: "pfn0.0" });
  lab.bus("nd", "namespace0.0", ns);
}

/** Memory block directories: block_size_bytes is "%lx" without 0x; block N covers N * size. */
function addMemoryBlocks(lab: Lab, blockSize: bigint, states: Record<number, string>): void {
  const dir = node(join(lab.sys, "devices/system/memory"), { block_size_bytes: blockSize.toString(16) });
  for (const [n, state] of Object.entries(states)) node(join(dir, `memory${n}`), { state });
}

let lab: Lab;
afterEach(() => lab?.fake.cleanup());

describe("readCxlView: a device with no region", () => {
  beforeEach(() => {
    lab = buildLab();
  });

  it("finds mem0 under the PCI device, endpoint2 by its uport, and the decoders up to root0", async () => {
    const view = await readCxlView(lab.roots, DEV);
    expect(view).not.toBeNull();
    expect(view!.memdev).toBe("mem0");
    expect(view!.endpoint).toBe("endpoint2");
    expect(view!.decoders.map((d) => [d.name, d.level, d.port, d.index])).toEqual([
      ["decoder2.0", "endpoint", "endpoint2", 0],
      ["decoder1.0", "port", "port1", 0],
      ["decoder0.0", "root", "root0", 0],
    ]);
    expect(view!.regions).toEqual([]);
  });

  it("an idle endpoint decoder: no range, no DPA, no region, not committed, unlocked", async () => {
    const view = await readCxlView(lab.roots, DEV);
    expect(view!.decoders[0]).toEqual({
      name: "decoder2.0",
      level: "endpoint",
      port: "endpoint2",
      index: 0,
      start: null,
      size: null,
      interleaveWays: 1,
      interleaveGranularity: 4096,
      targetType: "expander",
      targetList: [],
      mode: "none",
      dpaResource: null,
      dpaSize: 0n,
      region: null,
      locked: false,
      committed: false,
    });
    expect(endpointDecoderFacts(view!)).toEqual([
      { index: 0, base: "0x0", size: "0x0", committed: false, lockOnCommit: false, source: "kernel" },
    ]);
    expect(regionsInUse(view!)).toEqual([]);
    expect(unclaimedCommittedDecoders(view!)).toEqual([]);
  });

  it("the root decoder is the platform window: committed, with its target list", async () => {
    const root = (await readCxlView(lab.roots, DEV))!.decoders.find((d) => d.level === "root")!;
    expect(root).toMatchObject({
      start: 0x2_9000_0000n,
      size: 0x1_0000_0000n,
      targetList: ["0"],
      interleaveGranularity: 8192,
      committed: true,
    });
    expect(root).not.toHaveProperty("mode");
  });

  it("a missing optional attribute (locked) is unknown, not an error", async () => {
    rmSync(join(lab.decoder20, "locked"));
    const view = await readCxlView(lab.roots, DEV);
    expect(view!.decoders[0]!.locked).toBeNull();
    expect(endpointDecoderFacts(view!)[0]!.lockOnCommit).toBeNull();
  });
});

describe("readCxlView: a decoder committed by firmware, with no region", () => {
  it("reads committed and locked, and names it as committed without a region", async () => {
    lab = buildLab({
      ...IDLE_ENDPOINT_DECODER,
      start: "0x290000000",
      size: "0x10000000",
      locked: "1",
      mode: "ram",
      dpa_resource: "0x0",
      dpa_size: "0x0000000010000000",
    });
    const view = (await readCxlView(lab.roots, DEV))!;
    expect(view.decoders[0]).toMatchObject({ committed: true, locked: true, region: null, dpaResource: 0n });
    expect(endpointDecoderFacts(view)).toEqual([
      {
        index: 0,
        base: "0x290000000",
        size: "0x10000000",
        committed: true,
        lockOnCommit: true,
        source: "kernel",
      },
    ]);
    expect(regionsInUse(view)).toEqual([]);
    expect(unclaimedCommittedDecoders(view)).toEqual([
      "decoder2.0 is committed (0x290000000-0x29fffffff, locked) without a region: programmed by firmware " +
        "or an earlier kernel; its memory may be online",
    ]);
  });
});

describe("readCxlView: a committed pmem region", () => {
  beforeEach(() => {
    lab = buildLab(REGION0_ENDPOINT_DECODER, REGION0_SWITCH_DECODER);
    addRegion0(lab);
    addUnrelatedNdRegion(lab);
  });

  it("with a namespace holding data: region0 is committed and in use, found through its nd region's address", async () => {
    addNdRegion(lab, "0x290000000", [
      { name: "namespace1.0", size: 0x1f80_0000n, mode: "fsdax", holder: "pfn1.0", driver: "nd_pmem" },
    ]);
    const view = (await readCxlView(lab.roots, DEV))!;
    expect(view.regions).toEqual([
      {
        name: "region0",
        committed: true,
        resource: BASE,
        size: SIZE,
        mode: "pmem",
        interleaveWays: 1,
        interleaveGranularity: 256,
        uuid: "6c3ee1a2-4c51-4f0b-a1de-1ab2c4a5e6f7",
        targets: ["decoder2.0"],
        inUse: {
          yes: true,
          why:
            "namespace1.0 (0x1f800000 bytes, fsdax, claimed by pfn1.0, driver nd_pmem) on nd region region1: " +
            "a namespace with capacity may be mounted or mapped",
        },
      },
    ]);
    expect(view.decoders.map((d) => [d.name, d.committed, d.region])).toEqual([
      ["decoder2.0", true, "region0"],
      ["decoder1.0", true, "region0"],
      ["decoder0.0", true, null],
    ]);
    expect(regionsInUse(view)).toEqual([
      "region region0 (pmem, 0x290000000-0x2afffffff, through decoder2.0) is committed and in use: " +
        "namespace1.0 (0x1f800000 bytes, fsdax, claimed by pfn1.0, driver nd_pmem) on nd region region1: " +
        "a namespace with capacity may be mounted or mapped",
    ]);
  });

  it("with only the empty seed namespace: not in use, but still refused as committed", async () => {
    addNdRegion(lab, "0x290000000", [{ name: "namespace1.0", size: 0n, mode: "raw" }]);
    const view = (await readCxlView(lab.roots, DEV))!;
    expect(view.regions[0]!.inUse).toEqual({
      yes: false,
      why: "nd region region1 has no namespace with capacity",
    });
    expect(regionsInUse(view)).toEqual([
      "region region0 (pmem, 0x290000000-0x2afffffff, through decoder2.0) is committed " +
        "(it decodes host memory; nd region region1 has no namespace with capacity)",
    ]);
  });

  it("without libnvdimm (no nd region at its address): in use, because nobody can tell", async () => {
    const view = (await readCxlView(lab.roots, DEV))!;
    expect(view.regions[0]!.inUse.yes).toBe(true);
    expect(view.regions[0]!.inUse.why).toMatch(/^no nd region found for it .*cannot tell/);
  });

  it("leaves out a region of another device", async () => {
    node(join(lab.decoder00, "region1"), {
      commit: "1",
      resource: "0x2b0000000",
      size: "0x10000000",
      interleave_ways: "1",
      interleave_granularity: "256",
      target0: "decoder5.0",
    });
    lab.bus("cxl", "region1", join(lab.decoder00, "region1"));
    const view = (await readCxlView(lab.roots, DEV))!;
    expect(view.regions.map((r) => r.name)).toEqual(["region0"]);
  });

  it("a region set up but not committed: its decoders have the range and still read as not committed", async () => {
    const dir = join(lab.decoder00, "region0");
    writeFileSync(join(dir, "commit"), "0\n");
    const view = (await readCxlView(lab.roots, DEV))!;
    expect(view.regions[0]).toMatchObject({
      committed: false,
      inUse: { yes: false, why: "not committed: it decodes no host memory" },
    });
    expect(view.decoders.filter((d) => d.level !== "root").map((d) => [d.name, d.size, d.committed])).toEqual(
      [
        ["decoder2.0", SIZE, false],
        ["decoder1.0", SIZE, false],
      ],
    );
    expect(regionsInUse(view)).toEqual([]);
  });
});

describe("readCxlView: a ram region with online memory (6.3+ shape: region mode, dax_region)", () => {
  beforeEach(() => {
    lab = buildLab({ ...REGION0_ENDPOINT_DECODER, mode: "ram" }, REGION0_SWITCH_DECODER);
    const region = addRegion0(lab, { mode: "ram", uuid: "" });
    const daxRegion = node(join(region, "dax_region0"), { devtype: "cxl_dax_region" });
    lab.bus("cxl", "dax_region0", daxRegion);
    const dax = node(join(daxRegion, "dax0.0"), { size: String(SIZE), resource: "0x290000000" });
    lab.driver(dax, "dax", "kmem");
    lab.bus("dax", "dax0.0", dax);
  });

  it("names the online memory blocks inside the region's range (128 MiB blocks 82-85), no others", async () => {
    addMemoryBlocks(lab, 0x800_0000n, {
      81: "online",
      82: "online",
      83: "online",
      84: "offline",
      85: "online",
      86: "online",
    });
    const view = (await readCxlView(lab.roots, DEV))!;
    expect(view.regions[0]).toMatchObject({ mode: "ram", uuid: null, committed: true });
    expect(view.regions[0]!.inUse).toEqual({
      yes: true,
      why: "memory online in memory82, memory83, memory85",
    });
    expect(regionsInUse(view)).toEqual([
      "region region0 (ram, 0x290000000-0x2afffffff, through decoder2.0) is committed and in use: " +
        "memory online in memory82, memory83, memory85",
    ]);
  });

  it("all blocks offline but the dax device still bound to kmem: in use", async () => {
    addMemoryBlocks(lab, 0x800_0000n, { 82: "offline", 83: "offline", 84: "offline", 85: "offline" });
    const view = (await readCxlView(lab.roots, DEV))!;
    expect(view.regions[0]!.inUse).toEqual({
      yes: true,
      why: "dax0.0 bound to kmem (memory handed to the kernel)",
    });
  });
});

describe("readCxlView: devices that are not CXL memory devices here", () => {
  it("null without /sys/bus/cxl", async () => {
    lab = buildLab();
    rmSync(join(lab.sys, "bus/cxl"), { recursive: true });
    expect(await readCxlView(lab.roots, DEV)).toBeNull();
  });

  it("null for a PCI device with no memdev (the root port), or one not in sysfs", async () => {
    lab = buildLab();
    expect(await readCxlView(lab.roots, ROOT_PORT)).toBeNull();
    expect(await readCxlView(lab.roots, "0000:0e:00.0")).toBeNull();
  });

  it("null for a switch upstream port: a memdev further below belongs to the device it hangs off", async () => {
    lab = buildLab();
    const usp = "0000:0e:00.0";
    lab.fake.addDevice({
      bdf: usp,
      parent: ROOT_PORT,
      headerType: 1,
      classCode: 0x060400,
      driver: "pcieport",
    });
    lab.fake.addDevice({ bdf: "0000:0f:00.0", parent: usp, headerType: 1, classCode: 0x060400 });
    const dev = lab.fake.addDevice({ bdf: "0000:10:00.0", parent: "0000:0f:00.0", driver: "cxl_pci" });
    lab.bus("cxl", "mem1", node(join(dev, "mem1"), { devtype: "cxl_memdev" }));
    expect(await readCxlView(lab.roots, usp)).toBeNull();
    expect((await readCxlView(lab.roots, "0000:10:00.0"))?.memdev).toBe("mem1");
  });

  it("cxl_pci bound but no endpoint port yet (cxl_mem not loaded): the memdev alone", async () => {
    lab = buildLab();
    rmSync(join(lab.sys, "bus/cxl/devices/endpoint2"));
    expect(await readCxlView(lab.roots, DEV)).toEqual({
      bdf: DEV,
      memdev: "mem0",
      endpoint: null,
      decoders: [],
      regions: [],
    });
  });
});

describe("readCxlView: malformed attributes", () => {
  it("a size that is not hex: CxlrcError backend naming the file and the value", async () => {
    lab = buildLab({ ...IDLE_ENDPOINT_DECODER, size: "lots" });
    const err = await readCxlView(lab.roots, DEV).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CxlrcError);
    expect((err as CxlrcError).kind).toBe("backend");
    expect((err as CxlrcError).message).toBe(
      `malformed sysfs attribute ${join(lab.decoder20, "size")}: expected hex "0x...", read "lots"`,
    );
    expect((err as CxlrcError).details).toMatchObject({ path: join(lab.decoder20, "size"), value: "lots" });
  });

  it("a region commit that is not 0 or 1", async () => {
    lab = buildLab(REGION0_ENDPOINT_DECODER, REGION0_SWITCH_DECODER);
    addRegion0(lab, { commit: "yes" });
    await expect(readCxlView(lab.roots, DEV)).rejects.toThrow(
      /region0\/commit: expected "0" or "1", read "yes"/,
    );
  });

  it("a bad BDF is bad input, not a missing device", async () => {
    lab = buildLab();
    await expect(readCxlView(lab.roots, "0d:00.0")).rejects.toMatchObject({ kind: "bad-input" });
  });
});

// ---- pure helpers ----

function decoder(over: Partial<KernelDecoder> = {}): KernelDecoder {
  return {
    name: "decoder2.0",
    level: "endpoint",
    port: "endpoint2",
    index: 0,
    start: BASE,
    size: SIZE,
    interleaveWays: 1,
    interleaveGranularity: 256,
    targetList: [],
    mode: "pmem",
    dpaResource: 0n,
    dpaSize: SIZE,
    region: "region0",
    locked: false,
    committed: true,
    ...over,
  };
}

function region(over: Partial<KernelRegion> = {}): KernelRegion {
  return {
    name: "region0",
    committed: true,
    resource: BASE,
    size: SIZE,
    mode: "pmem",
    interleaveWays: 1,
    interleaveGranularity: 256,
    uuid: null,
    targets: ["decoder2.0"],
    inUse: { yes: false, why: "nd region region1 has no namespace with capacity" },
    ...over,
  };
}

const view = (decoders: KernelDecoder[], regions: KernelRegion[] = []): KernelCxlView => ({
  bdf: DEV,
  memdev: "mem0",
  endpoint: "endpoint2",
  decoders,
  regions,
});

describe("decoderCommitted", () => {
  it("size 0 is idle; a range without a region is committed; a region's commit decides otherwise", () => {
    expect(decoderCommitted(decoder({ size: null, region: null }), null)).toBe(false);
    expect(decoderCommitted(decoder({ region: null }), null)).toBe(true);
    expect(decoderCommitted(decoder(), true)).toBe(true);
    expect(decoderCommitted(decoder(), false)).toBe(false);
    expect(decoderCommitted(decoder(), null)).toBe(true); // region unreadable: fail-safe
    expect(decoderCommitted(decoder({ level: "root", region: "region0" }), false)).toBe(true);
  });
});

describe("judgeRegionUse", () => {
  it("online memory counts even when the region reads uncommitted", () => {
    expect(judgeRegionUse({ committed: false, mode: "ram", onlineBlocks: ["memory9"] })).toEqual({
      yes: true,
      why: "memory online in memory9",
    });
  });

  it("fail-safe when the consumers cannot be found", () => {
    expect(judgeRegionUse({ committed: true, mode: "ram", onlineBlocks: [], daxDevices: null }).yes).toBe(
      true,
    );
    expect(judgeRegionUse({ committed: true, mode: "mixed", onlineBlocks: [] })).toEqual({
      yes: true,
      why: 'mode "mixed": cannot tell whether its memory is in use',
    });
  });

  it("device_dax is a user; an unbound dax device is not", () => {
    const dax = (driver: string | null) =>
      judgeRegionUse({
        committed: true,
        mode: "ram",
        onlineBlocks: [],
        daxDevices: [{ name: "dax0.0", driver }],
      });
    expect(dax("device_dax")).toEqual({
      yes: true,
      why: "dax0.0 bound to device_dax (/dev/dax0.0 may be mapped)",
    });
    expect(dax(null)).toEqual({ yes: false, why: "no dax device of it is bound to a driver" });
  });
});

describe("regionsInUse", () => {
  it("names each committed region, its range and this device's decoder; skips idle ones", () => {
    const v = view(
      [decoder()],
      [
        region({ inUse: { yes: true, why: "memory online in memory82" } }),
        region({ name: "region3", committed: false, inUse: { yes: false, why: "not committed" } }),
        region({ name: "region4", committed: false, resource: null, size: null, targets: ["decoder2.0"] }),
      ],
    );
    expect(regionsInUse(v)).toEqual([
      "region region0 (pmem, 0x290000000-0x2afffffff, through decoder2.0) is committed and in use: memory online in memory82",
    ]);
  });

  it("an uncommitted region whose memory is in use is still named", () => {
    const v = view(
      [decoder()],
      [region({ committed: false, inUse: { yes: true, why: "memory online in memory82" } })],
    );
    expect(regionsInUse(v)).toEqual([
      "region region0 (pmem, 0x290000000-0x2afffffff, through decoder2.0) is not committed but in use: " +
        "memory online in memory82",
    ]);
  });
});

describe("crossCheck", () => {
  it("agrees with a BAR that reads the same", () => {
    expect(crossCheck(view([decoder()]), [{ index: 0, base: BASE, size: SIZE, committed: true }])).toEqual(
      [],
    );
  });

  it("finds a size mismatch", () => {
    expect(
      crossCheck(view([decoder()]), [{ index: 0, base: BASE, size: 0x1000_0000n, committed: true }]),
    ).toEqual([{ decoder: 0, field: "size", kernel: "0x20000000", bar: "0x10000000" }]);
  });

  it("after a reset behind the kernel's back: committed, base and size all differ", () => {
    expect(crossCheck(view([decoder()]), [{ index: 0, base: 0n, size: 0n, committed: false }])).toEqual([
      { decoder: 0, field: "committed", kernel: "committed", bar: "not committed" },
      { decoder: 0, field: "base", kernel: "0x290000000", bar: "0x0" },
      { decoder: 0, field: "size", kernel: "0x20000000", bar: "0x0" },
    ]);
  });

  it("ignores the leftover base of a decoder idle on both sides; reports one only one side has", () => {
    const idle = decoder({ start: null, size: null, committed: false, region: null });
    expect(
      crossCheck(view([idle, decoder({ name: "decoder2.1", index: 1 })]), [
        { index: 0, base: 0x1_0000_0000n, size: 0n, committed: false },
      ]),
    ).toEqual([{ decoder: 1, field: "present", kernel: "decoder2.1", bar: "absent" }]);
  });

  it("only endpoint decoders are compared", () => {
    const port = decoder({ name: "decoder1.0", level: "port", port: "port1", index: 3 });
    expect(crossCheck(view([port]), [])).toEqual([]);
  });
});

describe("endpointDecoderFacts and describeKernelDecoders", () => {
  it("facts in index order, hex like DecoderFact, port decoders left out", () => {
    const v = view([
      decoder({ name: "decoder2.1", index: 1, start: null, size: null, committed: false, locked: null }),
      decoder({ locked: true }),
      decoder({ name: "decoder1.0", level: "port", port: "port1" }),
    ]);
    expect(endpointDecoderFacts(v)).toEqual([
      {
        index: 0,
        base: "0x290000000",
        size: "0x20000000",
        committed: true,
        lockOnCommit: true,
        source: "kernel",
      },
      { index: 1, base: "0x0", size: "0x0", committed: false, lockOnCommit: null, source: "kernel" },
    ]);
  });

  it("one line per decoder", () => {
    const v = view([
      decoder(),
      decoder({
        name: "decoder1.0",
        level: "port",
        port: "port1",
        mode: undefined,
        dpaResource: undefined,
        dpaSize: undefined,
        targetList: ["0"],
      }),
    ]);
    expect(describeKernelDecoders(v)).toEqual([
      "decoder2.0 (endpoint endpoint2): 0x290000000-0x2afffffff (0x20000000 bytes), committed, unlocked, mode pmem, " +
        "dpa 0x0+0x20000000, ways 1 x 256 B, region region0",
      "decoder1.0 (port port1): 0x290000000-0x2afffffff (0x20000000 bytes), committed, unlocked, " +
        "ways 1 x 256 B, targets 0, region region0",
    ]);
  });
});
