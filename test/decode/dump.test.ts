import { describe, expect, it } from "vitest";
import { formatDump, parseDump } from "../../shared/cxl/dump.ts";
import { CxlrcError } from "../../shared/errors.ts";
import { buildConfig } from "../builders/config-space.ts";

function badInput(fn: () => unknown): CxlrcError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CxlrcError);
    expect((e as CxlrcError).kind).toBe("bad-input");
    return e as CxlrcError;
  }
  throw new Error("expected a bad-input error");
}

const config = buildConfig({ ext: [{ kind: "cxlDevice" }] });
config[0x3f] = 0xab;

describe("lspci hex dumps", () => {
  it.each([64, 256, 4096] as const)("reads a %i-byte dump (lspci -x / -xxx / -xxxx)", (n) => {
    const bytes = config.slice(0, n);
    const [d, ...rest] = parseDump(formatDump(bytes, "0d:00.0 CXL: Intel Corporation Device 0d93"));
    expect(rest).toEqual([]);
    expect(d).toMatchObject({ bdf: "0d:00.0", description: "CXL: Intel Corporation Device 0d93", line: 1 });
    expect(d!.bytes).toEqual(bytes);
  });

  it("accepts a domain in the address, upper-case hex and CRLF line ends", () => {
    const text = formatDump(config.slice(0, 64), "0000:0D:00.0 Memory controller")
      .toUpperCase()
      .replaceAll("\n", "\r\n");
    const [d] = parseDump(text);
    expect(d).toMatchObject({ bdf: "0000:0D:00.0" });
    expect(d!.bytes).toEqual(config.slice(0, 64));
  });

  it("accepts a dump without a header line", () => {
    const [d] = parseDump(formatDump(config.slice(0, 256)));
    expect(d).toMatchObject({ bdf: null, description: null, line: 1 });
  });

  it("reads several devices, each with its first line", () => {
    const text =
      formatDump(config.slice(0, 64), "00:00.0 Host bridge: Intel Corporation Device 0d57") +
      "\n" +
      formatDump(config, "0d:00.0 CXL: Intel Corporation Device 0d93") +
      "\n";
    const devices = parseDump(text);
    expect(devices.map((d) => [d.bdf, d.bytes.length, d.line])).toEqual([
      ["00:00.0", 64, 1],
      ["0d:00.0", 4096, 7],
    ]);
  });

  it("skips the indented lspci -v text printed beside a dump, as lspci -F does", () => {
    const lines = formatDump(config.slice(0, 64), "0d:00.0 CXL").split("\n");
    lines.splice(1, 0, "\tControl: I/O- Mem+ BusMaster+", "\tCapabilities: [40] Express (v2) Endpoint");
    expect(parseDump(lines.join("\n"))[0]!.bytes).toEqual(config.slice(0, 64));
  });

  it("takes raw bytes holding dump text as text", () => {
    const text = formatDump(config.slice(0, 64), "0d:00.0 CXL");
    expect(parseDump(new TextEncoder().encode(text))[0]!.bdf).toBe("0d:00.0");
  });
});

describe("binary config space", () => {
  it.each([64, 256, 4096])("takes %i raw bytes as one device", (n) => {
    const [d] = parseDump(config.slice(0, n));
    expect(d).toEqual({ bdf: null, description: null, bytes: config.slice(0, n), line: 0 });
  });

  it("names the size of a truncated binary image", () => {
    expect(badInput(() => parseDump(config.slice(0, 300))).message).toMatch(
      /300 bytes; expected 64, 256 or 4096/,
    );
  });
});

describe("bad input", () => {
  it("refuses empty input", () => {
    expect(badInput(() => parseDump(new Uint8Array(0))).message).toMatch(/empty/);
    expect(badInput(() => parseDump("")).message).toMatch(/no config space hex dump/);
  });

  it("refuses garbage text, naming the line", () => {
    const e = badInput(() => parseDump("hello world\nthis is not a dump\n"));
    expect(e.message).toMatch(/^line 1: not an lspci hex dump line: "hello world"/);
    expect(e.details.line).toBe(1);
  });

  it("refuses a short dump, naming the device and its size", () => {
    const text = formatDump(config.slice(0, 256), "0d:00.0 CXL").split("\n").slice(0, 10).join("\n");
    const e = badInput(() => parseDump(text));
    expect(e.message).toMatch(/short dump: device 0d:00\.0 has 144 bytes \(0x90\); expected 64, 256 or 4096/);
  });

  it("refuses a malformed byte, naming the line", () => {
    const lines = formatDump(config.slice(0, 64), "0d:00.0 CXL").split("\n");
    lines[3] = "20: 00 01 02 zz 04";
    expect(badInput(() => parseDump(lines.join("\n"))).message).toMatch(/^line 4: malformed hex dump line/);
  });

  it("refuses an odd number of hex digits", () => {
    const lines = formatDump(config.slice(0, 64), "0d:00.0 CXL").split("\n");
    lines[2] = "10: 00 01 02 0";
    expect(badInput(() => parseDump(lines.join("\n"))).message).toMatch(/^line 3: malformed/);
  });

  it("refuses offsets out of order or with a gap", () => {
    const lines = formatDump(config.slice(0, 64), "0d:00.0 CXL").split("\n");
    lines.splice(2, 1);
    expect(badInput(() => parseDump(lines.join("\n"))).message).toMatch(
      /^line 3: offset 0x20 out of order \(expected 0x10\)/,
    );
  });

  it("refuses a header without data (plain lspci output)", () => {
    expect(
      badInput(() => parseDump("00:00.0 Host bridge: Intel\n00:01.0 Unassigned class\n")).message,
    ).toMatch(/^line 1: device 00:00\.0 has a header but no hex dump lines/);
  });

  it("refuses more than 4096 bytes", () => {
    const text = `${formatDump(config)}1000: 00\n`;
    expect(badInput(() => parseDump(text)).message).toMatch(/more than 4096 bytes/);
  });
});
