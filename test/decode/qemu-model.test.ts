// The decoder against a device model nobody on this project wrote: QEMU's CXL root port and Type-3 device,
// read through the qtest protocol (no guest, no firmware; see shared/docs/qemu-qtest.md). The config spaces
// are read over ECAM, the component block through BAR0; lspci -F decodes the same dumps as a second opinion.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeComponentBlock } from "../../shared/cxl/component.ts";
import { type DecodedConfig, decodeConfigSpace } from "../../shared/cxl/decode.ts";
import { formatDump } from "../../shared/cxl/dump.ts";
import { formatHuman } from "../../shared/cxl/format.ts";

const QEMU = "/usr/bin/qemu-system-x86_64";
const ECAM = 0xb000_0000;
const ROOT_PORT_BUS = 12;
const DEVICE_BUS = 13;
const BAR0 = 0xfe00_0000;
/** Enough of the component block to hold the capability array and one HDM decoder. */
const COMPONENT_BYTES = 0x1200;

class Qtest {
  private buf = "";
  private waiters: ((line: string) => void)[] = [];
  constructor(private readonly conn: Socket) {
    conn.on("data", (d) => {
      this.buf += d.toString();
      for (let i = this.buf.indexOf("\n"); i >= 0; i = this.buf.indexOf("\n")) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (!line.startsWith("IRQ")) this.waiters.shift()?.(line);
      }
    });
  }
  private async cmd(c: string): Promise<string> {
    const reply = await new Promise<string>((resolve) => {
      this.waiters.push(resolve);
      this.conn.write(`${c}\n`);
    });
    if (!reply.startsWith("OK")) throw new Error(`qtest ${c}: ${reply}`);
    return reply;
  }
  async readl(addr: number): Promise<number> {
    return Number((await this.cmd(`readl 0x${addr.toString(16)}`)).split(" ")[1]) >>> 0;
  }
  async writel(addr: number, v: number): Promise<void> {
    await this.cmd(`writel 0x${addr.toString(16)} 0x${(v >>> 0).toString(16)}`);
  }
  /** Legacy 0xcf8/0xcfc config write (before ECAM exists). */
  async cfgWrite(bus: number, off: number, v: number): Promise<void> {
    await this.cmd(`outl 0xcf8 0x${((0x8000_0000 | (bus << 16) | (off & 0xfc)) >>> 0).toString(16)}`);
    await this.cmd(`outl 0xcfc 0x${(v >>> 0).toString(16)}`);
  }
  async read(base: number, length: number): Promise<Uint8Array> {
    const b = new Uint8Array(length);
    const dv = new DataView(b.buffer);
    for (let off = 0; off < length; off += 4) dv.setUint32(off, await this.readl(base + off), true);
    return b;
  }
}

