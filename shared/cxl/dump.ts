// Config space input: a raw binary image (sysfs `config`, 64/256/4096 bytes) or an `lspci -x`/`-xxx`/`-xxxx`
// hex dump, possibly holding several devices. The text format is the one `lspci -F` reads (pciutils
// lib/dump.c): a header line starting with the address, then `OFF: hh hh …` lines, a blank line between
// devices. Indented lines (the `lspci -v` text lspci prints beside a dump) are skipped, as lspci does.
import { CxlrcError } from "../errors.ts";

export interface DumpDevice {
  /** Address from the header line ("0d:00.0" or "0000:0d:00.0"), null for binary input or a bare dump. */
  bdf: string | null;
  /** The rest of the header line ("CXL: Intel Corporation Device 0d93"), null when absent. */
  description: string | null;
  /** 64, 256 or 4096 bytes. */
  bytes: Uint8Array;
  /** 1-based line where the device starts; 0 for binary input. */
  line: number;
}

export const DUMP_SIZES: readonly number[] = [64, 256, 4096];
const MAX_CONFIG = 4096;

function badInput(message: string, details: Record<string, unknown> = {}): CxlrcError {
  return new CxlrcError("bad-input", message, details);
}

/** Printable ASCII plus tab, CR, LF: what an lspci dump is made of. A config image never is (it has NULs). */
function looksLikeText(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === 0x09 || c === 0x0a || c === 0x0d) continue;
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/**
 * Parse raw bytes or dump text into one entry per device. Throws CxlrcError("bad-input") naming the
 * problem (and the line, for text): empty input, a binary image of the wrong size, a malformed or
 * out-of-order hex line, a device whose dump is not 64/256/4096 bytes long, no device at all.
 */
