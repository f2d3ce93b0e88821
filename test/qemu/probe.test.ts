// Probe of QEMU's Type-3 through the backend: the config space we read is the one QEMU has (lspci, a
// second program, decodes it), and our decoder says what lspci says about both CXL DVSECs.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createQemuBackend, type QemuBackend } from "../../services/agent/backends/qemu/qemu-backend.ts";
import { decodeConfigSpace } from "../../shared/cxl/decode.ts";
import { formatDump } from "../../shared/cxl/dump.ts";
import { CXL_DEVICE, cxlRange, PCI, PCI_BAR0 } from "../../shared/cxl/registers.ts";
import { DECODER0_BASE, DECODER0_SIZE, dvsecReg, enableCxlMem, locate } from "./helpers.ts";

let b: QemuBackend;
let dir: string;
beforeAll(async () => {
  b = await createQemuBackend({ topology: "single" });
  dir = mkdtempSync(join(tmpdir(), "cxlrc-qemu-probe-"));
});
afterAll(async () => {
  await b?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** `lspci -F FILE -vvv` on our dump (pciutils 3.9; libkmod warnings on stderr are ignored). */
function lspci(bytes: Uint8Array, bdf: string): string {
  const file = join(dir, `${bdf.replace(/[:.]/g, "_")}.txt`);
  // lspci's dump reader wants "BB:DD.F" (domain optional) heading each device.
  writeFileSync(file, formatDump(bytes, `${bdf.slice(5)} CXL device`));
  return execFileSync("lspci", ["-F", file, "-vvv"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
}

const flag = (text: string, re: RegExp): boolean => {
  const m = re.exec(text);
  if (!m) throw new Error(`lspci output lacks ${re}`);
  return m[1] === "+";
};
const num = (text: string, re: RegExp): number => {
  const m = re.exec(text);
  if (!m) throw new Error(`lspci output lacks ${re}`);
  return Number(m[1]);
};
const line = (text: string, label: string): string => {
  const l = text.split("\n").find((x) => x.trim().startsWith(label));
  if (!l) throw new Error(`lspci output has no ${label} line`);
  return l;
};

// pciutils 3.9 ls-ecaps.c tables for Range1/2 (cxl_range).
const LSPCI_MEDIA = ["Volatile", "Non-volatile", "CDAT"];
const LSPCI_CLASS = ["DRAM", "Storage", "CDAT"];
const LSPCI_INTERLEAVE = [0, 256, 4096, 512, 1024, 2048, 8192, 16384];

/** What lspci prints about the CXL device DVSEC and the Register Locator, in one comparable shape. */
function fromLspci(text: string) {
  const cap = line(text, "CXLCap:");
  const ctl = line(text, "CXLCtl:");
  const sta2 = line(text, "CXLSta2:");
  const r = /Range1: ([0-9a-f]{16})-([0-9a-f]{16})\n\s+(.*)/.exec(text);
  if (!r) throw new Error("lspci output has no Range1");
  const base = BigInt(`0x${r[1]}`);
  const size = (BigInt(`0x${r[2]}`) - base + 1n) & 0xffff_ffff_ffff_ffffn;
  const attrs = r[3]!;
  const blocks = [...text.matchAll(/Block(\d+): BIR: bar(\d), ID: ([^,]+), offset: ([0-9a-f]{16})/g)].map(
    (m) => ({
      index: Number(m[1]),
      bir: Number(m[2]),
      blockName: m[3],
      offset: BigInt(`0x${m[4]}`),
    }),
  );
  return {
    cap: {
      cache: flag(cap, /Cache([+-])/),
      io: flag(cap, /IO([+-])/),
      mem: flag(cap, /Mem([+-])/),
      memHwInit: flag(cap, /Mem ?HW ?Init([+-])/),
      hdmCount: num(cap, /HDMCount (\d+)/),
      viral: flag(cap, /Viral([+-])/),
    },
    ctl: {
      cache: flag(ctl, /Cache([+-])/),
      io: flag(ctl, /IO([+-])/),
      mem: flag(ctl, /Mem([+-])/),
      sfCov: num(ctl, /Cache SF Cov (\d+)/),
      sfGran: num(ctl, /Cache SF Gran (\d+)/),
      clean: flag(ctl, /Cache Clean([+-])/),
      viral: flag(ctl, /Viral([+-])/),
    },
    status2: {
      resetComplete: flag(sta2, /ResetComplete([+-])/),
      resetError: flag(sta2, /ResetError([+-])/),
      pmComplete: flag(sta2, /PMComplete([+-])/),
    },
    range1: {
      base,
      size,
      valid: flag(attrs, /Valid([+-])/),
      active: flag(attrs, /Active([+-])/),
      type: /Type=(\S+)/.exec(attrs)?.[1],
      class: /Class=(\S+)/.exec(attrs)?.[1],
      interleave: num(attrs, /interleave=(\d+)/),
      timeoutS: num(attrs, /timeout=(\d+)s/),
    },
    blocks,
  };
}

/** The same facts from our decoder's JSON. */
function fromDecoder(bytes: Uint8Array, bdf: string) {
  const d = decodeConfigSpace(bytes, { bdf });
  const dev = d.cxlDevice!;
  const r1 = dev.ranges[0];
  return {
    cap: {
      cache: dev.capability.cacheCapable,
      io: dev.capability.ioCapable,
      mem: dev.capability.memCapable,
      memHwInit: dev.capability.memHwInitMode,
      hdmCount: dev.capability.hdmCount,
      viral: dev.capability.viralCapable,
    },
    ctl: {
      cache: dev.control.cacheEnable,
      io: dev.control.ioEnable,
      mem: dev.control.memEnable,
      sfCov: dev.control.cacheSfCoverage,
      sfGran: dev.control.cacheSfGranularity,
      clean: dev.control.cacheCleanEviction,
      viral: dev.control.viralEnable,
    },
    status2: {
      resetComplete: dev.status2.cxlResetComplete,
      resetError: dev.status2.cxlResetError,
      pmComplete: dev.status2.pmInitComplete,
    },
    range1: {
      base: BigInt(r1.base),
      size: BigInt(r1.size),
      valid: r1.memInfoValid,
      active: r1.memActive,
      type: LSPCI_MEDIA[r1.mediaType],
      class: LSPCI_CLASS[r1.memoryClass],
      interleave: LSPCI_INTERLEAVE[r1.desiredInterleave],
      timeoutS: r1.memActiveTimeoutMs === null ? null : r1.memActiveTimeoutMs / 1000,
    },
    // lspci prints only non-empty entries (numbered by position).
    blocks: d
      .registerLocator!.blocks.filter((x) => x.blockId !== 0)
      .map((x) => ({ index: x.index, bir: x.bir, blockName: x.blockName, offset: BigInt(x.offset) })),
  };
}

describe("probe of QEMU's Type-3 through the backend", () => {
  it("enumerates the root port and the Type-3 with the ids QEMU 7.2 gives them", async () => {
    const fns = await b.listFunctions();
    expect(fns.map((f) => [f.bdf, f.vendorId, f.deviceId, f.classCode, f.parent])).toEqual([
      ["0000:0c:00.0", 0x8086, 0x7075, 0x060400, null],
      ["0000:0d:00.0", 0x8086, 0x0d93, 0x050210, "0000:0c:00.0"],
    ]);
    const rp = fns[0]!;
    expect([rp.secondaryBus, rp.subordinateBus]).toEqual([0x0d, 0x0d]);
    expect(fns[1]!.resetMethods).toEqual(["bus"]);
    expect(await b.holders("0000:0d:00.0")).toEqual([]);
  });

  it("reads config space by width, and 4 KiB at once that agrees with single reads", async () => {
    const bdf = "0000:0d:00.0";
    const all = await b.configReadAll(bdf);
    expect(all.length).toBe(4096);
    const dv = new DataView(all.buffer);
    expect(await b.configRead(bdf, PCI.vendorId.offset, 2)).toBe(0x8086);
    expect(await b.configRead(bdf, PCI.deviceId.offset, 2)).toBe(0x0d93);
    expect(await b.configRead(bdf, PCI.headerType.offset, 1)).toBe(0);
    for (const off of [0x00, 0x08, 0x10, 0x100, 0x138, 0x15c, 0x190]) {
      expect(await b.configRead(bdf, off, 4)).toBe(dv.getUint32(off, true));
    }
    // Absent functions read all-ones.
    expect(await b.configRead("0000:0d:01.0", 0, 4)).toBe(0xffffffff);
    await expect(b.configRead(bdf, 0x101, 2)).rejects.toMatchObject({ kind: "bad-input" });
  });

  it("writes config space by width: a byte and a word land where they should", async () => {
    const bdf = "0000:0d:00.0";
    const line0 = await b.configRead(bdf, PCI.interruptLine.offset, 4);
    await b.configWrite(bdf, PCI.interruptLine.offset, 1, 0x5a);
    // Only the addressed byte changed (Interrupt Pin and the rest of the dword are untouched).
    expect(await b.configRead(bdf, PCI.interruptLine.offset, 4)).toBe(((line0 & 0xffffff00) | 0x5a) >>> 0);
    const dword4 = await b.configRead(bdf, PCI.command.offset, 4);
    const intxDisable = 0x0400;
    await b.configWrite(bdf, PCI.command.offset, 2, (dword4 & 0xffff) | intxDisable);
    expect(await b.configRead(bdf, PCI.command.offset, 2)).toBe((dword4 & 0xffff) | intxDisable);
    await b.configWrite(bdf, PCI.command.offset, 2, dword4 & 0xffff);
    expect(await b.configRead(bdf, PCI.command.offset, 2)).toBe(dword4 & 0xffff);
  });

  it("maps the BARs where the firmware put them: config BAR0 points at the MMIO the backend reads", async () => {
    const bdf = "0000:0d:00.0";
    const fw = b.describe().functions.find((f) => f.bdf === bdf)!;
    const bar0 = fw.bars.find((x) => x.index === 0)!;
    expect(bar0.size).toBe(0x10000);
    expect((await b.configRead(bdf, PCI_BAR0, 4)) & ~0xf).toBe(bar0.address | 0);
    // CXL.cache/mem capability array header: id 1 at component block + 0x1000.
    expect((await b.mmioRead32(bdf, 0, 0x1000)) & 0xffff).toBe(1);
    await expect(b.mmioRead32(bdf, 0, 0x10000)).rejects.toMatchObject({ kind: "bad-input" });
    await expect(b.mmioRead32(bdf, 1, 0)).rejects.toMatchObject({ kind: "bad-input" });
  });

  it("dumps in lspci -xxxx format; lspci decodes the CXL DVSEC and Register Locator as our decoder does", async () => {
    const bdf = "0000:0d:00.0";
    const loc = await locate(b, bdf);
    // Make the comparison less trivial than the reset values: Mem_Enable on, a Range 1 base.
    await enableCxlMem(b, loc);
    const range1 = cxlRange(1);
    await b.configWrite(bdf, dvsecReg(loc, range1.baseHigh), 4, Number(DECODER0_BASE >> 32n));
    await b.configWrite(bdf, dvsecReg(loc, range1.baseLow), 4, Number(DECODER0_BASE & 0xf000_0000n));

    const bytes = await b.configReadAll(bdf);
    const text = lspci(bytes, bdf);
    expect(text).toMatch(/Designated Vendor-Specific: Vendor=1e98 ID=0000/);
    expect(text).toMatch(/Designated Vendor-Specific: Vendor=1e98 ID=0008/);

    const ours = fromDecoder(bytes, bdf);
    expect(ours).toEqual(fromLspci(text));
    // And both saw what we wrote (so the comparison covers non-reset values).
    expect(ours.ctl.mem).toBe(true);
    expect(ours.range1.base).toBe(DECODER0_BASE);
    expect(ours.range1.size).toBeGreaterThanOrEqual(DECODER0_SIZE);
    expect(ours.blocks.map((x) => x.blockName)).toEqual(["component registers", "CXL device registers"]);
    expect(decodeConfigSpace(bytes).cxlDevice!.control.raw).toBe(
      `0x${(await b.configRead(bdf, dvsecReg(loc, CXL_DEVICE.control), 2)).toString(16).padStart(4, "0")}`,
    );
  });

  it("dumps the root port too: lspci finds its CXL DVSECs where the decoder lists them", async () => {
    const bdf = "0000:0c:00.0";
    const bytes = await b.configReadAll(bdf);
    const text = lspci(bytes, bdf);
    const lspciDvsecs = [
      ...text.matchAll(/\[([0-9a-f]+) v\d\] Designated Vendor-Specific: Vendor=1e98 ID=(\d+)/g),
    ].map((m) => [Number.parseInt(m[1]!, 16), Number.parseInt(m[2]!, 16)]);
    const ours = decodeConfigSpace(bytes, { bdf })
      .extendedCapabilities.filter((c) => c.dvsec !== null)
      .map((c) => [Number(c.offset), c.dvsec!.id]);
    expect(ours).toEqual(lspciDvsecs);
    // Root port: extensions for ports (3), GPF for ports (4), Flex Bus (7), Register Locator (8).
    expect(ours.map(([, id]) => id)).toEqual([3, 4, 7, 8]);
  });
});
