// A saved image for humans: identity, when and how it was taken, the PCI config state, the CXL DVSEC
// registers (raw value and fields), the Register Locator, HDM global control and every decoder.
import type { Image, RegisterSnapshot } from "../../../shared/image/schema.ts";
import type { Colours } from "./colour.ts";
import { formatMs } from "./duration.ts";

const hex = (n: number, w: number) => `0x${n.toString(16).padStart(w, "0")}`;

/** Fields of a register: booleans as name+ / name-, numbers as name=value. */
function fields(r: RegisterSnapshot): string {
  return Object.entries(r)
    .filter(([k]) => k !== "raw")
    .map(([k, v]) => (typeof v === "boolean" ? `${k}${v ? "+" : "-"}` : `${k}=${v}`))
    .join(" ");
}

function registerLines(regs: Record<string, RegisterSnapshot>, indent: string): string[] {
  const width = Math.max(0, ...Object.keys(regs).map((k) => k.length));
  return Object.entries(regs).map(([name, r]) =>
    `${indent}${name.padEnd(width)}  ${r.raw.padEnd(10)}  ${fields(r)}`.trimEnd(),
  );
}

/** base/size from a decoder's Low/High register pair (the low dword holds bits 31:28). */
function addr(regs: Record<string, RegisterSnapshot>, lo: string, hi: string): bigint | null {
  const l = regs[lo];
  const h = regs[hi];
  if (!l || !h) return null;
  return (BigInt(h.raw) << 32n) | (BigInt(l.raw) & 0xf000_0000n);
}

export function formatImage(
  img: Image,
  c: Colours,
  meta: { savedAt?: string; requestId?: string | null; revision?: number } = {},
): string {
  const id = img.identity;
  const out: string[] = [];
  out.push(
    c.bold(`image of ${id.host} ${id.bdf}`) +
      ` (${hex(id.vendorId, 4).slice(2)}:${hex(id.deviceId, 4).slice(2)}, class ${hex(id.classCode, 6).slice(2)}` +
      `${id.serial ? `, serial ${id.serial}` : ""})`,
  );
  out.push(
    `  taken ${img.takenAt} in ${formatMs(img.durationMs)} by agent ${img.agentVersion}` +
      (meta.requestId ? `, request ${meta.requestId}` : "") +
      (meta.revision !== undefined ? `, revision ${meta.revision}` : ""),
  );
  out.push(`  checksum ${img.checksum}`);
  out.push(`  functions ${id.functions.join(", ")}`);
  out.push("");
  out.push(c.bold("PCI config state"));
  const cmd = Number.parseInt(img.pci.header[1] ?? "0x0", 16) & 0xffff;
  out.push(`  command ${hex(cmd, 4)}  header ${img.pci.header.join(" ")}`);
  if (Object.keys(img.pci.pcie).length > 0) {
    out.push(
      `  PCI Express capability at ${img.pci.pcieCapOffset === null ? "-" : hex(img.pci.pcieCapOffset, 3)}`,
    );
    out.push(...registerLines(img.pci.pcie, "    "));
  }
  const cxl = img.cxl;
  if (!cxl) {
    out.push("", "no CXL DVSEC (id 0) on this function: the image holds the PCI config state only");
    return out.join("\n");
  }
  out.push("");
  out.push(
    c.bold(`CXL DVSEC for CXL Devices`) +
      ` at ${hex(cxl.dvsec.offset, 3)}, revision ${cxl.dvsec.revision}, length ${cxl.dvsec.length}`,
  );
  out.push(...registerLines(cxl.dvsec.registers, "  "));
  out.push(
    `  CONFIG_LOCK ${cxl.configLock ? c.yellow("set (restored last after a conventional reset)") : "not set"}`,
  );
  if (cxl.registerLocator) {
    out.push("");
    out.push(`${c.bold("Register Locator")} at ${hex(cxl.registerLocator.offset, 3)}`);
    for (const b of cxl.registerLocator.blocks)
      out.push(`  block id ${b.blockId}  BAR${b.bir} + ${b.offset}`);
  }
  if (cxl.component)
    out.push(`  component registers: BAR${cxl.component.bar} + ${hex(cxl.component.offset, 5)}`);
  const hdm = cxl.hdm;
  if (hdm) {
    out.push("");
    out.push(
      c.bold("HDM decoders") +
        ` (capability at ${hex(hdm.capabilityOffset, 4)}, ${hdm.decoderCount} decoders)`,
    );
    out.push(`  capability      ${hdm.capability.raw.padEnd(10)}  ${fields(hdm.capability)}`.trimEnd());
    out.push(`  global control  ${hdm.globalControl.raw.padEnd(10)}  ${fields(hdm.globalControl)}`.trimEnd());
    for (const d of hdm.decoders) {
      const base = addr(d.registers, "baseLow", "baseHigh");
      const size = addr(d.registers, "sizeLow", "sizeHigh");
      const ctl = d.registers.control;
      const committed = ctl?.committed === true;
      out.push(
        `  decoder${d.index}  base ${base === null ? "?" : `0x${base.toString(16)}`}  size ${size === null ? "?" : `0x${size.toString(16)}`}  ` +
          (committed ? c.green("committed") : c.dim("not committed")),
      );
      // An unused decoder is all zeros: its line above says so.
      if (committed || Object.values(d.registers).some((r) => BigInt(r.raw) !== 0n)) {
        out.push(...registerLines(d.registers, "      "));
      }
    }
  } else {
    out.push("", "no HDM decoder capability");
  }
  return out.join("\n");
}