export function parseDump(input: string | Uint8Array): DumpDevice[] {
  if (typeof input !== "string") {
    if (input.length === 0) throw badInput("input is empty");
    if (!looksLikeText(input)) {
      if (!DUMP_SIZES.includes(input.length)) {
        throw badInput(
          `binary config space is ${input.length} bytes; expected 64, 256 or 4096 (truncated or not a config space)`,
          { size: input.length },
        );
      }
      return [{ bdf: null, description: null, bytes: input, line: 0 }];
    }
    input = new TextDecoder("latin1").decode(input);
  }
  return parseDumpText(input);
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** Length of a leading PCI address (`bb:dd.f` or `dddd:bb:dd.f`, domain 4–6 digits), 0 when none. */
function bdfLength(line: string): number {
  let i = 0;
  const hexRun = () => {
    const start = i;
    while (i < line.length && hexDigit(line.charCodeAt(i)) >= 0) i++;
    return i - start;
  };
  const first = hexRun();
  if (line[i] !== ":") return 0;
  i++;
  if (first >= 4 && first <= 6) {
    if (hexRun() !== 2 || line[i] !== ":") return 0;
    i++;
  } else if (first !== 2) return 0;
  if (hexRun() !== 2 || line[i] !== ".") return 0;
  i++;
  const fn = line.charCodeAt(i);
  if (fn < 0x30 || fn > 0x37) return 0;
  i++;
  if (i < line.length && line[i] !== " ") return 0;
  return i;
}

/** Offset of a data line (`OFF:` with 2–4 hex digits; lspci writes 2 or 3), or null when not one. */
function dataOffset(line: string): { offset: number; rest: number } | null {
  let i = 0;
  let v = 0;
  while (i < line.length && i < 5) {
    const d = hexDigit(line.charCodeAt(i));
    if (d < 0) break;
    v = v * 16 + d;
    i++;
  }
  if (i < 2 || i > 4 || line[i] !== ":") return null;
  return { offset: v, rest: i + 1 };
}

function snippet(line: string): string {
  return JSON.stringify(line.length > 40 ? `${line.slice(0, 40)}…` : line);
}

export function parseDumpText(text: string): DumpDevice[] {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lines = text.split("\n");
  const devices: DumpDevice[] = [];
  let cur: {
    bdf: string | null;
    description: string | null;
    data: Uint8Array;
    len: number;
    line: number;
  } | null = null;
  let sawData = false;

  const finish = (endLine: number) => {
    if (!cur) return;
    if (cur.len === 0) {
      throw badInput(`line ${cur.line}: device ${cur.bdf ?? "?"} has a header but no hex dump lines`, {
        line: cur.line,
      });
    }
    if (!DUMP_SIZES.includes(cur.len)) {
      throw badInput(
        `line ${endLine}: short dump: device ${cur.bdf ?? `at line ${cur.line}`} has ${cur.len} bytes (0x${cur.len.toString(16)}); expected 64, 256 or 4096`,
        { line: endLine, size: cur.len },
      );
    }
    devices.push({
      bdf: cur.bdf,
      description: cur.description,
      bytes: cur.data.slice(0, cur.len),
      line: cur.line,
    });
    cur = null;
  };

  for (let n = 0; n < lines.length; n++) {
    const lineNo = n + 1;
    let line = lines[n]!;
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line.trim() === "") {
      finish(lineNo);
      continue;
    }
    const c0 = line.charCodeAt(0);
    if (c0 === 0x20 || c0 === 0x09) continue; // lspci -v text beside the dump
    const bl = bdfLength(line);
    if (bl > 0) {
      finish(lineNo);
      const description = line.slice(bl).trim();
      cur = {
        bdf: line.slice(0, bl),
        description: description || null,
        data: new Uint8Array(MAX_CONFIG),
        len: 0,
        line: lineNo,
      };
      continue;
    }
    const d = dataOffset(line);
    if (!d) throw badInput(`line ${lineNo}: not an lspci hex dump line: ${snippet(line)}`, { line: lineNo });
    if (!cur) cur = { bdf: null, description: null, data: new Uint8Array(MAX_CONFIG), len: 0, line: lineNo };
    if (d.offset !== cur.len) {
      throw badInput(
        `line ${lineNo}: offset 0x${d.offset.toString(16)} out of order (expected 0x${cur.len.toString(16)})`,
        { line: lineNo },
      );
    }
    // Bytes: " hh" repeated, 1–16 per line.
    let i = d.rest;
    let count = 0;
    while (i < line.length) {
      if (line[i] !== " ") break;
      const hi = hexDigit(line.charCodeAt(i + 1));
      const lo = hexDigit(line.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) break;
      const next = line.charCodeAt(i + 3);
      if (i + 3 < line.length && next !== 0x20) break;
      if (cur.len >= MAX_CONFIG) {
        throw badInput(`line ${lineNo}: more than 4096 bytes of config space`, { line: lineNo });
      }
      cur.data[cur.len++] = hi * 16 + lo;
      count++;
      i += 3;
    }
    const trailing = line.slice(i).trim();
    if (trailing !== "" || count === 0 || count > 16) {
      throw badInput(`line ${lineNo}: malformed hex dump line: ${snippet(line)}`, { line: lineNo });
    }
    sawData = true;
  }
  finish(lines.length);
  if (!sawData || devices.length === 0)
    throw badInput("no config space hex dump found (expected lines like `00: 86 80 …`)");
  return devices;
}

/** Render a config space image in the `lspci -xxx`/`-xxxx` format (`lspci -F` reads it back). */
export function formatDump(bytes: Uint8Array, header?: string): string {
  const out: string[] = [];
  if (header) out.push(header);
  for (let off = 0; off < bytes.length; off += 16) {
    let s = `${off.toString(16).padStart(2, "0")}:`;
    const end = Math.min(off + 16, bytes.length);
    for (let i = off; i < end; i++) s += ` ${bytes[i]!.toString(16).padStart(2, "0")}`;
    out.push(s);
  }
  return `${out.join("\n")}\n`;
}
