// The real CLI as a child process: `node bin/cxlrc.js decode …`.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { formatDump } from "../../shared/cxl/dump.ts";
import { buildConfig, extCap } from "../builders/config-space.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
const SAMPLE = join(ROOT, "docs/samples/type2-device.lspci");
const SAMPLE_COMPONENT = join(ROOT, "docs/samples/type2-device.component.bin");

function cxlrc(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(ROOT, "bin/cxlrc.js"), ...args],
      { cwd: ROOT },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Exit 2 with exactly one line on stderr and no stack trace. */
function expectBadInput(r: { code: number; stdout: string; stderr: string }, pattern: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.stdout).toBe("");
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^cxlrc decode: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at |Error:/);
}

describe.concurrent("cxlrc decode (child process)", () => {
  const dir = mkdtempSync(join(tmpdir(), "cxlrc-cli-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, data: string | Uint8Array) => {
    const p = join(dir, name);
    writeFileSync(p, data);
    return p;
  };

  it("--json prints the documented object for the bundled sample", async () => {
    const r = await cxlrc("decode", SAMPLE, "--json");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const d = JSON.parse(r.stdout);
    expect(d).toMatchObject({
      bdf: "0d:00.0",
      vendorId: "0x8086",
      deviceId: "0x0ddb",
      classCode: "0x120000",
      flrCapable: true,
      cxlDevice: {
        capability: { cacheCapable: true, memCapable: true, cxlResetCapable: true, cxlResetTimeoutMs: 1000 },
        ranges: [{ index: 1, base: "0x1000000000", size: "0x100000000" }, { index: 2 }],
      },
      registerLocator: {
        blocks: [
          { bir: 0, blockId: 1, offset: "0x0" },
          { bir: 2, blockId: 3 },
        ],
      },
    });
  });

  it("--component adds the HDM decoders to the JSON", async () => {
    const r = await cxlrc("decode", SAMPLE, "--json", "--component", SAMPLE_COMPONENT);
    expect(r.code).toBe(0);
    const d = JSON.parse(r.stdout);
    expect(d.component.hdm).toMatchObject({
      offset: "0x1110",
      decoderCount: 1,
      decoders: [{ base: "0x1000000000", size: "0x100000000", control: { committed: true } }],
    });
  });

  it("prints lspci-like lines without --json", async () => {
    const r = await cxlrc("decode", SAMPLE, "--component", SAMPLE_COMPONENT);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("\t\tCXLCap:\tCache+ IO+ Mem+ Mem HW Init+ HDMCount 1 Viral+\n");
    expect(r.stdout).toContain("\t\tBlock1: BIR: bar0, ID: component registers, offset: 0000000000000000\n");
    expect(r.stdout).toContain("\t\tRange1: 0000001000000000-00000010ffffffff\n");
    expect(r.stdout).toContain("\tHDM Decoder Capability: [1110] Decoders 1");
  });

  it("reads a binary config space", async () => {
    const p = file("config.bin", buildConfig({ pcie: { flr: true }, ext: [{ kind: "cxlDevice" }] }));
    const r = await cxlrc("decode", p, "--json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      bdf: null,
      flrCapable: true,
      cxlDevice: { offset: "0x100" },
    });
  });

  it("--all and --device choose among several devices", async () => {
    const p = file(
      "two.lspci",
      `${formatDump(buildConfig({ size: 256 }), "00:01.0 first")}\n${formatDump(buildConfig({ ext: [{ kind: "cxlDevice" }] }), "0000:0d:00.0 second")}`,
    );
    const all = await cxlrc("decode", p, "--json", "--all");
    expect(JSON.parse(all.stdout).map((d: { bdf: string }) => d.bdf)).toEqual(["00:01.0", "0000:0d:00.0"]);
    const one = await cxlrc("decode", p, "--json", "--device", "0d:00.0");
    expect(JSON.parse(one.stdout).bdf).toBe("0000:0d:00.0");
    const first = await cxlrc("decode", p, "--json");
    expect(JSON.parse(first.stdout).bdf).toBe("00:01.0");
  });

  it("missing file: exit 2, one line", async () => {
    expectBadInput(await cxlrc("decode", join(dir, "nope.lspci")), /nope\.lspci: no such file/);
  });

  it("garbage: exit 2, one line naming the file and line", async () => {
    const p = file("garbage.txt", "this is not\nan lspci dump\n");
    expectBadInput(await cxlrc("decode", p), /garbage\.txt: line 1: not an lspci hex dump line/);
  });

  it("short dump: exit 2, one line naming the size", async () => {
    const text = formatDump(buildConfig({ size: 256 }), "0d:00.0 x")
      .split("\n")
      .slice(0, 6)
      .join("\n");
    const p = file("short.lspci", text);
    expectBadInput(
      await cxlrc("decode", p),
      /short\.lspci: line 6: short dump: device 0d:00\.0 has 80 bytes/,
    );
  });

  it("truncated binary: exit 2, one line naming the size", async () => {
    const p = file("trunc.bin", buildConfig().slice(0, 1000));
    expectBadInput(await cxlrc("decode", p), /trunc\.bin: binary config space is 1000 bytes/);
  });

  it("a config space that cannot be decoded: exit 2, one line", async () => {
    const b = buildConfig();
    extCap(b, 0x100, 0x01, 1, 0x100);
    const p = file("loop.bin", b);
    expectBadInput(await cxlrc("decode", p), /loop\.bin: extended capability list loops/);
  });

  it("a component block that cannot be decoded: exit 2, one line", async () => {
    const p = file("comp.bin", new Uint8Array(0x2000));
    expectBadInput(
      await cxlrc("decode", SAMPLE, "--component", p),
      /comp\.bin: CXL\.cache\/mem capability header/,
    );
  });

  it("bad flags: exit 2", async () => {
    const r = await cxlrc("decode", SAMPLE, "--jsn");
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect((await cxlrc("decode")).code).toBe(2);
  });

  it("--help prints the usage", async () => {
    const r = await cxlrc("decode", "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Usage: cxlrc decode FILE");
  });
});