describe("QEMU's CXL device models", () => {
  const dir = mkdtempSync(join(tmpdir(), "cxlrc-qemu-decode-"));
  let qemu: ChildProcess | undefined;
  let server: Server | undefined;
  let conn: Socket | undefined;
  let rootPort: Uint8Array;
  let device: Uint8Array;
  let component: Uint8Array;

  beforeAll(async () => {
    const sock = join(dir, "qtest.sock");
    writeFileSync(join(dir, "mem"), "");
    writeFileSync(join(dir, "lsa"), "");
    execFileSync("truncate", ["-s", "512M", join(dir, "mem")]);
    execFileSync("truncate", ["-s", "256M", join(dir, "lsa")]);
    server = createServer();
    await new Promise<void>((r) => server!.listen(sock, r));
    const connected = new Promise<Socket>((r) => server!.once("connection", r));
    qemu = spawn(
      QEMU,
      [
        ...["-machine", "q35,cxl=on", "-m", "1G,maxmem=4G,slots=4", "-display", "none", "-nodefaults"],
        ...["-accel", "tcg", "-S", "-qtest", `unix:${sock}`, "-qtest-log", "/dev/null"],
        ...["-object", `memory-backend-file,id=cxl-mem1,share=on,mem-path=${join(dir, "mem")},size=512M`],
        ...["-object", `memory-backend-file,id=cxl-lsa1,share=on,mem-path=${join(dir, "lsa")},size=256M`],
        ...["-device", "pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1"],
        ...["-device", "cxl-rp,port=0,bus=cxl.1,id=root_port13,chassis=0,slot=2"],
        ...["-device", "cxl-type3,bus=root_port13,memdev=cxl-mem1,lsa=cxl-lsa1,id=cxl-pmem0"],
        ...["-M", "cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G"],
      ],
      { stdio: "ignore" },
    );
    conn = await connected;
    const q = new Qtest(conn);
    // Be the firmware: ECAM at 0xb0000000, bus numbers and a memory window on the root port, BAR0 of
    // the device inside it, Memory Space on both.
    await q.cfgWrite(0, 0x64, 0);
    await q.cfgWrite(0, 0x60, ECAM | 1);
    const cfg = (bus: number) => ECAM + (bus << 20);
    await q.writel(cfg(ROOT_PORT_BUS) + 0x18, ROOT_PORT_BUS | (DEVICE_BUS << 8) | (DEVICE_BUS << 16));
    await q.writel(cfg(ROOT_PORT_BUS) + 0x20, 0xfef0_fe00); // memory base 0xfe000000, limit 0xfeffffff
    await q.writel(cfg(ROOT_PORT_BUS) + 0x04, 0x0006);
    await q.writel(cfg(DEVICE_BUS) + 0x10, BAR0);
    await q.writel(cfg(DEVICE_BUS) + 0x14, 0);
    await q.writel(cfg(DEVICE_BUS) + 0x04, 0x0006);
    rootPort = await q.read(cfg(ROOT_PORT_BUS), 4096);
    device = await q.read(cfg(DEVICE_BUS), 4096);
    component = await q.read(BAR0, COMPONENT_BYTES);
  }, 60_000);

  afterAll(() => {
    conn?.destroy();
    qemu?.kill();
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("decodes the Type-3 device: DVSEC 0, Register Locator, GPF, DOE", () => {
    const d = decodeConfigSpace(device, { bdf: "0d:00.0" });
    expect(d).toMatchObject({
      vendorId: "0x8086",
      deviceId: "0x0d93",
      classCode: "0x050210",
      flrCapable: false,
    });
    expect(d.extendedCapabilities.map((c) => [c.offset, c.id, c.dvsec?.id ?? null])).toEqual([
      ["0x100", 0x23, 0],
      ["0x138", 0x23, 8],
      ["0x15c", 0x23, 5],
      ["0x190", 0x2e, null],
    ]);
    expect(d.cxlDevice).toMatchObject({ offset: "0x100", revision: 1, length: 0x38 });
    expect(d.cxlDevice?.capability).toMatchObject({
      ioCapable: true,
      memCapable: true,
      memHwInitMode: true,
      hdmCount: 1,
      cacheCapable: false,
      cxlResetCapable: false,
    });
    expect(d.cxlDevice?.status2.cxlResetComplete).toBe(true);
    expect(d.registerLocator?.blocks.filter((b) => b.blockId !== 0).map((b) => [b.bir, b.blockId])).toEqual([
      [0, 1],
      [2, 3],
    ]);
  });

  it("decodes the root port: port extensions, GPF, Flex Bus and Register Locator DVSECs", () => {
    const d = decodeConfigSpace(rootPort, { bdf: "0c:00.0" });
    expect(d.pcie?.portType).toBe(4);
    expect(d.extendedCapabilities.flatMap((c) => (c.dvsec ? [c.dvsec.id] : []))).toEqual([3, 4, 7, 8]);
    expect(d.portExtensions?.control.unmaskSbr).toBe(false);
    expect(d.cxlDevice).toBeNull();
  });

  it("decodes the component block: HDM Decoder capability at +0x1110 with one decoder", () => {
    const c = decodeComponentBlock(component);
    expect(c.cacheMem.capabilities.map((x) => x.name)).toEqual(
      expect.arrayContaining(["RAS", "Link", "HDM Decoder"]),
    );
    expect(c.hdm).toMatchObject({ offset: "0x1110", decoderCount: 1 });
  });

  it("prints the CXL lines lspci -F prints for the same dumps", () => {
    const file = join(dir, "qemu.lspci");
    writeFileSync(
      file,
      `${formatDump(rootPort, "0c:00.0 PCI bridge")}\n${formatDump(device, "0d:00.0 CXL")}`,
    );
    const out = execFileSync("/usr/bin/lspci", ["-F", file, "-vvv"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    const ours = (d: DecodedConfig) => formatHuman(d).split("\n");
    const mine = [...ours(decodeConfigSpace(rootPort)), ...ours(decodeConfigSpace(device))];
    const theirs = out
      .split("\n")
      .filter((l) =>
        /^\t\t(CXLCap:|CXLCtl:|CXLSta:|CXLSta2:|Cache Size|Range\d:|Block\d+:|CXLPortCtl:)|^\t\t\tValid/.test(
          l,
        ),
      );
    expect(theirs.length).toBeGreaterThanOrEqual(12);
    for (const line of theirs) expect(mine).toContain(line);
    const offsets = (s: string) => [...s.matchAll(/Capabilities: \[([0-9a-f]{3}) v\d\]/g)].map((m) => m[1]);
    expect(offsets(mine.join("\n"))).toEqual(offsets(out));
  });
});
